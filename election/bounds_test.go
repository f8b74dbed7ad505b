package election

import (
	"math"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/internal/core"
	"github.com/raftelect/raftelect/transport"
)

// deliver runs msgs, as one batch from their sender, through the whole
// inbound path without a network: the transport's checks, then the raft
// loop's step, then every Ready that follows. It returns the transport's
// rejections.
func deliver(t testing.TB, l *raftLoop, msgs ...*raftpb.Message) []error {
	t.Helper()
	peers := map[uint64]string{NodeID("n2"): "n2", NodeID("n3"): "n3"}
	var ok []*raftpb.Message
	var rejected []error
	for _, m := range msgs {
		if err := transport.ValidateInbound(m, m.GetFrom(), l.e.self, peers); err != nil {
			rejected = append(rejected, err)
			continue
		}
		ok = append(ok, m)
	}
	if len(ok) > 0 {
		if err := l.step(inboundBatch{stepped: make(chan struct{}), from: ok[0].GetFrom(), msgs: ok}); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, l)
	return rejected
}

// remoteMessage makes a well-formed message of type typ from n2 to n1 in
// term: what a correct peer could send, but for the term.
func remoteMessage(typ raftpb.MessageType, term uint64) *raftpb.Message {
	n1, n2, n3 := NodeID("n1"), NodeID("n2"), NodeID("n3")
	m := &raftpb.Message{Type: typ.Enum(), From: &n2, To: &n1, Term: &term}
	switch typ {
	case raftpb.MsgApp:
		m.Index, m.LogTerm = proto.Uint64(3), proto.Uint64(1)
		m.Entries = []*raftpb.Entry{{Index: proto.Uint64(4), Term: proto.Uint64(term)}}
	case raftpb.MsgSnap:
		m.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
			Index: proto.Uint64(4), Term: proto.Uint64(term),
			ConfState: &raftpb.ConfState{Voters: []uint64{n1, n2, n3}},
		}}
	case raftpb.MsgVote, raftpb.MsgPreVote:
		m.Index, m.LogTerm = proto.Uint64(4), proto.Uint64(term-1)
	}
	return m
}

var remoteTypes = []raftpb.MessageType{
	raftpb.MsgApp, raftpb.MsgAppResp, raftpb.MsgVote, raftpb.MsgVoteResp, raftpb.MsgSnap,
	raftpb.MsgHeartbeat, raftpb.MsgHeartbeatResp, raftpb.MsgTimeoutNow, raftpb.MsgPreVote, raftpb.MsgPreVoteResp,
}

// persisted returns the term and last index in l's store.
func persisted(t testing.TB, l *raftLoop) (term, last uint64) {
	t.Helper()
	hs, _, err := l.store.InitialState()
	if err != nil {
		t.Fatal(err)
	}
	last, err = l.store.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return hs.GetTerm(), last
}

// No message of any type the network may carry moves a node to a term near
// 2^64, or further than the term budget allows: it is neither stepped nor
// persisted, in any role. (Before the bounds, a heartbeat in term 2^64-1
// was stepped and persisted, and the node crashed at its next campaign and
// at every restart.)
func TestExtremeTerm_InAnyMessageType_IsNeitherSteppedNorPersisted(t *testing.T) {
	for state := range byte(3) {
		for _, typ := range remoteTypes {
			probe := fuzzLoop(t, state)
			ours := probe.raft().BasicStatus().GetTerm()
			probe.store.Close()
			for _, term := range []uint64{math.MaxUint64, 1 << 63, transport.MaxTerm + 1, ours + termBurst + 1<<30} {
				l := fuzzLoop(t, state)
				st := l.raft().BasicStatus()
				pTerm, pLast := persisted(t, l)
				deliver(t, l, remoteMessage(typ, term))
				after := l.raft().BasicStatus()
				aTerm, aLast := persisted(t, l)
				if after.GetTerm() != st.GetTerm() || after.Lead != st.Lead || after.RaftState != st.RaftState {
					t.Errorf("state %d: %v in term %d moved raft from term %d (%v, lead %x) to term %d (%v, lead %x)",
						state, typ, term, st.GetTerm(), st.RaftState, st.Lead, after.GetTerm(), after.RaftState, after.Lead)
				}
				if aTerm != pTerm || aLast != pLast {
					t.Errorf("state %d: %v in term %d changed the store from term %d, last index %d to term %d, last index %d", state, typ, term, pTerm, pLast, aTerm, aLast)
				}
				l.store.Close()
			}
		}
	}
}

