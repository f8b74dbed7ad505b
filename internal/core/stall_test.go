package core

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// A MsgTimeoutNow read just after this node's inputs stopped for longer
// than its timers allow (a stopped process) may have waited past the
// leader's transfer fence, so it is refused; read on time, the same message
// makes the node campaign. The seed that showed the overlap:
// go test ./internal/sim -run TestReplay -sim.seed=234873 -v.
func TestStall_TimeoutNowReadAfterAStallIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		gap      time.Duration
		campaign bool
	}{
		{"on time", 300 * time.Millisecond, true},
		{"after a 3s stall", 3 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, t0 := followingN1(t)
			var refused error
			now := t0.Add(tc.gap)
			tn := testMsg(raftpb.MessageType_MsgTimeoutNow, "n1", "n2", 2)
			if _, err := n.Step(now, NodeID("n1"), []*raftpb.Message{tn}, Stamp{At: 2, Incarnation: 1}, func(_ *raftpb.Message, err error) { refused = err }); err != nil {
				t.Fatal(err)
			}
			campaigned := n.rn.BasicStatus().RaftState == raft.StateCandidate
			if campaigned != tc.campaign {
				t.Fatalf("after a gap of %v: campaigned %v, want %v (refused: %v)", tc.gap, campaigned, tc.campaign, refused)
			}
			if !tc.campaign && refused == nil {
				t.Fatal("the MsgTimeoutNow was not reported as refused")
			}
			// A heartbeat later the stall is over: the leader's next
			// transfer is honoured.
			if !tc.campaign {
				later := now.Add(150 * time.Millisecond)
				if _, err := n.Step(later, NodeID("n1"), []*raftpb.Message{tn}, Stamp{At: 3, Incarnation: 1}, nil); err != nil {
					t.Fatal(err)
				}
				if n.rn.BasicStatus().RaftState != raft.StateCandidate {
					t.Fatal("a MsgTimeoutNow a heartbeat after the stall was refused too")
				}
			}
		})
	}
}

// A transferee's forced vote request bypasses a voter's promise; read just
// after the voter stalled it is refused, read on time it is granted.
func TestStall_ForcedVoteReadAfterAStallIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		gap   time.Duration
		grant bool
	}{
		{"on time", 300 * time.Millisecond, true},
		{"after a 3s stall", 3 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, t0 := followingN1(t)
			vote := testMsg(raftpb.MessageType_MsgVote, "n3", "n2", 3)
			vote.Context = []byte(forcedCampaign)
			if _, err := n.Step(t0.Add(tc.gap), NodeID("n3"), []*raftpb.Message{vote}, Stamp{}, nil); err != nil {
				t.Fatal(err)
			}
			if got := voteGranted(n.TakeOutput(), "n3"); got != tc.grant {
				t.Fatalf("after a gap of %v: forced vote granted %v, want %v", tc.gap, got, tc.grant)
			}
		})
	}
}

// followingN1 is n2 of n1-n3, a follower of n1 in term 2 since t0 (it
// stepped n1's heartbeat then), with nothing left in its output.
func followingN1(t *testing.T) (*Node, time.Time) {
	t.Helper()
	n := newNeverRanNode(t, "n2", "n1", "n3")
	t0 := time.Now()
	hb := testMsg(raftpb.MessageType_MsgHeartbeat, "n1", "n2", 2)
	if _, err := n.Step(t0, NodeID("n1"), []*raftpb.Message{hb}, Stamp{At: 1, Incarnation: 1}, nil); err != nil {
		t.Fatal(err)
	}
	n.TakeOutput()
	return n, t0
}
