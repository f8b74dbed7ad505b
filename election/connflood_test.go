package election_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/election"
	tc "github.com/raftelect/raftelect/internal/testcluster"
)

// 2,000 idle TCP connections without a certificate, from 50 other
// addresses, held open against the leader: the leader never holds more
// than its caps, a follower restarted during the flood connects again, and
// the cluster keeps a leader. (Outside review: 20,000 such connections used
// up a node's file descriptors and members could not connect.)
func TestIdleConnectionFlood_MembersStillConnectAndClusterKeepsLeader(t *testing.T) {
	t.Parallel()
	lim := election.ConnectionLimits{MaxPendingConns: 128, HandshakeTimeout: 3 * time.Second}
	c := tc.New(t, 3)
	c.Tweak = func(cfg *election.Config) { cfg.ConnectionLimits = lim }
	c.Durable = true // the follower restarts with its state
	t.Cleanup(c.DumpEvents)
	c.Start()
	l := c.WaitLeader(10 * time.Second)
	leader := c.Nodes[l]
	maxOpen, maxPending := 0, 0
	sample := func() {
		s := election.PeerListenerConns(leader.Elector)
		maxOpen, maxPending = max(maxOpen, s.Open), max(maxPending, s.Pending)
	}

	var flood []net.Conn
	defer func() {
		for _, fc := range flood {
			fc.Close()
		}
	}()
	dialErrs := 0
	for s := range 50 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 3, byte(s+1))}, Timeout: 5 * time.Second}
		for range 40 {
			fc, err := d.Dial("tcp", leader.Addr)
			if err != nil {
				dialErrs++
				continue
			}
			flood = append(flood, fc)
		}
		sample()
	}

	// A follower restarts during the flood: it must connect to the leader
	// again and follow it.
	f := (l + 1) % 3
	c.StopNode(f)
	c.StartNode(f, nil)
	// Its sends to the leader (its hello on connecting, then its
	// responses) go through the flooded listener.
	c.WaitFor(20*time.Second, c.Nodes[f].Name+" to reach the leader through the flood and follow it", func() bool {
		sample()
		if c.Nodes[f].Elector.Leader().Name != leader.Name {
			return false
		}
		for _, p := range c.Nodes[f].Elector.Status().Peers {
			if p.Name == leader.Name {
				return p.Reachable
			}
		}
		return false
	})
	sample()
	t.Logf("flood: %d idle connections (%d dial errors) against %s; at most %d open and %d pending there at once; leader now %s",
		len(flood), dialErrs, leader.Name, maxOpen, maxPending, c.Nodes[f].Elector.Leader().Name)
	require.LessOrEqual(t, maxPending, lim.MaxPendingConns)
	require.LessOrEqual(t, maxOpen, lim.MaxPendingConns+8, "open: the pending cap plus the members' connections")
	c.StopAll()
	c.Check()
}
