package transport

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func thinLTO(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_THIN_LINEAR_TIMEOUTS)
	}))
	require.NoError(t, gerr)
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
}
