package election

import (
	"context"
	"sync"
)

// Callbacks are told about leadership, in order and one at a time, on a
// goroutine of their own: a slow callback delays later callbacks, never the
// raft loop. Any may be nil.
type Callbacks struct {
	// OnStartedLeading: this node holds the lease. ctx is cancelled the
	// moment the lease ends. Long work belongs in Elector.RunWhileLeader,
	// which also restarts it on error.
	OnStartedLeading func(ctx context.Context, lease Lease)
	// OnStoppedLeading: the lease this node held has ended (its context was
	// already cancelled). Called once for every OnStartedLeading.
	OnStoppedLeading func(lease Lease)
	// OnNewLeader: the leader this node knows of changed; "" when it knows
	// of none.
	OnNewLeader func(leader string, term uint64)
}

// callbackEvent is one queued notification.
type callbackEvent struct {
	started *Lease
	ctx     context.Context
	stopped *Lease
	leader  *LeaderInfo
}

// callbackQueue delivers events to Callbacks in order on one goroutine. The
// raft loop pushes without blocking (the queue grows; transitions are rare).
type callbackQueue struct {
	cb Callbacks
	// tap, if set, sees every event as it is pushed (Elector.Events); it
	// must not block.
	tap    func(callbackEvent)
	mu     sync.Mutex
	events []callbackEvent
	wake   chan struct{}
	done   chan struct{}
}

func newCallbackQueue(cb Callbacks) *callbackQueue {
	return &callbackQueue{cb: cb, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (q *callbackQueue) push(e callbackEvent) {
	if q.tap != nil {
		q.tap(e)
	}
	q.mu.Lock()
	q.events = append(q.events, e)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run delivers events until stop is closed, then delivers what is left.
func (q *callbackQueue) run(stop <-chan struct{}) {
	defer close(q.done)
	for {
		select {
		case <-q.wake:
		case <-stop:
			q.deliver()
			return
		}
		q.deliver()
	}
}

func (q *callbackQueue) deliver() {
	for {
		q.mu.Lock()
		if len(q.events) == 0 {
			q.mu.Unlock()
			return
		}
		e := q.events[0]
		q.events = q.events[1:]
		q.mu.Unlock()
		switch {
		case e.started != nil && q.cb.OnStartedLeading != nil:
			q.cb.OnStartedLeading(e.ctx, *e.started)
		case e.stopped != nil && q.cb.OnStoppedLeading != nil:
			q.cb.OnStoppedLeading(*e.stopped)
		case e.leader != nil && q.cb.OnNewLeader != nil:
			q.cb.OnNewLeader(e.leader.Name, e.leader.Term)
		}
	}
}
