package election_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/eventlog"
	tc "github.com/raftelect/raftelect/internal/testcluster"
)

// instability lists what went wrong for a leader that should have stayed:
// any change of term or leader seen by any node, and any node other than the
// leader leaving the follower role (campaigning), since mono.
func instability(c *tc.Cluster, leader string, term uint64, since int64, quiet map[string]bool) []string {
	var out []string
	for _, e := range c.EventsSince(since) {
		if e.Kind != eventlog.KindState {
			continue
		}
		if e.Term != term {
			out = append(out, fmt.Sprintf("%s moved to term %d (was %d)", e.Node, e.Term, term))
		}
		if e.Leader != "" && e.Leader != leader {
			out = append(out, fmt.Sprintf("%s follows %s", e.Node, e.Leader))
		}
		if e.Node == leader && e.Role != "leader" {
			out = append(out, fmt.Sprintf("leader %s became %s", leader, e.Role))
		}
		if quiet[e.Node] && e.Role != "follower" {
			out = append(out, fmt.Sprintf("healthy follower %s became %s", e.Node, e.Role))
		}
	}
	return out
}

func startCluster(t *testing.T, n int) (*tc.Cluster, int) {
	c := tc.New(t, n)
	t.Cleanup(c.DumpEvents)
	c.Start()
	return c, c.WaitLeader(10 * time.Second)
}

// settleWithin bounds how long a cluster whose faults are healed may take to
// agree on a leader again: generous, a liveness check that only a hang
// fails (a healthy machine takes about an election timeout).
const settleWithin = 30 * time.Second

// logStability logs, as a figure, whether the window was stable: no change
// of term or leader, the leader leading throughout, and no quiet follower
// campaigning. It is not asserted here: a wall-clock cluster keeps its
// leader only if its process gets the CPU within an election timeout, and
// on a loaded 2-core machine it does not (a 10 ms sleep in the test process
// overslept by 0.5 s, and a follower that has not stepped its leader's
// heartbeat for its whole promise rightly campaigns). The claim is made in
// simulated time: internal/sim, TestSimulator_StableUnderFaultsThatSpareAQuorum.
func logStability(t *testing.T, c *tc.Cluster, leader string, term uint64, since int64, quiet map[string]bool) {
	t.Helper()
	if p := instability(c, leader, term, since, quiet); len(p) > 0 {
		t.Logf("not stable in wall-clock time (figure, not asserted; internal/sim holds the claim): %s", strings.Join(p, "; "))
		return
	}
	t.Logf("stable: %s led term %d throughout, no quiet follower campaigned", leader, term)
}

// others returns the indexes of every node but l.
func others(c *tc.Cluster, l int) []int {
	var out []int
	for i := range c.Nodes {
		if i != l {
			out = append(out, i)
		}
	}
	return out
}

// A healthy cluster, watched for 5 s: never two lease holders, tokens
// increasing (the checker), and an agreed leader at the end. That it keeps
// its first leader is internal/sim's "healthy" scenario. The leader's
// heartbeats go as datagrams alone: their answers, which wait in a socket
// no thread watches, are read by the raft loop (transport.ReadAnswers).
func TestHealthyCluster_StaysSafeAndLed(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 3)
	leader := c.Nodes[l].Name
	term := c.Nodes[l].Elector.Leader().Term
	since := eventlog.Now()
	time.Sleep(5 * time.Second) // the observation window itself
	now := c.WaitLeader(settleWithin)
	c.WaitFor(settleWithin, "the leader's heartbeats going as datagrams alone", func() bool {
		st := c.Nodes[now].Elector.Status()
		for _, p := range st.Peers {
			if !p.DatagramHeartbeats {
				return false
			}
		}
		return len(st.Peers) == 2
	})
	quiet := map[string]bool{}
	for _, i := range others(c, l) {
		quiet[c.Nodes[i].Name] = true
	}
	logStability(t, c, leader, term, since, quiet)
	c.StopAll()
	c.Check()
}

func TestLeaderStepsDown_WhenMinorityIsolated(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 3)
	for i := range c.Nodes {
		if i != l {
			c.StopNode(i)
		}
	}
	leader := c.Nodes[l].Elector
	// CheckQuorum steps raft down within two election timeouts; the lease
	// ends sooner, within one.
	c.WaitFor(3*tc.ElectionTimeout, "the lease to end", func() bool { return !leader.IsLeader() })
	c.WaitFor(3*tc.ElectionTimeout, "raft to step down", func() bool { return leader.Status().Role != "leader" })
	c.StopAll()
	c.Check()
}

