package core

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/storage"
)

// newNeverRanNode starts names[0] on a store marked as never ran: no vote
// guard, so what holds its votes back is its promise alone.
func newNeverRanNode(t *testing.T, names ...string) *Node {
	t.Helper()
	store := storage.NewMemory()
	if err := storage.MarkNeverRan(store, names[0]); err != nil {
		t.Fatal(err)
	}
	return newTestNodeOn(t, store, names...)
}

func testMsg(typ raftpb.MessageType, from, to string, term uint64) *raftpb.Message {
	return &raftpb.Message{Type: typ.Enum(), From: proto.Uint64(NodeID(from)), To: proto.Uint64(NodeID(to)),
		Term: proto.Uint64(term), LogTerm: proto.Uint64(term), Index: proto.Uint64(1000)}
}

// voteGranted reports whether out holds n2's vote (or pre-vote) for from.
func voteGranted(out Output, to string) bool {
	for _, m := range out.Messages {
		t := m.GetType()
		if (t == raftpb.MessageType_MsgVoteResp || t == raftpb.MessageType_MsgPreVoteResp) && m.GetTo() == NodeID(to) && !m.GetReject() {
			return true
		}
	}
	return false
}

// A follower's tick rides on its leader's heartbeat, and only on that: a
// tick on any other message would run raft's election clock faster than
// the heartbeat and shorten the promise the acknowledgement states. The
// ticks after it are deferred, due a heartbeat and a random fraction d of
// one later and then every heartbeat, and counted at the next input as if
// they had come then; the driver's next tick is the one at which raft's
// count reaches the election timeout.
func TestTick_RidesOnTheLeadersHeartbeatOnly(t *testing.T) {
	n := newTestNode(t, "n2", "n1", "n3")
	t0 := time.Now()
	if _, err := n.Step(t0, NodeID("n1"), []*raftpb.Message{testMsg(raftpb.MessageType_MsgHeartbeat, "n1", "n2", 2)}, Stamp{At: 1, Incarnation: 1}, nil); err != nil {
		t.Fatal(err)
	}
	ticks, next := n.Ticks(), n.NextTick()
	d := next.Sub(t0) - 900*time.Millisecond
	if ticks != 1 || d < 0 || d >= 100*time.Millisecond {
		t.Fatalf("after the leader's heartbeat: %d ticks, the driver's next at %v; want 1, at 900ms (9 heartbeats) plus less than one", ticks, next.Sub(t0))
	}
	others := []struct {
		what string
		from string
		msg  *raftpb.Message
	}{
		{"a pre-vote request", "n3", testMsg(raftpb.MessageType_MsgPreVote, "n3", "n2", 3)},
		{"a vote request", "n3", testMsg(raftpb.MessageType_MsgVote, "n3", "n2", 3)},
		{"a heartbeat of an older term", "n1", testMsg(raftpb.MessageType_MsgHeartbeat, "n1", "n2", 1)},
		{"a heartbeat from a peer that does not lead", "n3", testMsg(raftpb.MessageType_MsgHeartbeat, "n3", "n2", 1)},
	}
	for i, o := range others {
		now := t0.Add(time.Duration(i+1) * time.Millisecond)
		if _, err := n.Step(now, NodeID(o.from), []*raftpb.Message{o.msg}, Stamp{At: 1, Incarnation: 1}, nil); err != nil {
			t.Fatal(err)
		}
		if n.Ticks() != ticks || !n.NextTick().Equal(next) {
			t.Fatalf("%s ticked: %d ticks (want %d), next at %v (want %v)", o.what, n.Ticks(), ticks, n.NextTick().Sub(t0), next.Sub(t0))
		}
	}
	// An input at 350ms counts the ticks deferred to 100+d, 200+d and
	// 300+d ms that have fallen due.
	at := 350 * time.Millisecond
	if err := n.Wake(t0.Add(at)); err != nil {
		t.Fatal(err)
	}
	want := uint64(1)
	for k := time.Duration(1); k*100*time.Millisecond+d <= at; k++ {
		want++
	}
	if n.Ticks() != want {
		t.Fatalf("%d ticks after an input at 350ms, want %d (at 0, then every 100ms from %v)", n.Ticks(), want, 100*time.Millisecond+d)
	}
	// The driver's tick at 900ms + d counts the rest and its own: the
	// election timeout's 10 ticks.
	if err := n.Tick(next); err != nil {
		t.Fatal(err)
	}
	if n.Ticks() != 10 || !n.NextTick().Equal(next.Add(100*time.Millisecond)) {
		t.Fatalf("after the driver's tick: %d ticks (want 10), next at %v (want a heartbeat later)", n.Ticks(), n.NextTick().Sub(next))
	}
}

// The promise an acknowledgement states (election timeout less a tick,
// 900ms) holds when the follower ticks as the driver does: on its leader's
// heartbeat, then whenever NextTick falls due. Until then no vote or
// pre-vote is granted; afterwards one is, so the requests are valid ones.
func TestTick_PromiseHoldsWithTicksOnHeartbeats(t *testing.T) {
	n := newNeverRanNode(t, "n2", "n1", "n3")
	t0 := time.Now()
	ack, err := n.Step(t0, NodeID("n1"), []*raftpb.Message{testMsg(raftpb.MessageType_MsgHeartbeat, "n1", "n2", 2)}, Stamp{At: 1, Incarnation: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	promise := ack.Promise
	if promise != 900*time.Millisecond {
		t.Fatalf("promise %v, want 900ms", promise)
	}
	n.TakeOutput()
	term := uint64(3)
	for now := t0.Add(time.Millisecond); now.Before(t0.Add(3 * time.Second)); now = now.Add(time.Millisecond) {
		if due := n.NextTick(); !now.Before(due) {
			if err := n.Tick(now); err != nil {
				t.Fatal(err)
			}
			n.TakeOutput()
		}
		// Every 10ms a candidate asks for a pre-vote and a vote.
		if now.Sub(t0)%(10*time.Millisecond) != 0 {
			continue
		}
		msgs := []*raftpb.Message{testMsg(raftpb.MessageType_MsgPreVote, "n3", "n2", term), testMsg(raftpb.MessageType_MsgVote, "n3", "n2", term)}
		if _, err := n.Step(now, NodeID("n3"), msgs, Stamp{}, nil); err != nil {
			t.Fatal(err)
		}
		granted := voteGranted(n.TakeOutput(), "n3")
		if granted && now.Before(t0.Add(promise)) {
			t.Fatalf("granted a vote %v after the leader's heartbeat, within the %v promised", now.Sub(t0), promise)
		}
		if granted {
			// Granted once raft's election clock has counted its timeout:
			// a tick at once, then one a heartbeat and a fraction later,
			// then every heartbeat (900-1000ms). Much later, and something
			// else held the
			// votes back, so this test would not see a shortened promise.
			if now.After(t0.Add(promise + 200*time.Millisecond)) {
				t.Fatalf("first vote granted only %v after the heartbeat: something besides the promise (%v) holds votes back", now.Sub(t0), promise)
			}
			t.Logf("first vote granted %v after the heartbeat (promise %v)", now.Sub(t0), promise)
			return
		}
	}
	t.Fatal("no vote granted within 3s: the requests cannot show the promise's end")
}
