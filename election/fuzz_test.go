package election

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

// fuzzLoop builds a raft loop for n1 of a three-node cluster without
// starting it: no network, no goroutines. state picks where raft stands
// when the fuzzed input arrives.
func fuzzLoop(t testing.TB, state byte) *raftLoop {
	cfg := Config{
		Name:              "n1",
		Peers:             []PeerConfig{{Name: "n1", Address: "127.0.0.1:1"}, {Name: "n2", Address: "127.0.0.1:2"}, {Name: "n3", Address: "127.0.0.1:3"}},
		Insecure:          true,
		HeartbeatInterval: DefaultHeartbeatInterval,
		ElectionTimeout:   DefaultElectionTimeout,
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := newRaftLoop(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.node.LiftVoteGuard() // no guard: reach raft
	drain(t, l)
	n2 := NodeID("n2")
	switch state % 3 {
	case 1: // leader of term 2 with a committed entry
		if err := l.raft().Campaign(); err != nil {
			t.Fatal(err)
		}
		drain(t, l)
		mustStep(t, l, inboundBatch{stepped: make(chan struct{}), from: n2, msgs: []*raftpb.Message{{Type: raftpb.MsgPreVoteResp.Enum(), From: &n2, To: &e.self, Term: proto.Uint64(2)}}})
		drain(t, l)
		mustStep(t, l, inboundBatch{stepped: make(chan struct{}), from: n2, msgs: []*raftpb.Message{{Type: raftpb.MsgVoteResp.Enum(), From: &n2, To: &e.self, Term: proto.Uint64(2)}}})
		drain(t, l)
		if l.raft().BasicStatus().RaftState != raft.StateLeader {
			t.Fatalf("fuzz setup: n1 did not become leader: %+v", l.raft().BasicStatus())
		}
	case 2: // follower of n2 in term 5, log appended
		mustStep(t, l, inboundBatch{stepped: make(chan struct{}), from: n2, msgs: []*raftpb.Message{{
			Type: raftpb.MsgApp.Enum(), From: &n2, To: &e.self, Term: proto.Uint64(5),
			Index: proto.Uint64(3), LogTerm: proto.Uint64(1), Commit: proto.Uint64(4),
			Entries: []*raftpb.Entry{{Term: proto.Uint64(5), Index: proto.Uint64(4)}},
		}}})
		drain(t, l)
		if st := l.raft().BasicStatus(); st.Lead != n2 || st.Commit == nil || *st.Commit != 4 {
			t.Fatalf("fuzz setup: n1 does not follow n2 with commit 4: %+v", st)
		}
	}
	return l
}

// mustStep steps b as the loop would and fails the test on a store error.
func mustStep(t testing.TB, l *raftLoop, b inboundBatch) {
	t.Helper()
	if err := l.step(b); err != nil {
		t.Fatal(err)
	}
}

// drain processes every pending Ready as the loop would.
func drain(t testing.TB, l *raftLoop) {
	for range 10 {
		if err := l.advance(); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzInbound feeds arbitrary SendRequests, as a peer could send them,
// through the whole inbound path: the transport's checks, the raft-state
// checks and raft itself, then the Ready that follows. No input may panic
// the node. Run: go test -run '^$' -fuzz FuzzInbound ./election/
func FuzzInbound(f *testing.F) {
	for _, seed := range inboundSeeds() {
		b, err := proto.Marshal(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(0), b)
		f.Add(byte(1), b)
		f.Add(byte(2), b)
	}
	f.Fuzz(func(t *testing.T, state byte, data []byte) {
		var req pb.SendRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		l := fuzzLoop(t, state)
		defer l.store.Close()
		peers := map[uint64]string{NodeID("n2"): "n2", NodeID("n3"): "n3"}
		var ok []*raftpb.Message
		for _, m := range req.GetMessages() {
			// The caller is whoever the message claims: the certificate
			// check is the gRPC layer's, tested elsewhere.
			if transport.ValidateInbound(m, m.GetFrom(), l.e.self, peers) == nil {
				ok = append(ok, m)
			}
		}
		if len(ok) == 0 {
			return
		}
		mustStep(t, l, inboundBatch{stepped: make(chan struct{}), from: ok[0].GetFrom(), msgs: ok})
		drain(t, l)
	})
}

// inboundSeeds are messages that crash or subvert an unguarded raft node,
// and a few legitimate ones.
func inboundSeeds() []*pb.SendRequest {
	n1, n2 := NodeID("n1"), NodeID("n2")
	msg := func(t raftpb.MessageType, term uint64, mod func(*raftpb.Message)) *pb.SendRequest {
		m := &raftpb.Message{Type: t.Enum(), From: &n2, To: &n1, Term: &term}
		if mod != nil {
			mod(m)
		}
		return &pb.SendRequest{Messages: []*raftpb.Message{m}}
	}
	return []*pb.SendRequest{
		msg(raftpb.MsgHeartbeat, 5, func(m *raftpb.Message) { m.Commit = proto.Uint64(1 << 40) }),
		msg(raftpb.MsgHeartbeat, 5, nil),
		msg(raftpb.MsgApp, 5, func(m *raftpb.Message) {
			m.Index, m.LogTerm = proto.Uint64(0), proto.Uint64(0)
			m.Entries = []*raftpb.Entry{{Term: proto.Uint64(5), Index: proto.Uint64(1)}}
		}),
		msg(raftpb.MsgApp, 5, func(m *raftpb.Message) {
			m.Index, m.LogTerm, m.Commit = proto.Uint64(3), proto.Uint64(1), proto.Uint64(9)
			m.Entries = []*raftpb.Entry{{Term: proto.Uint64(5), Index: proto.Uint64(4)}, {Term: proto.Uint64(5), Index: proto.Uint64(5)}}
		}),
		msg(raftpb.MsgAppResp, 2, func(m *raftpb.Message) { m.Index = proto.Uint64(1 << 40) }),
		msg(raftpb.MsgAppResp, 2, func(m *raftpb.Message) {
			m.Reject, m.RejectHint, m.Index = proto.Bool(true), proto.Uint64(1<<40), proto.Uint64(3)
		}),
		msg(raftpb.MsgTimeoutNow, 5, nil),
		msg(raftpb.MsgVote, 9, func(m *raftpb.Message) {
			m.Context = []byte("CampaignTransfer")
			m.Index, m.LogTerm = proto.Uint64(100), proto.Uint64(9)
		}),
		msg(raftpb.MsgPreVote, 9, func(m *raftpb.Message) { m.Index, m.LogTerm = proto.Uint64(100), proto.Uint64(9) }),
		msg(raftpb.MsgSnap, 6, func(m *raftpb.Message) {
			m.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
				Index: proto.Uint64(50), Term: proto.Uint64(6),
				ConfState: &raftpb.ConfState{Voters: []uint64{n1, n2, NodeID("n3")}},
			}}
		}),
		msg(raftpb.MsgHeartbeatResp, 2, nil),
		msg(raftpb.MsgVoteResp, 2, nil),
		msg(raftpb.MsgProp, 2, func(m *raftpb.Message) { m.Entries = []*raftpb.Entry{{Data: []byte("x")}} }),
	}
}

// TestInboundSeedsDoNotPanic runs the seeds in every state in a plain test
// run, so CI covers them without -fuzz.
func TestInboundSeedsDoNotPanic(t *testing.T) {
	for state := range byte(3) {
		for _, seed := range inboundSeeds() {
			l := fuzzLoop(t, state)
			var ok []*raftpb.Message
			for _, m := range seed.GetMessages() {
				if transport.ValidateInbound(m, m.GetFrom(), l.e.self, map[uint64]string{NodeID("n2"): "n2", NodeID("n3"): "n3"}) == nil {
					ok = append(ok, m)
				}
			}
			if len(ok) > 0 {
				mustStep(t, l, inboundBatch{stepped: make(chan struct{}), from: ok[0].GetFrom(), msgs: ok})
				drain(t, l)
			}
			l.store.Close()
		}
	}
}

// TestUnguardedRaftPanicsOnSeeds shows what the guards are for, and that
// the fuzz target would notice their absence: without the state checks, a
// single crafted heartbeat panics raft.
func TestUnguardedRaftPanicsOnSeeds(t *testing.T) {
	l := fuzzLoop(t, 2)
	defer l.store.Close()
	hb := inboundSeeds()[0].GetMessages()[0] // heartbeat, commit 1<<40
	panicked := func() (p bool) {
		defer func() { p = recover() != nil }()
		_ = l.raft().Step(proto.Clone(hb).(*raftpb.Message))
		return false
	}()
	if !panicked {
		t.Fatal("raft took a heartbeat with a commit beyond its log without panicking: the seed no longer tests the guard")
	}
	l2 := fuzzLoop(t, 2)
	defer l2.store.Close()
	mustStep(t, l2, inboundBatch{stepped: make(chan struct{}), from: hb.GetFrom(), msgs: []*raftpb.Message{proto.Clone(hb).(*raftpb.Message)}})
	drain(t, l2)
}

// TestWriteFuzzCorpus writes the seeds as files of the committed corpus
// (testdata/fuzz/FuzzInbound) when RAFTELECT_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("RAFTELECT_WRITE_CORPUS") != "1" {
		t.Skip("set RAFTELECT_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzInbound from the seeds")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzInbound")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, seed := range inboundSeeds() {
		b, err := proto.Marshal(seed)
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\nbyte(%q)\n[]byte(%q)\n", byte(i%3), b)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
