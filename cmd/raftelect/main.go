// Command raftelect runs and inspects raftelect nodes: leader election among
// replicas in different regions, each embedding a raft node.
//
// Each subcommand lives in its own file and registers itself from init with
// addCommand, so new ones (demo, exec) need no change here.
//
// Exit codes (docs/operations.md):
//
//	0  success; for run, a clean stop after SIGTERM/SIGINT
//	1  failure at run time (could not listen, storage failed, a second
//	   signal); for status, some node did not answer or no single leader
//	2  invalid configuration or usage
//	3  members add/remove: --wait ran out while the change was under way
//	4  run: this node was removed from the cluster (do not restart it with
//	   its data directory)
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	// exitPending: a membership change was made but had not completed
	// when --wait ran out; it goes on by itself.
	exitPending = 3
	// exitRemoved: run stopped because the node was removed from the
	// cluster; a restart with the same data directory is refused again.
	exitRemoved = 4
)

// commands holds the constructors of every subcommand.
var commands []func() *cobra.Command

// addCommand registers a subcommand; call it from an init function.
func addCommand(newCmd func() *cobra.Command) { commands = append(commands, newCmd) }

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks err as a usage or configuration error (exit code 2).
func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// failure marks err as a run-time failure (exit code 1).
func failure(err error) error { return &exitError{code: exitFailure, err: err} }

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "raftelect",
		Short: "Leader election among replicas in different regions, over raft with mutual TLS",
		Long: `raftelect elects one leader among replicas of an application that run in
different clusters, regions or data centres, with no shared store: each node
embeds a raft node and the nodes talk over gRPC with mutual TLS.

Start with docs/operations.md; examples/node.yaml is a commented config.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildVersion(), // --version
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	for _, newCmd := range commands {
		root.AddCommand(newCmd())
	}
	return root
}

// execute runs the command line and returns the process exit code.
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "raftelect: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// Cobra's own errors (unknown command, wrong arguments) are usage
	// errors.
	return exitUsage
}

func main() {
	if code, ok := runExecHelper(os.Args[1:]); ok {
		os.Exit(code) // one of exec's helper processes (exec.go)
	}
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}
