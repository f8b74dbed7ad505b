//go:build unix

package transport

import (
	"net"
	"syscall"
)

// rawSender sends datagrams without ever waiting: on the raft loop (Send)
// a full socket buffer must drop the datagram, not block, and the stream
// still carries what was not answered. Its send and recv are per system:
// raw system calls on Linux (datagram_linux.go), the portable ones on
// other Unix systems (datagram_unix.go).
type rawSender struct {
	rc syscall.RawConn
	v6 bool // an AF_INET6 socket (dual-stack when bound to the wildcard)
}

func newRawSender(c *net.UDPConn) (rawSender, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return rawSender{}, err
	}
	r := rawSender{rc: rc}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var sa syscall.Sockaddr
		sa, serr = syscall.Getsockname(int(fd))
		_, r.v6 = sa.(*syscall.SockaddrInet6)
	}); err != nil {
		return rawSender{}, err
	}
	return r, serr
}
