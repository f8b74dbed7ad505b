//go:build !linux

package transport

import (
	"net"
	"syscall"
)

// thinStream is Linux's TCP_THIN_LINEAR_TIMEOUTS (see tcp_linux.go); other
// platforms keep their default retransmission backoff.
func thinStream(syscall.RawConn) error { return nil }

// tcpInfo: tcpStalled cannot tell; the prober stays off (path.go).
const tcpInfo = false

// tcpStalled is known on Linux only (see tcp_linux.go): elsewhere a
// stalled path waits for TCP's own retransmissions, as it always did.
func tcpStalled(net.Conn) (stalled, ok bool) { return false, false }
