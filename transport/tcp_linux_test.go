package transport

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func tcpOpt(t *testing.T, c net.Conn, opt int) (int, error) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, opt)
	}))
	return v, gerr
}

func congestionControl(t *testing.T, c net.Conn) string {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var cc string
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		cc, gerr = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION)
	}))
	require.NoError(t, gerr)
	return strings.TrimRight(cc, "\x00")
}

func thinLTO(t *testing.T, c net.Conn) int {
	t.Helper()
	v, err := tcpOpt(t, c, unix.TCP_THIN_LINEAR_TIMEOUTS)
	require.NoError(t, err)
	return v
}

// Both ends of a peer connection retransmit lost heartbeats and answers
// without exponential backoff: the dialled socket sets it, and the accepted
// one inherits it from the listener.
func TestPeerConnections_AreThinStreamsBothWays(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	lis := thinStreamListener{inner}
	defer lis.Close()

	out, err := thinStreamDialer().Dial("tcp", lis.Addr().String())
	require.NoError(t, err)
	defer out.Close()
	in, err := lis.Accept()
	require.NoError(t, err)
	defer in.Close()
	require.Equal(t, 1, thinLTO(t, out), "dialled socket")
	require.Equal(t, 1, thinLTO(t, in), "accepted socket")

	// A plain socket does not have it: the check can fail.
	plain, err := net.Dial("tcp", lis.Addr().String())
	require.NoError(t, err)
	defer plain.Close()
	require.Equal(t, 0, thinLTO(t, plain))
	plainIn, err := inner.Accept()
	require.NoError(t, err)
	defer plainIn.Close()
	require.Equal(t, 0, thinLTO(t, plainIn))

	// The retransmission floor and the delayed-ACK ceiling, where the
	// kernel has them (Linux 6.15 and later).
	plainRTO, err := tcpOpt(t, plain, tcpRTOMinUS)
	if errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EINVAL) {
		t.Logf("this kernel has no TCP_RTO_MIN_US (%v): peer connections keep the 200 ms floor", err)
		return
	}
	require.NoError(t, err)
	require.Equal(t, 200_000, plainRTO, "a plain socket has Linux's floor: the check can fail")
	t.Logf("a plain socket's congestion control here: %s", congestionControl(t, plain))
	for name, c := range map[string]net.Conn{"dialled": out, "accepted": in} {
		cc := congestionControl(t, c)
		require.Contains(t, []string{"cubic", "reno"}, cc, "%s socket: a congestion control that lets it be a thin stream", name)
		rto, err := tcpOpt(t, c, tcpRTOMinUS)
		require.NoError(t, err)
		delack, err := tcpOpt(t, c, tcpDelackMaxUS)
		require.NoError(t, err)
		// The kernel keeps both in jiffies: read back rounded up.
		require.GreaterOrEqual(t, rto, peerRTOMin, "%s socket's RTO floor", name)
		require.Less(t, rto, 200_000, "%s socket's RTO floor", name)
		require.GreaterOrEqual(t, delack, peerDelackMax, "%s socket's delayed-ACK ceiling", name)
		require.Less(t, delack, rto, "%s socket: delayed ACKs must come before the retransmission", name)
	}
}
