package transport

import (
	"net"
	"syscall"
)

// thinStreamListener sets thinStream on every TCP connection it accepts.
type thinStreamListener struct{ net.Listener }

func (l thinStreamListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = thinStream(rc) // best effort: only the retransmission backoff differs
		}
	}
	return c, nil
}

// thinStreamDialer dials TCP connections with thinStream set.
func thinStreamDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error { return thinStream(c) }}
}
