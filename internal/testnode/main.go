// Command testnode runs one raftelect node as its own process, for tests
// that kill and restart real processes (internal/restarttest). It is
// deliberately minimal: flags in, election.New(cfg).Run until SIGTERM or
// SIGINT. It is not the CLI (cmd/raftelect).
//
//	testnode --name n1 --peers n1=127.0.0.1:7001,n2=...,n3=... \
//	    --data-dir /tmp/n1 --event-log /tmp/n1.events --tls-dir /tmp/certs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

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
	var (
		name      = flag.String("name", "", "this node's name (must appear in --peers)")
		peers     = flag.String("peers", "", "every node as name=host:port, comma-separated")
		dataDir   = flag.String("data-dir", "", "bbolt data directory; empty keeps raft state in memory")
		eventLog  = flag.String("event-log", "", "append leadership events (JSON lines) to this file")
		tlsDir    = flag.String("tls-dir", "", "directory with ca.crt, <name>.crt, <name>.key; empty runs without TLS")
		heartbeat = flag.Duration("heartbeat", 100*time.Millisecond, "heartbeat interval (the raft tick)")
		elect     = flag.Duration("election", time.Second, "election timeout")
		verbose   = flag.Bool("v", false, "log at info level to stderr (default: warnings only)")
	)
	flag.Parse()

	cfg := election.Config{
		Name:              *name,
		HeartbeatInterval: *heartbeat,
		ElectionTimeout:   *elect,
	}
	for _, p := range strings.Split(*peers, ",") {
		n, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return fmt.Errorf("--peers: %q is not name=host:port", p)
		}
		cfg.Peers = append(cfg.Peers, election.PeerConfig{Name: n, Address: addr})
	}
	if *tlsDir == "" {
		cfg.Insecure = true
	} else {
		cfg.TLS = election.TLSConfig{
			CAFile:   filepath.Join(*tlsDir, "ca.crt"),
			CertFile: filepath.Join(*tlsDir, *name+".crt"),
			KeyFile:  filepath.Join(*tlsDir, *name+".key"),
		}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if *dataDir != "" {
		st, err := storage.OpenBolt(*dataDir, storage.BoltOptions{})
		if err != nil {
			return err
		}
		defer st.Close()
		cfg.Storage = st
	}
	if *eventLog != "" {
		w, err := eventlog.Create(*eventLog)
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
