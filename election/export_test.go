package election

import "time"

// SetLeaseLengthForTest replaces how long a quorum's acknowledgement keeps
// the running node's lease, for tests that show the checker catches an
// unsafe lease. It reports false if the node is not running.
func SetLeaseLengthForTest(e *Elector, d time.Duration) bool {
	l := e.loop.Load()
	if l == nil {
		return false
	}
	l.lease.mu.Lock()
	l.lease.override = d
	l.lease.mu.Unlock()
	return true
}

// LeaseLength returns the lease length an acknowledgement from a peer with
// this node's own timings buys on the running node, 0 if it is not running.
func LeaseLength(e *Elector) time.Duration {
	l := e.loop.Load()
	if l == nil {
		return 0
	}
	l.lease.mu.Lock()
	defer l.lease.mu.Unlock()
	return l.lease.credit(l.lease.own)
}

// ReportRefusedForTest tells the running node that a connection to peer
// was refused, as its transport does when a dial gets ECONNREFUSED. It
// reports false if the node is not running.
func ReportRefusedForTest(e *Elector, peer string) bool {
	l := e.loop.Load()
	if l == nil {
		return false
	}
	l.PeerRefused(NodeID(peer))
	return true
}
