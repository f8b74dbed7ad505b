package election_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/election"
	tc "github.com/raftelect/raftelect/internal/testcluster"
)

// voters lists the voters node i applied, by name.
func voters(c *tc.Cluster, i int) []string {
	var out []string
	for _, m := range c.Nodes[i].Elector.Members() {
		if !m.Learner {
			out = append(out, m.Name)
		}
	}
	return out
}

// Growing 3 -> 5 and shrinking back over real gRPC and TLS: each new node
// starts with Join and an empty store, is added as a learner, promoted,
// and every running member ends up with the same voters. A removed node
// stops by itself with ErrRemoved. The checker finds no overlap of leases
// throughout.
func TestMembers_GrowToFiveAndShrinkBack(t *testing.T) {
	c, l := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Only the leader changes the membership, and says who leads.
	follower := (l + 1) % 3
	err := c.Nodes[follower].Elector.AddMember(ctx, election.Member{Name: "n9", Address: "127.0.0.1:1"})
	require.ErrorIs(t, err, election.ErrNotLeader)
	require.Contains(t, err.Error(), c.Nodes[l].Name)

	for range 2 {
		l = c.WaitLeader(10 * time.Second)
		i := c.AddSpare()
		c.StartNode(i, nil)
		require.NoError(t, c.Nodes[l].Elector.AddMember(ctx, election.Member{Name: c.Nodes[i].Name, Address: c.Nodes[i].Addr}))
	}
	want := []string{"n1", "n2", "n3", "n4", "n5"}
	c.WaitFor(10*time.Second, "every node applies five voters", func() bool {
		for i := range c.Nodes {
			if !slices.Equal(voters(c, i), want) {
				return false
			}
		}
		return true
	})
	// Adding a member that exists is refused, with the reason.
	l = c.WaitLeader(10 * time.Second)
	err = c.Nodes[l].Elector.AddMember(ctx, election.Member{Name: "n4", Address: c.Nodes[3].Addr})
	require.ErrorContains(t, err, "already a member")

	// Shrink: remove the two newest (whichever leads, never itself).
	for _, name := range []string{"n5", "n4"} {
		l = c.WaitLeader(10 * time.Second)
		if c.Nodes[l].Name == name {
			require.NoError(t, c.Nodes[l].Elector.Transfer(ctx, ""))
			l = c.WaitLeader(10 * time.Second)
		}
		var err error
		c.WaitFor(10*time.Second, "the leader to accept the removal of "+name, func() bool {
			// A leader just elected says to try again until it knows its
			// followers are alive (ErrChangeInProgress).
			err = c.Nodes[l].Elector.RemoveMember(ctx, name)
			return !errors.Is(err, election.ErrChangeInProgress)
		})
		require.NoError(t, err)
		i := slices.IndexFunc(c.Nodes, func(n *tc.Node) bool { return n.Name == name })
		require.ErrorIs(t, c.WaitExit(i, 10*time.Second), election.ErrRemoved, "%s must stop by itself once removed", name)
	}
	c.WaitFor(10*time.Second, "the three remaining apply three voters", func() bool {
		for i := range 3 {
			if !slices.Equal(voters(c, i), want[:3]) {
				return false
			}
		}
		return true
	})
	c.WaitLeader(10 * time.Second)
	c.StopAll()
	c.Check()
}

