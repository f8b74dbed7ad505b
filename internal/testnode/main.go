// Command testnode runs one raftelect node as its own process, for tests
// that kill and restart real processes (internal/restarttest). It is
// deliberately minimal: a node config file in (the same YAML `raftelect
// run` reads, written by internal/proccluster), election.New(cfg).Run
// until SIGTERM or SIGINT; no HTTP server, no metrics, no CLI.
//
//	testnode --config n1.yaml
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/storage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testnode:", err)
		os.Exit(1)
	}
}

func run() error {
	path := flag.String("config", "", "the node's YAML config file")
	flag.Parse()
	n, err := config.Load(*path, config.LoadOptions{})
	if err != nil {
		return err
	}
	cfg := n.ElectionConfig()
	var level slog.Level
	if err := level.UnmarshalText([]byte(n.Log.Level)); err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if n.DataDir != "" {
		st, err := storage.OpenBolt(n.DataDir, storage.BoltOptions{})
		if err != nil {
			return err
		}
		defer st.Close()
		cfg.Storage = st
	}
	if n.EventLog != "" {
		w, err := eventlog.Create(n.EventLog)
		if err != nil {
			return err
		}
		defer w.Close()
		cfg.EventLog = w
	}

	e, err := election.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := e.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
