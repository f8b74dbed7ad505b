package election

import (
	"context"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/raftelect/raftelect/internal/core"
	"github.com/raftelect/raftelect/transport"
)

// The term budget's constants, for the bound tests.
const (
	termBurst  = core.TermBurst
	termRefill = core.TermRefill
)

// raft is the loop's RawNode, for tests that set raft up directly.
func (l *raftLoop) raft() *raft.RawNode { return l.node.RawNode() }

// advance processes raft's pending Ready and does what it asks, as the loop
// does at the end of every input (tests that step raft directly use it).
func (l *raftLoop) advance() error {
	if err := l.node.Advance(time.Now()); err != nil {
		return err
	}
	l.flush()
	return nil
}

// onLoop runs f on e's raft loop, between two inputs, and reports false if
// the node is not running.
func onLoop(e *Elector, f func(l *raftLoop)) bool {
	l := e.loop.Load()
	if l == nil {
		return false
	}
	done := make(chan struct{})
	select {
	case l.calls <- func() { f(l); close(done) }:
	case <-l.stopped:
		return false
	}
	select {
	case <-done:
		return true
	case <-l.stopped:
		return false
	}
}

// SetLeaseLengthForTest makes e's lease last d after each acknowledgement,
// whatever its peers promised: only to show that the checker catches an
// unsafe lease. It reports false if the node is not running.
func SetLeaseLengthForTest(e *Elector, d time.Duration) bool {
	return onLoop(e, func(l *raftLoop) { l.node.SetLeaseLength(d) })
}

// LeaseLength is how long one acknowledgement keeps e's lease.
func LeaseLength(e *Elector) time.Duration {
	var d time.Duration
	onLoop(e, func(l *raftLoop) { d = l.node.LeaseLength() })
	return d
}

// ReportRefusedForTest reports a refused connection to peer, as the
// transport would.
func ReportRefusedForTest(e *Elector, peer string) bool {
	l := e.loop.Load()
	if l == nil {
		return false
	}
	l.PeerRefused(NodeID(peer))
	return true
}

// StallLoopForTest holds e's raft loop between two inputs, as a long GC
// pause, a starved process or a store write that does not return would,
// until release is closed. It returns once the loop is held, false if the
// node is not running.
func StallLoopForTest(e *Elector, release <-chan struct{}) bool {
	l := e.loop.Load()
	if l == nil {
		return false
	}
	held := make(chan struct{})
	select {
	case l.calls <- func() { close(held); <-release }:
	case <-l.stopped:
		return false
	}
	select {
	case <-held:
		return true
	case <-l.stopped:
		return false
	}
}

// HeartbeatForTest delivers to e, as its transport would, a heartbeat from
// leader in term, stamped at, and returns the stamp e's answer acknowledges.
func HeartbeatForTest(ctx context.Context, e *Elector, leader string, term, at uint64) (uint64, error) {
	l := e.loop.Load()
	if l == nil {
		return 0, ErrNotRunning
	}
	from := NodeID(leader)
	m := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: &from, To: &e.self, Term: &term}
	ack, err := l.Deliver(ctx, from, []*raftpb.Message{m}, transport.Stamp{At: at, Incarnation: 1})
	return ack.Stamp.At, err
}