// A node removed while it was down comes back with its old state, in which
// it is still a member: the members refuse it as no member (it holds a
// valid certificate), and once a majority of its configuration has done so
// for an election timeout it stops with ErrRemoved, without disturbing the
// cluster's leader.
func TestMembers_NodeRemovedWhileDownStopsWhenItComesBack(t *testing.T) {
	c := tc.New(t, 3)
	c.Durable = true
	t.Cleanup(c.DumpEvents)
	c.Start()
	l := c.WaitLeader(10 * time.Second)
	// Only an established node can be told it was removed (a brand-new one
	// cannot tell a removal from another cluster's member list): wait until
	// every node has applied the cluster ID before one goes down. Stopped
	// 4 ms after the first election, a node came back never established,
	// and was held, not stopped.
	c.WaitFor(10*time.Second, "every node to apply the cluster ID", func() bool {
		for _, n := range c.Nodes {
			if n.Elector.Status().ClusterID == "" {
				return false
			}
		}
		return true
	})
	gone := (l + 1) % 3
	c.StopNode(gone)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l = c.WaitLeader(10 * time.Second)
	leader, term := c.Nodes[l].Name, c.Nodes[l].Elector.Leader().Term
	// A leader just elected may not yet know its followers are alive: it
	// says to try again (ErrChangeInProgress), as an operator would.
	var err error
	c.WaitFor(10*time.Second, "the leader to accept the removal", func() bool {
		err = c.Nodes[l].Elector.RemoveMember(ctx, c.Nodes[gone].Name)
		return !errors.Is(err, election.ErrChangeInProgress)
	})
	require.NoError(t, err)

	c.StartNode(gone, nil)
	err = c.WaitExit(gone, 15*time.Second)
	require.ErrorIs(t, err, election.ErrRemoved)
	require.Contains(t, err.Error(), "refuse it as no member")
	require.Equal(t, leader, c.Nodes[c.WaitLeader(10*time.Second)].Name, "the removed node disturbed the leader")
	require.Equal(t, term, c.Nodes[l].Elector.Leader().Term)
	c.StopAll()
	c.Check()
}

// Replacing the leader itself over real gRPC and TLS: the call on the
// leader returns once the replacement is done, the old leader hands
// leadership to a member that stays and stops with ErrRemoved, and the
// checker finds no overlap.
func TestMembers_ReplaceTheLeaderItself(t *testing.T) {
	c, l := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	i := c.AddSpare()
	c.StartNode(i, nil)
	old := c.Nodes[l].Name
	start := time.Now()
	require.NoError(t, c.Nodes[l].Elector.ReplaceMember(ctx, old, election.Member{Name: c.Nodes[i].Name, Address: c.Nodes[i].Addr}))
	t.Logf("replaced the leader %s by %s in %v", old, c.Nodes[i].Name, time.Since(start).Round(time.Millisecond))
	require.ErrorIs(t, c.WaitExit(l, 10*time.Second), election.ErrRemoved)
	nl := c.WaitLeader(10 * time.Second)
	require.NotEqual(t, old, c.Nodes[nl].Name)
	c.WaitFor(10*time.Second, "the members apply the replacement", func() bool {
		for j := range c.Nodes {
			if j != l && slices.Contains(voters(c, j), old) {
				return false
			}
		}
		return true
	})
	c.StopAll()
	c.Check()
}

