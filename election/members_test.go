package election_test

import (
	"context"
	"errors"
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
	t.Logf("leadership returned to n1 %v after the transfer to n2 (FailBackAfter 2s)", back.Round(time.Millisecond))
	require.GreaterOrEqual(t, back, 2*time.Second, "fail-back before the stable period")
	st := c.Nodes[1].Elector.Status()
	require.Equal(t, "n1", st.PreferredLeader)
	require.Contains(t, st.LastPreferredMove, "fail-back to preferred member n1")
	c.StopAll()
	c.Check()
}
