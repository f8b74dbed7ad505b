package election_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/election"
	tc "github.com/raftelect/raftelect/internal/testcluster"
)

// A leader whose raft loop is held (a long GC pause, a starved process, a
// store write that does not return) stops being the leader at its lease's
// expiry all the same: IsLeader and Lease compare the clock with the expiry
// themselves, and nothing renews the lease while the loop is held. One
// node, so that no other can be elected meanwhile: its event log, written
// by the held loop, records the lease's end only once the loop runs again.
func TestIsLeader_EndsAtExpiryWhileTheLoopIsHeld(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 1)
	e := c.Nodes[l].Elector
	length := election.LeaseLength(e)
	release := make(chan struct{})
	require.True(t, election.StallLoopForTest(e, release))
	held := time.Now()
	c.WaitFor(settleWithin, "IsLeader to turn false while the loop is held", func() bool { return !e.IsLeader() })
	took := time.Since(held)
	_, holds := e.Lease()
	require.False(t, holds, "Lease still reports the lease after its expiry")
	t.Logf("IsLeader turned false %v after the loop was held (lease %v)", took.Round(time.Millisecond), length)
	close(release)
	c.WaitLeader(settleWithin)
	c.StopAll()
	c.Check()
}

// A node answers a heartbeat with that heartbeat's own stamp: when its loop
// waits for input, Deliver waits for the step itself, with no timer (a
// stopped timer would still wake the process when it would have fired).
// When the loop is held, Deliver answers all the same, with the
// acknowledgement it had, rather than wait for the loop. One node of three
// runs, so that no real leader's heartbeat overwrites the acknowledgement
// under test; the heartbeats come from a leader that does not run.
func TestDeliver_AnswersWithThisHeartbeatAndNeverWaitsForAHeldLoop(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 3)
	c.StartNode(0, nil)
	e := c.Nodes[0].Elector
	var st election.Status
	c.WaitFor(settleWithin, "the node to start", func() bool { st = e.Status(); return st.Term > 0 })
	leader := c.Nodes[1].Name
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for i := range uint64(50) {
		at := 1_000_000 + i
		got, err := election.HeartbeatForTest(ctx, e, leader, st.Term, at)
		require.NoError(t, err)
		require.Equal(t, at, got, "heartbeat %d: the answer acknowledges another heartbeat than the one it answers", i)
	}
	require.Equal(t, leader, e.Status().Leader)

	release := make(chan struct{})
	require.True(t, election.StallLoopForTest(e, release))
	answered := make(chan uint64, 1)
	go func() {
		got, err := election.HeartbeatForTest(ctx, e, leader, st.Term, 2_000_000)
		assert.NoError(t, err)
		answered <- got
	}()
	select {
	case got := <-answered:
		require.Equal(t, uint64(1_000_049), got, "a held loop stepped nothing: the answer is the acknowledgement it had")
	case <-ctx.Done():
		t.Fatal("Deliver waited for a held loop")
	}
	close(release)
	got, err := election.HeartbeatForTest(ctx, e, leader, st.Term, 3_000_000)
	require.NoError(t, err)
	require.Equal(t, uint64(3_000_000), got)
	c.StopAll()
}
