package transport

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// thinStream marks a TCP socket as a thin stream with linear retransmission
// timeouts (TCP_THIN_LINEAR_TIMEOUTS): while fewer than four segments are in
// flight, as for heartbeats and their acknowledgements, a lost segment is
// retransmitted every RTO instead of after 1, 2, 4, 8 x RTO. Under random
// loss that is what keeps one unlucky segment from stalling the stream (and
// the leader's lease acknowledgements on it) for seconds. Set on dialled
// sockets and, by thinStreamListener, on accepted ones (Linux refuses it on
// a listening socket).
func thinStream(c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_THIN_LINEAR_TIMEOUTS, 1)
	}); err != nil {
		return err
	}
	return serr
}
