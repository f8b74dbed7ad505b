package election_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/election"
	tc "github.com/raftelect/raftelect/internal/testcluster"
)

// record is a thread-safe list of lines.
type record struct {
	mu    sync.Mutex
	lines []string
}

func (r *record) add(format string, args ...any) {
	r.mu.Lock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *record) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// eventLine and the callback lines below describe the same change the same
// way, so the two sequences can be compared.
func eventLine(ev election.Event) string {
	switch ev.Kind {
	case election.EventStartedLeading:
		return fmt.Sprintf("started %d", ev.Lease.Token)
	case election.EventStoppedLeading:
		return fmt.Sprintf("stopped %d", ev.Lease.Token)
	default:
		return fmt.Sprintf("leader %q %d", ev.Leader, ev.Term)
	}
}

// TestEvents_SameChangesInSameOrderAsCallbacks: every node's event stream,
// opened before Run, reports exactly the changes its Callbacks are told of,
// in the same order, through an election and a graceful hand-over; and it
// closes once the node has stopped.
func TestEvents_SameChangesInSameOrderAsCallbacks(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 3)
	t.Cleanup(c.DumpEvents)
	cbs := make([]*record, 3)
	evs := make([]*record, 3)
	closed := make([]chan struct{}, 3)
	for i := range c.Nodes {
		cb, ev := &record{}, &record{}
		cbs[i], evs[i], closed[i] = cb, ev, make(chan struct{})
		cfg := c.Config(i)
		cfg.Callbacks = election.Callbacks{
			OnStartedLeading: func(_ context.Context, l election.Lease) { cb.add("started %d", l.Token) },
			OnStoppedLeading: func(l election.Lease) { cb.add("stopped %d", l.Token) },
			OnNewLeader:      func(leader string, term uint64) { cb.add("leader %q %d", leader, term) },
		}
		c.SetConfig(i, cfg)
		done := closed[i]
		c.StartNode(i, func(e *election.Elector) {
			ch := e.Events(context.Background())
			go func() {
				defer close(done)
				first := true
				for x := range ch {
					if first {
						// Nothing has happened before Run.
						if x.Kind != election.EventCurrent || x.Leader != "" || x.Lease != nil {
							ev.add("bad first event %+v", x)
						}
						first = false
						continue
					}
					if x.Node != e.Name() || x.Missed != 0 {
						ev.add("bad event %+v", x)
					}
					ev.add("%s", eventLine(x))
				}
			}()
		})
	}
	l := c.WaitLeader(10 * time.Second)
	c.StopNode(l) // a graceful stop: the lease ends, leadership moves
	c.WaitLeader(10 * time.Second)
	c.StopAll()
	for i := range c.Nodes {
		select {
		case <-closed[i]:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the event stream did not close after Run returned", c.Nodes[i].Name)
		}
		require.NotEmpty(t, cbs[i].get(), c.Nodes[i].Name)
		require.Equal(t, cbs[i].get(), evs[i].get(), "%s: events vs callbacks", c.Nodes[i].Name)
	}
	// The stopped leader's stream shows its lease begin and end.
	var started, stopped int
	for _, line := range evs[l].get() {
		var tok uint64
		if n, _ := fmt.Sscanf(line, "started %d", &tok); n == 1 {
			started++
		}
		if n, _ := fmt.Sscanf(line, "stopped %d", &tok); n == 1 {
			stopped++
		}
	}
	require.Equal(t, 1, started, "old leader %s: %v", c.Nodes[l].Name, evs[l].get())
	require.Equal(t, 1, stopped, "old leader %s: %v", c.Nodes[l].Name, evs[l].get())
	c.Check()
}

// TestEvents_ReaderThatStopsReadingNeverStallsTheNode: a stream nobody
// reads does not hold up elections or a stop, and its reader's ctx ends it.
func TestEvents_ReaderThatStopsReadingNeverStallsTheNode(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 3)
	t.Cleanup(c.DumpEvents)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams := make([]<-chan election.Event, 3)
	for i := range c.Nodes {
		c.StartNode(i, func(e *election.Elector) { streams[i] = e.Events(ctx) })
	}
	l := c.WaitLeader(10 * time.Second)
	c.StopNode(l)
	c.WaitLeader(10 * time.Second)
	cancel()
	for i, ch := range streams {
		// After cancel, the stream drains at most its queue, then closes.
		n := 0
		for range ch {
			n++
			require.Less(t, n, 2000, "%s: stream did not close after its ctx ended", c.Nodes[i].Name)
		}
	}
	c.StopAll()
	c.Check()
}

// TestEvents_CurrentStateFirst: a stream opened while a node leads starts
// with that leadership, lease included.
func TestEvents_CurrentStateFirst(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leader := c.Nodes[l].Elector
	first := <-leader.Events(ctx)
	require.Equal(t, election.EventCurrent, first.Kind)
	require.Equal(t, c.Nodes[l].Name, first.Leader)
	require.Equal(t, leader.Leader().Term, first.Term)
	require.NotNil(t, first.Lease, "the leader's current event carries its lease")
	require.Equal(t, first.Term, first.Lease.Token)
	f := (l + 1) % 3
	first = <-c.Nodes[f].Elector.Events(ctx)
	require.Equal(t, c.Nodes[l].Name, first.Leader)
	require.Nil(t, first.Lease, "a follower holds no lease")
	cancel()
	c.StopAll()
}