// A correct peer moves us by any term the budget allows, even by a whole
// burst at once (a node that starts without state, joining a cluster of
// long standing), and the budget grows with uptime.
func TestTermBudget_CorrectJumpsPassAndTheBudgetGrows(t *testing.T) {
	l := fuzzLoop(t, 2) // follower of n2 in term 5
	defer l.store.Close()
	// Setting up spent 4 terms (1 to 5): the rest of the burst, at once.
	high := 5 + l.node.TermBudget(time.Now())
	if high < termBurst {
		t.Fatalf("setup spent more than it moved: budget %d", high-5)
	}
	deliver(t, l, remoteMessage(raftpb.MsgHeartbeat, high))
	if got := l.raft().BasicStatus().GetTerm(); got != high {
		t.Fatalf("a jump of the whole remaining budget was not taken: term %d, want %d", got, high)
	}
	deliver(t, l, remoteMessage(raftpb.MsgHeartbeat, high+termRefill))
	if got := l.raft().BasicStatus().GetTerm(); got != high {
		t.Fatalf("a jump beyond the spent budget was taken: term %d", got)
	}
	// The budget grows with uptime: a second later, termRefill terms more.
	l.node.AgeTermBudget(time.Second + time.Millisecond)
	deliver(t, l, remoteMessage(raftpb.MsgHeartbeat, high+termRefill))
	if got := l.raft().BasicStatus().GetTerm(); got != high+termRefill {
		t.Fatalf("the grown budget was not available: term %d", got)
	}
}

// A snapshot at an index near 2^64, or beyond what a log can hold by the
// snapshot's term, is neither stepped nor persisted. (Before, raft restored
// it and the node crashed on the index after it.)
func TestExtremeSnapshotIndex_IsNeitherSteppedNorPersisted(t *testing.T) {
	for state := range byte(3) {
		for _, index := range []uint64{math.MaxUint64, math.MaxUint64 - 1, 1 << 63, transport.MaxIndexAt(6, 3) + 1} {
			l := fuzzLoop(t, state)
			pTerm, pLast := persisted(t, l)
			st := l.raft().BasicStatus()
			m := remoteMessage(raftpb.MsgSnap, 6)
			m.Snapshot.Metadata.Index = proto.Uint64(index)
			rejected := deliver(t, l, m)
			aTerm, aLast := persisted(t, l)
			if len(rejected) != 1 {
				t.Errorf("state %d: snapshot at index %d was not rejected", state, index)
			}
			if aTerm != pTerm || aLast != pLast || l.raft().BasicStatus().GetCommit() != st.GetCommit() {
				t.Errorf("state %d: snapshot at index %d changed the node: store term %d->%d, last %d->%d", state, index, pTerm, aTerm, pLast, aLast)
			}
			l.store.Close()
		}
	}
}

// Each message of a batch is checked against raft's log as the earlier
// messages of the batch left it. Here an append from a new leader replaces
// an uncommitted suffix (raft's log gets shorter), and the heartbeat after
// it, in the same batch, carries a commit that fitted the log before the
// append but not after: checked against the store as it was when the batch
// arrived, it passed and raft panicked.
func TestBatch_LaterChecksSeeTheLogEarlierMessagesShortened(t *testing.T) {
	l := fuzzLoop(t, 2) // follower of n2 in term 5: log 1..4, commit 4
	defer l.store.Close()
	n1, n2, n3 := NodeID("n1"), NodeID("n2"), NodeID("n3")
	ents := func(term uint64, from, to uint64) []*raftpb.Entry {
		var out []*raftpb.Entry
		for i := from; i <= to; i++ {
			out = append(out, &raftpb.Entry{Index: proto.Uint64(i), Term: proto.Uint64(term)})
		}
		return out
	}
	// n2 appends 5 and 6 in term 5, not committed.
	deliver(t, l, &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: &n2, To: &n1, Term: proto.Uint64(5),
		Index: proto.Uint64(4), LogTerm: proto.Uint64(5), Commit: proto.Uint64(4), Entries: ents(5, 5, 6)})
	if _, last := persisted(t, l); last != 6 {
		t.Fatalf("setup: last index %d, want 6", last)
	}
	// n3, leader of term 6, replaces 5 and 6 with its own 5, then claims a
	// commit of 6.
	app := &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: &n3, To: &n1, Term: proto.Uint64(6),
		Index: proto.Uint64(4), LogTerm: proto.Uint64(5), Commit: proto.Uint64(4), Entries: ents(6, 5, 5)}
	hb := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: &n3, To: &n1, Term: proto.Uint64(6), Commit: proto.Uint64(6)}
	if rejected := deliver(t, l, app, hb); len(rejected) > 0 {
		t.Fatalf("the transport rejected the batch: %v", rejected)
	}
	st := l.raft().BasicStatus()
	if _, last := persisted(t, l); last != 5 || st.GetCommit() > last || st.Lead != n3 {
		t.Fatalf("after the batch: last index %d, commit %d, leader %x; want 5, at most 5, n3", last, st.GetCommit(), st.Lead)
	}
}

