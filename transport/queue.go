package transport

import (
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// queuedMsg is a message waiting in a sendQueue with the time it was queued.
type queuedMsg struct {
	msg *raftpb.Message
	at  time.Time
}

// sendQueue is a bounded, non-blocking queue of messages for one lane of one
// peer. The raft Ready loop puts; one sender goroutine takes everything at
// once. put never blocks and never allocates once the queue is warm: the
// backing arrays are preallocated and swapped between put and take.
//
// Heartbeats (and heartbeat responses) are coalesced: a newer one replaces a
// queued one of the same type, so a peer whose link stalled receives the
// current heartbeat when it recovers, not a backlog of stale ones, and a
// stream of heartbeats can never fill the queue.
type sendQueue struct {
	mu     sync.Mutex
	msgs   []queuedMsg
	spare  []queuedMsg
	limit  int
	closed bool          // the peer left the member set: put refuses
	ready  chan struct{} // capacity 1: "there is something to take"
}

func newSendQueue(limit int) *sendQueue {
	return &sendQueue{
		msgs:  make([]queuedMsg, 0, limit),
		spare: make([]queuedMsg, 0, limit),
		limit: limit,
		ready: make(chan struct{}, 1),
	}
}

// put queues m. It returns false, without queueing, when the queue is full
// or closed.
func (q *sendQueue) put(m *raftpb.Message, now time.Time) bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	if coalesces(m.GetType()) {
		for i := range q.msgs {
			if q.msgs[i].msg.GetType() == m.GetType() {
				q.msgs[i] = queuedMsg{msg: m, at: now}
				q.mu.Unlock()
				return true
			}
		}
	}
	if len(q.msgs) >= q.limit {
		q.mu.Unlock()
		return false
	}
	q.msgs = append(q.msgs, queuedMsg{msg: m, at: now})
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// take returns everything queued, oldest first, and empties the queue. The
// returned slice is valid until the next take.
func (q *sendQueue) take() []queuedMsg {
	q.mu.Lock()
	out := q.msgs
	clear(q.spare[:cap(q.spare)]) // drop references to sent messages
	q.msgs = q.spare[:0]
	q.spare = out
	q.mu.Unlock()
	return out
}

// close makes every later put fail and returns what was queued.
func (q *sendQueue) close() []queuedMsg {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	out := q.msgs
	q.msgs = nil
	return out
}

// len returns the number of queued messages.
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

func coalesces(t raftpb.MessageType) bool {
	return t == raftpb.MsgHeartbeat || t == raftpb.MsgHeartbeatResp
}

// isControl reports whether a message type travels in the control lane:
// everything but log appends and snapshots, which may be large and slow and
// must never delay a heartbeat or a vote.
func isControl(t raftpb.MessageType) bool {
	return t != raftpb.MsgApp && t != raftpb.MsgSnap
}
