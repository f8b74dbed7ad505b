package transport

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Per-socket timers of Linux 6.15 and later (include/uapi/linux/tcp.h), not
// yet in golang.org/x/sys/unix.
const (
	tcpRTOMinUS    = 45 // TCP_RTO_MIN_US: floor of the retransmission timeout
	tcpDelackMaxUS = 46 // TCP_DELACK_MAX_US: ceiling of the delayed-ACK timer
)

// Retransmission timing of peer connections (see thinStream).
const (
	// peerRTOMin replaces Linux's 200 ms floor of the retransmission
	// timeout. The timeout is the smoothed round trip plus a variance
	// term that never falls below this floor, so on a link with a real
	// round trip of tens of milliseconds the round trip still dominates.
	// It stays above 40 ms, the delayed-ACK timer of a client that does
	// not lower it (an operator tool, the chaos harness): with 20 ms, the
	// answers to those were retransmitted for nothing, every time.
	peerRTOMin = 50_000 // µs
	// peerDelackMax bounds how long the kernel holds back a pure ACK
	// (normally 40 ms, up to 200 ms). It must stay well below peerRTOMin:
	// a sender whose segment is ACKed later than its timeout retransmits
	// it for nothing. The number of ACKs is the same; only their timing.
	peerDelackMax = 10_000 // µs
)

// thinStream sets what keeps a lost segment from stalling a peer
// connection for long: heartbeats and their answers are one segment each,
// so a lost one is found only by the retransmission timeout.
//
//   - TCP_THIN_LINEAR_TIMEOUTS: while fewer than four segments are in
//     flight, a lost segment is retransmitted every RTO instead of after 1,
//     2, 4, 8 x RTO. Required: a socket without it fails to dial.
//   - TCP_RTO_MIN_US and TCP_DELACK_MAX_US (Linux 6.15 and later; best
//     effort, older kernels keep 200 ms): the RTO's floor is 50 ms
//     instead of 200 ms, so a lost heartbeat or answer is sent again
//     within about half a heartbeat interval, not two (docs/benchmarks.md,
//     "Lease under loss").
//
// Set on dialled sockets and, by thinStreamListener, on accepted ones
// (Linux refuses it on a listening socket).
func thinStream(c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_THIN_LINEAR_TIMEOUTS, 1)
		if serr != nil {
			return
		}
		// BBR, the default of many hosts, never sets a slow-start
		// threshold, so the kernel counts its connections as in
		// initial slow start forever and never as thin streams:
		// retransmissions back off exponentially whatever
		// TCP_THIN_LINEAR_TIMEOUTS says. A node's messages are a few
		// hundred bytes: the congestion control makes no difference to
		// them, the linear timeouts do. Cubic needs no privilege where
		// it is the host's default; reno is always allowed.
		if unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, "cubic") != nil {
			_ = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, "reno")
		}
		// Delayed ACKs first: until it is set, a floor below the
		// 40 ms delayed-ACK timer would retransmit for nothing.
		if unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, tcpDelackMaxUS, peerDelackMax) == nil {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, tcpRTOMinUS, peerRTOMin)
		}
	}); err != nil {
		return err
	}
	return serr
}

// tcpInfo: tcpStalled can tell (path.go).
const tcpInfo = true

// tcpEstablished is TCP_ESTABLISHED, TCP_INFO's state of an open
// connection (include/net/tcp_states.h).
const tcpEstablished = 1

// tcpStalled reports whether c holds data that TCP cannot get across: the
// retransmission timer fired for its oldest unacknowledged segment (a
// silent loss: TCP_INFO's retransmits, reset when that segment is
// acknowledged), or its sends fail on this host and the probe timer
// retries them (a local drop, such as a firewall rule on the way out:
// probes with the peer's window open). A peer process that stopped reading
// causes neither while its kernel acknowledges, nor do zero-window probes
// (the window is shut then). ok is false when c is no TCP connection or is
// not established.
func tcpStalled(c net.Conn) (stalled, ok bool) {
	sc, isTCP := c.(syscall.Conn)
	if !isTCP {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil || info.State != tcpEstablished {
		// Closed: by this side, by the peer, or by the kernel, which
		// gives up after TCP_USER_TIMEOUT and leaves the descriptor
		// open until gRPC reads the error.
		return false, false
	}
	return info.Retransmits > 0 || info.Probes > 0 && info.Snd_wnd > 0, true
}