// One direction of one link between the leader and a follower is silently
// dropped for 15 s (the reference system's bug: its raft loop waited on the
// silent peer and lost the leader). Checked here on real gRPC: never two
// lease holders, tokens increasing, and an agreed leader once healed. That
// the leader keeps its lease and the other follower never campaigns is
// internal/sim's "...dropped" scenarios, where synchronous sends, put back
// (Options.SyncSends), fail it; on real processes, chaos's
// TestReproFailsWithSyncSendAndPassesWithout.
func TestAsymmetricSilentDrop_StaysSafeAndLed(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name           string
		follower       int
		followerLeader bool
	}{
		{"leader->first-follower", 0, false},
		{"leader->second-follower", 1, false},
		{"first-follower->leader", 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, l := startCluster(t, 3)
			o := others(c, l)
			victim, healthy := c.Nodes[o[tt.follower]], c.Nodes[o[1-tt.follower]]
			leader := c.Nodes[l]
			term := leader.Elector.Leader().Term
			since := eventlog.Now()
			block := func(on bool) {
				if tt.followerLeader {
					leader.Hooks.BlockFrom(victim.Name, on)
				} else {
					victim.Hooks.BlockFrom(leader.Name, on)
				}
			}
			block(true)
			time.Sleep(15 * time.Second) // the fault window itself
			logStability(t, c, leader.Name, term, since, map[string]bool{healthy.Name: true})
			block(false)
			c.WaitLeader(settleWithin)
			c.StopAll()
			c.Check()
		})
	}
}

// Two of four followers stop hearing the leader for 8 s: safety, and an
// agreed leader once healed. That the leader keeps its lease on the other
// two is internal/sim's "5 nodes, leader->two followers dropped".
func TestFiveNodes_SilentDropsToTwoFollowers_StaySafeAndLed(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 5)
	leader := c.Nodes[l]
	term := leader.Elector.Leader().Term
	o := others(c, l)
	blocked := o[:2]
	quiet := map[string]bool{}
	for _, i := range o[2:] {
		quiet[c.Nodes[i].Name] = true
	}
	since := eventlog.Now()
	for _, i := range blocked {
		c.Nodes[i].Hooks.BlockFrom(leader.Name, true)
	}
	time.Sleep(8 * time.Second) // the fault window itself
	logStability(t, c, leader.Name, term, since, quiet)
	for _, i := range blocked {
		c.Nodes[i].Hooks.BlockFrom(leader.Name, false)
	}
	c.WaitLeader(settleWithin)
	c.StopAll()
	c.Check()
}

// A follower cut off both ways for 5 election timeouts campaigns (pre-vote)
// and, once healed, follows a leader again: safety and that liveness here.
// That with PreVote nobody else changes term or leader is internal/sim's
// "follower cut off for 5 election timeouts, then healed".
func TestCutOffFollower_Rejoins(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 3)
	leader := c.Nodes[l]
	term := leader.Elector.Leader().Term
	f := (l + 1) % 3
	cut := c.Nodes[f]
	since := eventlog.Now()
	cutOff := func(on bool) {
		cut.Hooks.BlockIngress(on)
		for i, n := range c.Nodes {
			if i != f {
				n.Hooks.BlockFrom(cut.Name, on)
			}
		}
	}
	cutOff(true)
	time.Sleep(5 * tc.ElectionTimeout) // the fault window itself
	cutOff(false)
	at := c.WaitLeader(settleWithin)
	logStability(t, c, leader.Name, term, since, nil)
	require.Equal(t, c.Nodes[at].Name, cut.Elector.Leader().Name)
	c.StopAll()
	c.Check()
}

// A WAN link whose round trip (160 ms) is longer than the heartbeat
// interval still carries the cluster: safety, an agreed leader, and the
// delay in effect. That it keeps its leader (deadlines must not mistake
// slowness for death) is internal/sim's "round trip above the heartbeat
// interval".
func TestSlowLinks_RoundTripAboveHeartbeat_StaySafeAndLed(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 3)
	leader := c.Nodes[l]
	term := leader.Elector.Leader().Term
	since := eventlog.Now()
	for _, n := range c.Nodes {
		n.Hooks.SetInboundDelay(80 * time.Millisecond) // round trip >= 160ms > 100ms heartbeat
	}
	time.Sleep(6 * time.Second) // the slow window itself
	now := c.WaitLeader(settleWithin)
	logStability(t, c, leader.Name, term, since, nil)
	c.WaitFor(settleWithin, "a round trip measured with the delay", func() bool {
		st := c.Nodes[now].Elector.Status()
		for _, p := range st.Peers {
			if p.RTT < 80*time.Millisecond {
				return false
			}
		}
		return len(st.Peers) == 2
	})
	c.StopAll()
	c.Check()
}

// transitions records one node's callbacks in order.
type transitions struct {
	mu     sync.Mutex
	seq    []string
	starts int
}

func (tr *transitions) callbacks() election.Callbacks {
	return election.Callbacks{
		OnStartedLeading: func(_ context.Context, l election.Lease) {
			tr.mu.Lock()
			tr.seq = append(tr.seq, fmt.Sprintf("start:%d", l.Token))
			tr.mu.Unlock()
		},
		OnStoppedLeading: func(l election.Lease) {
			tr.mu.Lock()
			tr.seq = append(tr.seq, fmt.Sprintf("stop:%d", l.Token))
			tr.mu.Unlock()
		},
	}
}

