package election_test

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/checker"
	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/internal/nodeopts"
	tc "github.com/raftelect/raftelect/internal/testcluster"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

// TestCheckerCatchesDoubleVote_WhenStateLostAndVoteGuardOff shows what the
// vote guard is for, and that the checker would see it fail. One real node,
// n3, runs; its two peers are down, and the test speaks for them over n3's
// real gRPC transport with their own certificates, so every identity check
// passes. The script is the race the guard closes:
//
//  1. n1, a candidate in term 2, asks n3 for its vote; n3 grants it.
//  2. n3 is restarted. On the in-memory store it comes back with no state.
//  3. n2, a candidate in the same term 2 (its request was in flight, or it
//     timed out at the same moment as n1), asks n3 for its vote.
//
// Without the guard and without persistence, n3 grants the second vote: n1
// and n2 could both win term 2. The checker must report vote-changed. With
// the guard (the production setting) or with a durable store, n3 refuses.
func TestCheckerCatchesDoubleVote_WhenStateLostAndVoteGuardOff(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		durable    bool
		guard      bool
		doubleVote bool
	}{
		{name: "memory store, guard off: double vote", durable: false, guard: false, doubleVote: true},
		{name: "memory store, guard on", durable: false, guard: true},
		{name: "bbolt store, guard off", durable: true, guard: false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := scriptDoubleVote(t, tt.durable, tt.guard)
			t.Logf("checker summary:\n%s", r.Summary())
			var changed, other []checker.Violation
			for _, v := range r.Violations {
				switch {
				case v.Kind == checker.VoteChanged && v.Node == "n3":
					changed = append(changed, v)
				case v.Kind == checker.TermRegressed && v.Node == "n3" && !tt.durable:
					// The restart on the memory store lost the term: the
					// fact of the loss, reported whatever the guard does.
				default:
					other = append(other, v)
				}
			}
			if tt.doubleVote && len(changed) == 0 {
				t.Errorf("n3 voted twice in term 2, but the checker reported no %s", checker.VoteChanged)
			}
			if !tt.doubleVote && len(changed) > 0 {
				t.Errorf("n3 must not vote twice in term 2 here: %v", changed)
			}
			if len(other) > 0 {
				t.Errorf("unexpected violations: %v", other)
			}
		})
	}
}

// scriptDoubleVote runs the script on one cluster and returns the checker's
// report over every event.
func scriptDoubleVote(t *testing.T, durable, guard bool) checker.Report {
	c := tc.New(t, 3)
	t.Cleanup(c.DumpEvents)
	c.Durable = durable
	if !guard {
		c.Tweak = election.DisableVoteGuard
	}
	// n1 and n2 stay down: close the listeners New made for them, so n3's
	// messages to them are refused at once.
	for i := range 2 {
		cfg := c.Config(i)
		if err := nodeopts.Of(&cfg).Listener.Close(); err != nil {
			t.Fatal(err)
		}
	}
	const voter = 2
	n3 := c.Nodes[voter]
	c.StartNode(voter, nil)

	// n3 logs its vote as soon as it grants one.
	voted := func(since int64, term uint64, name string) func() bool {
		return func() bool {
			for _, e := range c.EventsSince(since) {
				if e.Node == "n3" && e.Term == term && e.Vote == name {
					return true
				}
			}
			return false
		}
	}
	// A bootstrapped node's log ends at index 3 (one configuration entry
	// per node) in term 1, so these candidates' logs are up to date.
	vote := func(from string, term uint64) *raftpb.Message {
		return &raftpb.Message{
			Type: raftpb.MsgVote.Enum(), From: proto.Uint64(election.NodeID(from)), To: proto.Uint64(election.NodeID("n3")),
			Term: proto.Uint64(term), LogTerm: proto.Uint64(1), Index: proto.Uint64(3),
		}
	}

	// 1. n1 asks until n3 grants: a freshly started n3 refuses every vote
	// for its first 2 x election timeout when the guard is on.
	since := eventlog.Now()
	deadline := time.Now().Add(4 * tc.ElectionTimeout)
	for !voted(since, 2, "n1")() {
		if time.Now().After(deadline) {
			t.Fatalf("n3 did not vote for n1 in term 2 within %v", 4*tc.ElectionTimeout)
		}
		sendAs(t, c, "n1", n3.Addr, vote("n1", 2))
		time.Sleep(tc.Heartbeat)
	}

	// 2. Restart n3. Its peers are down, so it is a follower and stops at
	// once.
	c.StopNode(voter)
	restarted := eventlog.Now()
	c.StartNode(voter, nil)

	// 3. n2's request for term 2 arrives. The heartbeat after it, in the same
	// batch, is only a barrier: n3 steps a batch in order, and the guard
	// lets heartbeats through, so once n3 is in term 2 it has decided on the
	// vote one way or the other. (It does not stay a follower of n2: nothing
	// listens at n2's address, so n3's redial is refused and it forgets n2,
	// as it should forget a leader whose process is gone.)
	hb := &raftpb.Message{
		Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(election.NodeID("n2")), To: proto.Uint64(election.NodeID("n3")),
		Term: proto.Uint64(2),
	}
	sendAs(t, c, "n2", n3.Addr, vote("n2", 2), hb)
	c.WaitFor(2*tc.ElectionTimeout, "n3 to step n2's batch (term 2)", func() bool { return n3.Elector.Leader().Term >= 2 })
	if voted(restarted, 2, "n2")() != !guard && !durable {
		t.Errorf("guard %v, memory store: n3 voted for n2 = %v", guard, !guard)
	}
	c.StopAll()
	return checker.Check(c.Events(), checker.Options{})
}

// sendAs delivers msgs to the node at addr as node `as`, with that node's
// certificate, as its transport would.
func sendAs(t *testing.T, c *tc.Cluster, as, addr string, msgs ...*raftpb.Message) {
	t.Helper()
	var files election.TLSConfig
	for i, n := range c.Nodes {
		if n.Name == as {
			files = c.Config(i).TLS
		}
	}
	creds, err := transport.LoadCredentials(files.CAFile, files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig("n3"))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pb.NewPeerClient(conn).Send(ctx, &pb.SendRequest{Messages: msgs}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("send as %s: %v", as, err)
	}
}
