//go:build !lean

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftelect/raftelect/chaos"
)

func init() { addCommand(newBenchCmd) }

func newBenchCmd() *cobra.Command {
	o := chaos.BenchOptions{}
	var quick bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure failover, rejoin, idle cost and runtime growth on real nodes in network namespaces (needs root)",
		Long: `Start real raftelect nodes in network namespaces, as 'raftelect chaos' does,
and measure: convergence from a cold start; failover after kill -9, silent
isolation and SIGTERM of the leader; leaderless time over a rolling restart;
how soon a restarted follower knows the leader; agreement after an
asymmetric drop heals; idle CPU, RSS and eth0 traffic per node; goroutines
and heap at the start and end of an idle soak and of one with a follower
SIGSTOPped, with CPU and heap profiles of the leader and a follower.

Prints a table with the project's targets (docs/benchmarks.md); writes bench.json, bench.txt,
failover.svg and profiles/ into --dir. A phase with a zero count or
duration is skipped. --quick is the CI shape (a minute or so).
See docs/benchmarks.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if quick {
				o.ColdStarts, o.Kills, o.Isolations, o.Terms, o.Rejoins, o.AsymHeals = 1, 3, 1, 2, 2, 1
				o.Idle, o.Soak, o.Profile = 5*time.Second, 5*time.Second, time.Second
			}
			if o.ElectionTimeout <= 2*o.HeartbeatInterval {
				return usageError(fmt.Errorf("election timeout %v must be more than twice the heartbeat %v", o.ElectionTimeout, o.HeartbeatInterval))
			}
			if err := chaos.Available(); err != nil {
				return failure(err)
			}
			if o.Binary == "" {
				self, err := os.Executable()
				if err != nil {
					return failure(fmt.Errorf("find this executable (give --binary): %w", err))
				}
				o.Binary = self
			}
			out := cmd.OutOrStdout()
			o.Progress = out
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := chaos.Bench(ctx, o)
			if err != nil {
				return failure(err)
			}
			fmt.Fprint(out, res.Table())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Binary, "binary", "", "raftelect executable to run as nodes (default: this one)")
	f.StringVar(&o.Dir, "dir", "", "output directory (default: a new one under $TMPDIR)")
	f.IntVar(&o.Nodes, "nodes", 3, "cluster size")
	f.DurationVar(&o.HeartbeatInterval, "heartbeat", 100*time.Millisecond, "heartbeat interval of the nodes")
	f.DurationVar(&o.ElectionTimeout, "election-timeout", time.Second, "election timeout of the nodes")
	f.IntVar(&o.ColdStarts, "cold-starts", 3, "cold starts (fresh data directories, all nodes at once)")
	f.IntVar(&o.Kills, "kills", 20, "kill -9 of the leader")
	f.IntVar(&o.Isolations, "isolations", 5, "silent isolations of the leader's namespace")
	f.IntVar(&o.Terms, "terms", 10, "SIGTERMs of the leader (graceful transfer)")
	f.IntVar(&o.Rejoins, "rejoins", 10, "follower restarts (kill -9, start)")
	f.IntVar(&o.AsymHeals, "asym-heals", 5, "silent drops leader -> follower, healed")
	f.DurationVar(&o.AsymDrop, "asym-drop", 0, "how long each of those drops lasts (default: 3 x election timeout)")
	f.BoolVar(&o.AsymDropArriving, "asym-drop-arriving", false, "drop those packets as they arrive at the follower (the leader's stack learns nothing, as when a network loses them), not on the leader's way out")
	f.BoolVar(&o.Rolling, "rolling", true, "a rolling restart of every node (SIGTERM, start)")
	f.DurationVar(&o.Idle, "idle", 60*time.Second, "idle window for CPU, RSS and traffic")
	f.DurationVar(&o.Soak, "soak", 10*time.Minute, "length of each soak (idle, then one follower hung) for goroutine and heap growth")
	f.DurationVar(&o.Profile, "profile", 20*time.Second, "CPU profile length at the end of each soak (0: no profiles)")
	f.BoolVar(&o.FastFailover, "fast-failover", false, "run the nodes with fast_failover_on_refusal (a refused connection to the leader is taken as proof it is gone): kill -9 failover in a fraction of a heartbeat")
	f.StringArrayVar(&o.NodeEnv, "node-env", nil, "KEY=VALUE added to every node's environment, e.g. GOMAXPROCS=1 (repeatable)")
	f.BoolVar(&quick, "quick", false, "few repetitions and 5 s windows (CI); overrides the counts and durations")
	return cmd
}