func (tr *transitions) get() ([]string, int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.seq...), tr.starts
}

func TestCallbacks_ExactlyOncePerTransitionAndLeaderWorkRunsAgain(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 3)
	t.Cleanup(c.DumpEvents)
	trs := make([]*transitions, 3)
	for i := range c.Nodes {
		trs[i] = &transitions{}
		cfg := c.Config(i)
		cfg.Callbacks = trs[i].callbacks()
		c.SetConfig(i, cfg)
		tr := trs[i]
		c.StartNode(i, func(e *election.Elector) {
			e.RunWhileLeader(func(ctx context.Context, _ election.Lease) error {
				tr.mu.Lock()
				tr.starts++
				tr.mu.Unlock()
				<-ctx.Done()
				return nil
			})
		})
	}
	first := c.WaitLeader(10 * time.Second)
	// Move leadership away and back, twice.
	cur := first
	for range 2 {
		for _, to := range []int{(first + 1) % 3, first} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			require.NoError(t, c.Nodes[cur].Elector.Transfer(ctx, c.Nodes[to].Name))
			cancel()
			cur = c.WaitLeader(5 * time.Second)
			require.Equal(t, to, cur)
		}
	}
	c.StopAll()
	for i, tr := range trs {
		seq, starts := tr.get()
		// Alternating start/stop with the same token, tokens increasing.
		require.Equal(t, 0, len(seq)%2, "node %d: %v", i, seq)
		var last uint64
		for j := 0; j < len(seq); j += 2 {
			var a, b uint64
			_, err := fmt.Sscanf(seq[j], "start:%d", &a)
			require.NoError(t, err, "node %d: %v", i, seq)
			_, err = fmt.Sscanf(seq[j+1], "stop:%d", &b)
			require.NoError(t, err, "node %d: %v", i, seq)
			require.Equal(t, a, b)
			require.Greater(t, a, last)
			last = a
		}
		require.Equal(t, len(seq)/2, starts, "node %d: leader work must run once per lease: %v", i, seq)
	}
	seq, starts := trs[first].get()
	require.Equal(t, 3, starts, "the first leader led three times: %v", seq)
	c.Check()
}

func TestNode_StopAndStartAgainInOneProcess(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 3)
	t.Cleanup(c.DumpEvents)
	c.Durable = true
	c.Start()
	l := c.WaitLeader(10 * time.Second)
	for round := range 3 {
		i := (l + 1 + round) % 3
		c.StopNode(i)
		c.StartNode(i, nil)
		c.WaitFor(5*time.Second, "the restarted node to follow the leader", func() bool {
			return c.Nodes[i].Elector.Leader().Name != ""
		})
		c.WaitLeader(10 * time.Second)
	}
	c.StopAll()
	c.Check()
}

func TestGracefulStopOfLeader_TransfersLeadership(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 3)
	start := time.Now()
	c.StopNode(l)
	next := c.WaitLeader(5 * time.Second)
	require.NotEqual(t, l, next)
	t.Logf("leadership moved in %v after the stop began", time.Since(start).Round(time.Millisecond))
	c.StopAll()
	c.Check()
}

// Check and Status answer within a bounded time whatever the peers do: a
// follower whose leader went silent still answers Check, after at most one
// deadline, saying the leader is unreachable.
func TestCheckAndStatus_AnswerInBoundedTimeWhenLeaderIsSilent(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 3)
	f := (l + 1) % 3
	ctx := context.Background()
	// Healthy: the leader is reachable and, once it has heard from every
	// peer in its term, reports nobody unhealthy.
	c.WaitFor(5*time.Second, "a healthy Check", func() bool {
		resp := c.Nodes[f].Elector.Check(ctx)
		return resp.HasLeader && !resp.LeaderUnreachable && len(resp.Unhealthy) == 0
	})

	c.Nodes[l].Hooks.BlockIngress(true)
	start := time.Now()
	resp := c.Nodes[f].Elector.Check(ctx)
	took := time.Since(start)
	require.True(t, resp.LeaderUnreachable, "%+v", resp)
	// The hung leader never answers: without its deadline (half an
	// election timeout) Check would wait for ever. The bound here only
	// catches that; the figure is logged, not asserted, so a loaded
	// machine cannot fail the test.
	require.Less(t, took, 10*tc.ElectionTimeout, "Check waited for the hung leader instead of its deadline")
	start = time.Now()
	st := c.Nodes[f].Elector.Status()
	statusTook := time.Since(start)
	require.Less(t, statusTook, 10*tc.ElectionTimeout, "Status waited for a peer: it must read local state only")
	t.Logf("with the leader hung: Check answered in %v (deadline %v), Status in %v", took.Round(time.Millisecond), tc.ElectionTimeout/2, statusTook)
	require.Len(t, st.Peers, 2)
	c.Nodes[l].Hooks.BlockIngress(false)
	c.StopAll()
}
