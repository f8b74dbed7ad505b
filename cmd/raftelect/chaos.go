//go:build !lean

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftelect/raftelect/chaos"
	"github.com/raftelect/raftelect/eventlog"
)

func init() { addCommand(newChaosCmd) }

type chaosOptions struct {
	binary    string
	dir       string
	nodes     int
	heartbeat time.Duration
	election  time.Duration
	scale     float64
	syncSend  bool
}

func (o *chaosOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.binary, "binary", "", "raftelect executable to run as nodes (default: this one)")
	f.StringVar(&o.dir, "dir", "", "directory for configs, event logs, result.json, summary.txt and timeline.svg (default: a new one under $TMPDIR)")
	f.IntVar(&o.nodes, "nodes", 0, "cluster size, overriding the scenario's (3 or 5)")
	f.DurationVar(&o.heartbeat, "heartbeat", 100*time.Millisecond, "heartbeat interval of the nodes")
	f.DurationVar(&o.election, "election-timeout", time.Second, "election timeout of the nodes")
	f.BoolVar(&o.syncSend, "sync-send", false, "start the nodes with unsafe_sync_send: the reference system's synchronous sends")
}

func newChaosCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run real clusters in network namespaces under faults (needs root)",
		Long: `Run real raftelect nodes, each in its own network namespace with mutual TLS,
inject faults (nftables drops, loss, isolation, flapping; kill -9, SIGTERM,
SIGSTOP; latency through proxies) and judge the outcome against each
scenario's expectations. Needs root, iproute2 and nftables.

See docs/chaos.md for the scenario format and what each scenario checks.`,
	}
	cmd.AddCommand(newChaosRunCmd(), newChaosReproCmd(), newChaosListCmd())
	return cmd
}

func newChaosListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the built-in scenarios",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, name := range chaos.Builtin() {
				s, err := chaos.LoadScenario(name)
				if err != nil {
					return failure(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%-20s %s\n", name, s.Description)
			}
			return nil
		},
	}
}

func newChaosRunCmd() *cobra.Command {
	var o chaosOptions
	cmd := &cobra.Command{
		Use:   "run [SCENARIO|FILE.yaml ...]",
		Short: "Run scenarios (default: every built-in one) and print a verdict for each",
		Long: `Run each scenario on a fresh cluster, one after another, printing progress
while it runs and a summary after. A scenario is a built-in name (see
'raftelect chaos list') or a YAML file. Exit status 1 if any scenario broke
an expectation or a rule of the checker, 2 on a usage error.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = chaos.Builtin()
			}
			var scenarios []*chaos.Scenario
			for _, a := range args {
				s, err := chaos.LoadScenario(a)
				if err != nil {
					return usageError(err)
				}
				if o.scale != 1 {
					if o.scale <= 0 || o.scale > 1 {
						return usageError(fmt.Errorf("--scale %v: want a factor in (0, 1]", o.scale))
					}
					s = s.Scaled(o.scale, 5*o.election/2)
				}
				scenarios = append(scenarios, s)
			}
			return runChaos(cmd.Context(), cmd.OutOrStdout(), o, scenarios)
		},
	}
	o.flags(cmd)
	cmd.Flags().Float64Var(&o.scale, "scale", 1, "multiply every scenario's times by this factor (0.15 for a quick pass); faults still last at least 2.5 election timeouts")
	return cmd
}

func newChaosReproCmd() *cobra.Command {
	var o chaosOptions
	var window time.Duration
	cmd := &cobra.Command{
		Use:   "repro [--window 180s] [--sync-send]",
		Short: "The reference system's finding: silently drop leader -> one follower and count elections",
		Long: `Reproduce the reference system's bug: every packet from the leader to one
follower is silently dropped for --window while the other links stay
healthy. The leader keeps a majority, so there must be no election and no
step-down. Elections and step-downs are printed as they happen, and the
last line is

    RESULT: PASS|FAIL elections=N stepdowns=M

With --sync-send the nodes send synchronously from the raft loop, as the
reference system did before its fix; the same run must then FAIL.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if window <= 0 {
				return usageError(fmt.Errorf("--window %v must be positive", window))
			}
			s := chaos.ReproScenario(window)
			out := cmd.OutOrStdout()
			res, err := runOne(cmd.Context(), out, o, s)
			if err != nil {
				return err
			}
			fmt.Fprint(out, res.Summary())
			fmt.Fprintf(out, "RESULT: %s elections=%d stepdowns=%d\n", res.Verdict(), res.Elections, res.StepDowns)
			if !res.Pass {
				return &exitError{code: exitFailure, err: errors.New("repro: the leader did not survive the asymmetric drop")}
			}
			return nil
		},
	}
	o.flags(cmd)
	cmd.Flags().DurationVar(&window, "window", 180*time.Second, "how long to drop leader -> follower-1")
	return cmd
}

// runChaos runs the scenarios one after another and prints a table.
func runChaos(ctx context.Context, out io.Writer, o chaosOptions, scenarios []*chaos.Scenario) error {
	var results []*chaos.Result
	failed := 0
	for _, s := range scenarios {
		res, err := runOne(ctx, out, o, s)
		if err != nil {
			return err
		}
		fmt.Fprint(out, res.Summary())
		results = append(results, res)
		if !res.Pass {
			failed++
		}
	}
	fmt.Fprintln(out, "== chaos summary")
	for _, r := range results {
		fmt.Fprintf(out, "   %s\n", r.OneLine())
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", len(results)-failed, failed)
	if failed > 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("%d of %d scenarios failed", failed, len(results))}
	}
	return nil
}

// runOne runs a scenario with SIGINT/SIGTERM cancelling it (the harness
// then cleans up its namespaces and processes).
func runOne(ctx context.Context, out io.Writer, o chaosOptions, s *chaos.Scenario) (*chaos.Result, error) {
	if err := chaos.Available(); err != nil {
		return nil, failure(err)
	}
	bin := o.binary
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, failure(fmt.Errorf("find this executable (give --binary): %w", err))
		}
		bin = self
	}
	dir := o.dir
	if dir != "" {
		dir = filepath.Join(dir, fmt.Sprintf("%s-%d", s.Name, eventlog.Now()))
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := chaos.Run(ctx, s, chaos.Options{
		Binary: bin, Dir: dir, Nodes: o.nodes,
		HeartbeatInterval: o.heartbeat, ElectionTimeout: o.election,
		SyncSend: o.syncSend, Progress: out,
	})
	if err != nil {
		return nil, failure(err)
	}
	return res, nil
}