// Bad requests are refused with errors that say what is wrong, and change
// nothing: a witness with a priority, a member without an address, removing
// or replacing a name that is no member, and removing the leader itself.
func TestMembers_BadRequestsAreRefused(t *testing.T) {
	c, l := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := c.Nodes[l].Elector
	require.ErrorContains(t, e.AddMember(ctx, election.Member{Name: "w", Address: "127.0.0.1:1", Witness: true, Priority: 3}), "witness")
	require.ErrorContains(t, e.AddMember(ctx, election.Member{Name: "x"}), "address")
	require.ErrorIs(t, e.RemoveMember(ctx, "nobody"), election.ErrUnknownPeer)
	require.ErrorIs(t, e.ReplaceMember(ctx, "nobody", election.Member{Name: "y", Address: "127.0.0.1:1"}), election.ErrUnknownPeer)
	err := e.RemoveMember(ctx, c.Nodes[l].Name)
	require.ErrorContains(t, err, "transfer leadership")
	require.Len(t, e.Members(), 3)
	require.False(t, errors.Is(err, election.ErrNotLeader))
	// A member added but not running stays a learner: the call gives up
	// with the caller's deadline, and the next change is refused as
	// another in progress, matching election's own sentinel.
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	err = e.AddMember(short, election.Member{Name: "n9", Address: "127.0.0.1:1"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "not yet a voter")
	err = e.AddMember(ctx, election.Member{Name: "n8", Address: "127.0.0.1:2"})
	require.ErrorIs(t, err, election.ErrChangeInProgress)
	require.ErrorContains(t, err, "n9 was added and is catching up as a learner")
	c.StopAll()
	c.Check()
}

// A witness votes but never leads: with n3 a witness, stopping whichever
// node leads (twice) always leaves the other region's node leading, and a
// transfer to the witness is refused. Over real gRPC and TLS.
func TestWitness_NeverLeads(t *testing.T) {
	c := tc.New(t, 3)
	c.Durable = true // restarted nodes keep their state
	t.Cleanup(c.DumpEvents)
	c.Tweak = func(cfg *election.Config) {
		cfg.Peers = slices.Clone(cfg.Peers) // shared by every node's configuration
		for i := range cfg.Peers {
			cfg.Peers[i].Witness = cfg.Peers[i].Name == "n3"
		}
	}
	c.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for round := range 2 {
		l := c.WaitLeader(10 * time.Second)
		require.NotEqual(t, "n3", c.Nodes[l].Name, "round %d: the witness leads", round)
		err := c.Nodes[l].Elector.Transfer(ctx, "n3")
		require.ErrorContains(t, err, "witness")
		c.StopNode(l)
		nl := c.WaitLeader(10 * time.Second)
		require.NotEqual(t, "n3", c.Nodes[nl].Name, "round %d: the witness leads after %s stopped", round, c.Nodes[l].Name)
		c.StartNode(l, nil)
	}
	for _, e := range c.Events() {
		if e.Node == "n3" {
			require.NotEqual(t, "lease_start", string(e.Kind), "the witness took a lease")
		}
	}
	c.StopAll()
	c.Check()
}

// Preferred leaders over real gRPC: n1 has priority 10, n2 5. Leadership
// moved to n2 returns to n1 once both have been stable for FailBackAfter,
// and Status says why on the node that moved it.
func TestPreferredLeader_FailsBackAfterTheStablePeriod(t *testing.T) {
	c := tc.New(t, 3)
	t.Cleanup(c.DumpEvents)
	c.Tweak = func(cfg *election.Config) {
		cfg.FailBackAfter = 2 * time.Second
		cfg.Peers = slices.Clone(cfg.Peers) // shared by every node's configuration
		for i := range cfg.Peers {
			switch cfg.Peers[i].Name {
			case "n1":
				cfg.Peers[i].Priority = 10
			case "n2":
				cfg.Peers[i].Priority = 5
			}
		}
	}
	c.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.WaitFor(20*time.Second, "n1 leads", func() bool { return c.Leader() == 0 })
	require.NoError(t, c.Nodes[0].Elector.Transfer(ctx, "n2"))
	movedAt := time.Now()
	c.WaitFor(20*time.Second, "leadership back on n1", func() bool { return c.Leader() == 0 })
	back := time.Since(movedAt)
	// A figure, not a bound: the stable period counts from n2's lease
	// start, a moment before the transfer call returned. The deterministic
	// claim (never before the period, never while a link flaps) is the
	// transcript internal/core/testdata/fail-back.txt.
	t.Logf("leadership returned to n1 %v after the transfer to n2 returned (FailBackAfter 2s)", back.Round(time.Millisecond))
	st := c.Nodes[1].Elector.Status()
	require.Equal(t, "n1", st.PreferredLeader)
	require.Contains(t, st.LastPreferredMove, "fail-back to preferred member n1")
	c.StopAll()
	c.Check()
}

// Without TLS nobody has an identity: a hello that carries no raft message
// claims no sender. Taking its refusal as "not a member" held every raft
// message, and an insecure cluster never elected (found with `raftelect
// run` and three insecure configurations). Now it elects, and every peer
// stays reachable.
func TestInsecureCluster_ElectsAndStaysReachable(t *testing.T) {
	c := tc.New(t, 3)
	t.Cleanup(c.DumpEvents)
	c.Tweak = func(cfg *election.Config) {
		cfg.Insecure, cfg.TLS = true, election.TLSConfig{}
	}
	c.Start()
	l := c.WaitLeader(10 * time.Second)
	c.WaitFor(10*time.Second, "every peer reachable from the leader", func() bool {
		st := c.Nodes[l].Elector.Status()
		for _, p := range st.Peers {
			if !p.Reachable || len(p.ConfigMismatch) > 0 {
				return false
			}
		}
		return len(st.Peers) == 2 && st.HoldsLease
	})
	c.StopAll()
	c.Check()
}
