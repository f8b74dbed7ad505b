package transport

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// A probe's connection waiting for the primary ClientConn's dial is taken
// by it, recorded as the peer's latest connection (for the prober and for
// the lanes' stale-stream check), and the prober is told (took). Without
// the channels newPeer makes (a rebase dropped them once), neither a dial
// in progress (ready) nor the prober (took) hears of the hand-over, and a
// heal took ~0.4 s longer (docs/benchmarks.md); with newPeer's line
// removed this test fails.
func TestDialPeer_TakesTheProbesConnection(t *testing.T) {
	tn := newTestNet(t, 1, nil)
	tr := tn.trs[0]
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer lis.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", lis.Addr().String())
		require.NoError(t, err)
		// Take the accepted end now, while the listener is open: once
		// the deferred Close has run, a connection still in its backlog
		// is never accepted, and waiting for it in a cleanup hung.
		s := <-accepted
		t.Cleanup(func() { c.Close(); s.Close() })
		return c
	}

	p := tr.newPeer(Peer{ID: 9, Name: "x", Addr: lis.Addr().String()})
	require.NotNil(t, p.path.ready, "newPeer makes the hand-over channels")
	require.NotNil(t, p.path.took, "newPeer makes the hand-over channels")

	// Waiting before the dial starts.
	probe := dial()
	p.path.fresh = probe
	got, err := tr.dialPeer(context.Background(), p, "127.0.0.1:1", true)
	require.NoError(t, err)
	require.Same(t, probe, got, "the dial took the probe's connection instead of dialling")
	select {
	case <-p.path.took:
	default:
		t.Fatal("the prober was not told its connection was taken")
	}
	require.Equal(t, probe.LocalAddr().String(), *p.dialed.Load())

}
