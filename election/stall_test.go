package election_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/election"
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
