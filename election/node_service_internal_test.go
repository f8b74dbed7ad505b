package election

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// stalledStream is the server side of a Watch whose reader stops reading:
// its second Send (the first event) blocks until release is closed. A real
// gRPC stream would block the same way once flow control's window is full,
// but how many bytes that takes is gRPC's business; this blocks exactly.
type stalledStream struct {
	grpc.ServerStream // only Context and Send are used
	ctx               context.Context
	stalled, release  chan struct{}

	mu  sync.Mutex
	got []*pb.WatchResponse
}

func (s *stalledStream) Context() context.Context { return s.ctx }

func (s *stalledStream) Send(r *pb.WatchResponse) error {
	s.mu.Lock()
	s.got = append(s.got, r)
	n := len(s.got)
	s.mu.Unlock()
	if n == 2 {
		close(s.stalled)
		<-s.release
	}
	return nil
}

func (s *stalledStream) events() []*pb.WatchResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*pb.WatchResponse
	for _, r := range s.got {
		if r.GetEvent() != nil {
			out = append(out, r)
		}
	}
	return out
}

// TestWatch_StalledReaderLosesOldestEventsAndIsToldHowMany: while a Watch
// reader does not read, the node keeps publishing (publish never blocks)
// and keeps at most eventBuffer events for it; when it reads again it gets
// the newest ones, and the first after the gap says how many it missed.
// Every event is either delivered or counted as missed.
func TestWatch_StalledReaderLosesOldestEventsAndIsToldHowMany(t *testing.T) {
	e := &Elector{cfg: Config{Name: "n1"}, tick: 100 * time.Millisecond, hub: newEventHub("n1")}
	e.view.Store(&nodeView{})
	e.membership.Store(&membershipView{names: map[uint64]string{}, changed: make(chan struct{})})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &stalledStream{ctx: ctx, stalled: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- (&nodeService{e: e}).Watch(&pb.WatchRequest{}, s) }()
	select {
	case <-s.stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("the watch sent no event")
	}
	const published = eventBuffer + 10
	start := time.Now()
	for i := range published {
		e.hub.publish(callbackEvent{leader: &LeaderInfo{Name: "n2", Term: uint64(i + 1)}})
	}
	t.Logf("%d events published to a stalled reader in %v", published, time.Since(start))
	close(s.release)

	// The current event, then what is left of the published ones.
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs := s.events()
		var delivered, missed int
		for _, r := range evs {
			delivered++
			missed += int(r.GetMissed())
		}
		if delivered+missed == 1+published {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %d events delivered, %d counted missed; want %d in all", delivered, missed, 1+published)
		}
		time.Sleep(10 * time.Millisecond) // polling the stub's record
	}
	cancel()
	<-done

	evs := s.events()
	if k := evs[0].GetEvent().GetKind(); k != pb.LeadershipEvent_KIND_CURRENT {
		t.Fatalf("first event %v, want current", k)
	}
	var gaps int
	prev := uint64(0)
	for _, r := range evs[1:] {
		term := r.GetEvent().GetTerm()
		if m := r.GetMissed(); m > 0 {
			gaps++
			if term != prev+m+1 {
				t.Errorf("event of term %d says %d missed after term %d", term, m, prev)
			}
		} else if term != prev+1 {
			t.Errorf("event of term %d follows term %d with nothing said missed", term, prev)
		}
		prev = term
	}
	if gaps != 1 || prev != published || len(evs) > 1+eventBuffer+1 {
		t.Errorf("%d gaps, last term %d, %d events delivered; want one gap, the last term %d, at most %d", gaps, prev, len(evs), published, eventBuffer+2)
	}
}
