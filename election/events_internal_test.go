package election

import (
	"context"
	"testing"
)

// TestEventsSlowReaderLosesOldestAndIsToldHowMany: a reader that falls more
// than eventBuffer events behind loses the oldest ones, and the first event
// it then reads says how many it missed; publish never blocks.
func TestEventsSlowReaderLosesOldestAndIsToldHowMany(t *testing.T) {
	h := newEventHub("n1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &subscriber{wake: make(chan struct{}, 1)}
	h.subscribe(s) // queues EventCurrent
	const extra = 10
	for i := range eventBuffer + extra {
		h.publish(callbackEvent{leader: &LeaderInfo{Name: "n2", Term: uint64(i + 1)}})
	}
	out := make(chan Event)
	go s.run(ctx, h, out)
	first := <-out
	// EventCurrent and the first extra leader events were dropped.
	if first.Missed != extra+1 || first.Term != extra+1 {
		t.Fatalf("first event after overflow: term %d, missed %d; want term %d, missed %d", first.Term, first.Missed, extra+1, extra+1)
	}
	n := 1
	h.close()
	for ev := range out {
		n++
		if ev.Missed != 0 {
			t.Fatalf("missed %d on a later event", ev.Missed)
		}
	}
	if n != eventBuffer {
		t.Fatalf("read %d events after close, want the %d queued", n, eventBuffer)
	}
}