// A follower takes MsgTimeoutNow only from the leader it followed before
// the batch, in that leader's term. A heartbeat in a higher term placed
// before MsgTimeoutNow in the same batch makes its sender our leader for a
// moment; compared after the heartbeat, the forced election passed.
func TestTimeoutNow_OnlyFromTheLeaderFollowedBeforeTheBatch(t *testing.T) {
	l := fuzzLoop(t, 2) // follower of n2 in term 5
	defer l.store.Close()
	n1, n3 := NodeID("n1"), NodeID("n3")
	hb := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: &n3, To: &n1, Term: proto.Uint64(6), Commit: proto.Uint64(4)}
	tn := &raftpb.Message{Type: raftpb.MsgTimeoutNow.Enum(), From: &n3, To: &n1, Term: proto.Uint64(6)}
	deliver(t, l, hb, tn)
	if st := l.raft().BasicStatus(); st.RaftState != raft.StateFollower || st.GetTerm() != 6 {
		t.Fatalf("a MsgTimeoutNow from a leader of one heartbeat forced an election: %v in term %d", st.RaftState, st.GetTerm())
	}
	// The leader we follow may still hand over: n3 now, in term 6.
	deliver(t, l, &raftpb.Message{Type: raftpb.MsgTimeoutNow.Enum(), From: &n3, To: &n1, Term: proto.Uint64(6)})
	if st := l.raft().BasicStatus(); st.RaftState != raft.StateCandidate || st.GetTerm() != 7 {
		t.Fatalf("the leader we followed could not hand over: %v in term %d", st.RaftState, st.GetTerm())
	}
}

// A Send response's acknowledgement carries a term the peer wrote; it is
// stepped (as the peer's MsgHeartbeatResp) only in our own term, so an
// extreme one can neither depose the leader nor be persisted.
func TestAckTerm_OnlyOurOwnIsStepped(t *testing.T) {
	l := fuzzLoop(t, 1) // leader of term 2
	defer l.store.Close()
	for _, term := range []uint64{math.MaxUint64, 3} {
		ack := core.Ack{Term: term, Leader: NodeID("n1"), Promise: 900 * time.Millisecond}
		if err := l.node.Acked(time.Now(), NodeID("n2"), ack, time.Now()); err != nil {
			t.Fatal(err)
		}
		drain(t, l)
		if st := l.raft().BasicStatus(); st.RaftState != raft.StateLeader || st.GetTerm() != 2 {
			t.Fatalf("an acknowledgement in term %d moved the leader to %v in term %d", term, st.RaftState, st.GetTerm())
		}
		if pTerm, _ := persisted(t, l); pTerm != 2 {
			t.Fatalf("an acknowledgement in term %d persisted term %d", term, pTerm)
		}
	}
}

// A leader's appends fit the receiver's cap on entries per append, however
// far behind the follower is: raft fills an append up to MaxSizePerMsg
// bytes, which is set to the cap times the smallest entry.
func TestLeaderAppends_FitTheEntryCap(t *testing.T) {
	l := fuzzLoop(t, 1) // leader of term 2
	defer l.store.Close()
	for range 3 * transport.MaxEntriesPerAppend {
		if err := l.raft().Propose(nil); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, l)
	n1, n2 := NodeID("n1"), NodeID("n2")
	last, _ := l.store.LastIndex()
	// n2 says its log ends at 3 (bootstrap): the leader must send all the
	// rest, and sends at most the cap.
	rd := l.raft().Ready()
	for pr := l.raft().Status().Progress[n2]; pr.Match == 0; pr = l.raft().Status().Progress[n2] {
		if err := l.raft().Step(&raftpb.Message{Type: raftpb.MsgAppResp.Enum(), From: &n2, To: &n1, Term: proto.Uint64(2),
			Index: proto.Uint64(pr.Next - 1), Reject: proto.Bool(true), RejectHint: proto.Uint64(3), LogTerm: proto.Uint64(1)}); err != nil {
			t.Fatal(err)
		}
		if pr.Next-1 == 3 {
			break
		}
	}
	if last < 3+transport.MaxEntriesPerAppend {
		t.Fatalf("setup: last index %d", last)
	}
	l.raft().Advance(rd)
	rd = l.raft().Ready()
	var apps int
	for _, m := range rd.Messages {
		if m.GetType() == raftpb.MsgApp && m.GetTo() == n2 {
			apps++
			if n := len(m.GetEntries()); n > transport.MaxEntriesPerAppend || n == 0 {
				t.Errorf("append to n2 carries %d entries, the cap is %d", n, transport.MaxEntriesPerAppend)
			}
		}
	}
	if apps == 0 {
		t.Fatal("the leader sent no append to the follower that is behind")
	}
	l.raft().Advance(rd)
}

// The smallest entry raft makes is MinEntryBytes long: the entry cap rests
// on it.
func TestMinEntryBytes_IsTheSmallestEntry(t *testing.T) {
	e := &raftpb.Entry{Term: proto.Uint64(1), Index: proto.Uint64(1)}
	if got := proto.Size(e); got < transport.MinEntryBytes {
		t.Fatalf("an entry of term 1 at index 1 takes %d bytes, less than MinEntryBytes %d", got, transport.MinEntryBytes)
	}
}
