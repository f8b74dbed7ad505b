package election

import (
	"context"
	"sync"
	"time"
)

// EventKind says what an Event reports.
type EventKind string

const (
	// EventCurrent is the first event of every stream: the leader this
	// node knew of, and the lease it held, when the stream began.
	EventCurrent EventKind = "current"
	// EventLeader: the leader this node knows of changed (a different node,
	// or none, or the same node in a new term).
	EventLeader EventKind = "leader"
	// EventStartedLeading: this node began to hold the lease.
	EventStartedLeading EventKind = "started-leading"
	// EventStoppedLeading: the lease this node held has ended.
	EventStoppedLeading EventKind = "stopped-leading"
)

// Event is one change of leadership as this node saw it.
type Event struct {
	Kind EventKind
	// Time is when the raft loop observed the change (local clock).
	Time time.Time
	// Node is this node's name.
	Node string
	// Leader and Term: the leader this node knows of ("" for none) and
	// the term, after the change.
	Leader string
	Term   uint64
	// Lease is set for EventStartedLeading, EventStoppedLeading, and for
	// EventCurrent when this node held the lease then.
	Lease *Lease
	// Missed counts events dropped just before this one because the
	// reader fell more than eventBuffer events behind.
	Missed int
}

// eventBuffer bounds the events kept for one slow reader: leadership
// changes are rare, so only a reader that stopped reading fills it, and
// then it costs a bounded amount of memory, not the node.
const eventBuffer = 1024

// Events returns a stream of this node's leadership events: first an
// EventCurrent with the state at the call, then every change, in order,
// the same ones Callbacks are told of. It never slows the raft loop: a
// reader more than 1024 events behind loses the oldest, and the next event
// says how many (Missed). The channel is closed when ctx ends or when Run
// has returned and the events before that were delivered; a reader that
// stops reading early must cancel ctx. Call it before or during Run.
func (e *Elector) Events(ctx context.Context) <-chan Event {
	out := make(chan Event)
	s := &subscriber{wake: make(chan struct{}, 1)}
	e.hub.subscribe(s)
	go s.run(ctx, e.hub, out)
	return out
}

// eventHub fans the raft loop's notifications out to Events readers. The
// raft loop's callback queue calls publish; publish never blocks.
type eventHub struct {
	node string

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	leader string
	term   uint64
	lease  *Lease
	closed bool
	done   chan struct{} // closed by close: the node has stopped
}

func newEventHub(node string) *eventHub {
	return &eventHub{node: node, subs: map[*subscriber]struct{}{}, done: make(chan struct{})}
}

// subscribe adds s with the current state as its first event, taken under
// the same lock as publish, so no change falls between the two.
func (h *eventHub) subscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var lease *Lease
	if h.lease != nil {
		l := *h.lease
		lease = &l
	}
	s.push(Event{Kind: EventCurrent, Time: time.Now(), Node: h.node, Leader: h.leader, Term: h.term, Lease: lease})
	if !h.closed {
		h.subs[s] = struct{}{}
	}
}

func (h *eventHub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// publish turns one callback notification into an Event for every reader.
func (h *eventHub) publish(ce callbackEvent) {
	ev := Event{Time: time.Now(), Node: h.node}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case ce.started != nil:
		l := *ce.started
		h.lease = &l
		ev.Kind, ev.Lease = EventStartedLeading, &l
	case ce.stopped != nil:
		l := *ce.stopped
		h.lease = nil
		ev.Kind, ev.Lease = EventStoppedLeading, &l
	case ce.leader != nil:
		h.leader, h.term = ce.leader.Name, ce.leader.Term
		ev.Kind = EventLeader
	default:
		return
	}
	ev.Leader, ev.Term = h.leader, h.term
	if ev.Lease != nil && ev.Lease.Token > ev.Term {
		ev.Term = ev.Lease.Token
	}
	for s := range h.subs {
		s.push(ev)
	}
}

// close marks the node stopped: readers get what is queued, then their
// channels close.
func (h *eventHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

// subscriber is one Events reader: a bounded queue and the goroutine that
// hands it to the reader's channel.
type subscriber struct {
	mu     sync.Mutex
	queue  []Event
	missed int
	wake   chan struct{}
}

func (s *subscriber) push(ev Event) {
	s.mu.Lock()
	if len(s.queue) == eventBuffer {
		s.queue = s.queue[1:]
		s.missed++
	}
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) pop() (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return Event{}, false
	}
	ev := s.queue[0]
	s.queue = s.queue[1:]
	ev.Missed, s.missed = s.missed, 0
	return ev, true
}

func (s *subscriber) run(ctx context.Context, h *eventHub, out chan<- Event) {
	defer close(out)
	defer h.unsubscribe(s)
	stopped := h.done
	for {
		for {
			ev, ok := s.pop()
			if !ok {
				break
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
		if stopped == nil {
			return // the node stopped and everything queued was delivered
		}
		select {
		case <-s.wake:
		case <-stopped:
			// Publish has ended (close holds the lock publish takes): one
			// more pass delivers the last events.
			stopped = nil
		case <-ctx.Done():
			return
		}
	}
}
