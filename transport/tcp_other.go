//go:build !linux

package transport

import "syscall"

// thinStream is Linux's TCP_THIN_LINEAR_TIMEOUTS (see tcp_linux.go); other
// platforms keep their default retransmission backoff.
func thinStream(syscall.RawConn) error { return nil }
