package election_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/eventlog"
	tc "github.com/raftelect/raftelect/internal/testcluster"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

// A rogue holding a member's certificate sends, to the leader and to the
// other follower, a message of every type the network may carry in an
// extreme term: near 2^64, just above the term bound, and beyond what the
// term budget lets a peer move us (2^32 plus 65,536 a second of uptime:
// the 2^30 over it are four hours). No node crashes, the cluster keeps
// its leader and term, and after a restart every node starts in the term
// it had: nothing was persisted. (Before the bounds, one heartbeat in term
// 2^64-1 killed all three nodes within two seconds, and every restart
// crashed again.)
func TestCraftedExtremeTerms_NoCrashNothingPersistedLeaderKept(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 3)
	c.Durable = true
	t.Cleanup(c.DumpEvents)
	c.Start()
	l := c.WaitLeader(10 * time.Second)
	leader := c.Nodes[l]
	rogueAs := c.Nodes[(l+1)%3] // the rogue holds this member's certificate
	other := c.Nodes[(l+2)%3]
	term := leader.Elector.Leader().Term
	since := eventlog.Now()

	from := election.NodeID(rogueAs.Name)
	ids := []uint64{election.NodeID("n1"), election.NodeID("n2"), election.NodeID("n3")}
	types := []raftpb.MessageType{
		raftpb.MsgApp, raftpb.MsgAppResp, raftpb.MsgVote, raftpb.MsgVoteResp, raftpb.MsgSnap,
		raftpb.MsgHeartbeat, raftpb.MsgHeartbeatResp, raftpb.MsgTimeoutNow, raftpb.MsgPreVote, raftpb.MsgPreVoteResp,
	}
	var rejected, accepted int
	for _, target := range []*tc.Node{leader, other} {
		client := dialAs(t, rogueAs.Certs, target.Addr, target.Name)
		to := election.NodeID(target.Name)
		for _, typ := range types {
			for _, mterm := range []uint64{math.MaxUint64, 1 << 63, transport.MaxTerm + 1, term + 1<<32 + 1<<30} {
				m := &raftpb.Message{Type: typ.Enum(), From: &from, To: &to, Term: proto.Uint64(mterm)}
				switch typ {
				case raftpb.MsgApp:
					m.Index, m.LogTerm = proto.Uint64(0), proto.Uint64(0)
				case raftpb.MsgSnap:
					m.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
						Index: proto.Uint64(10), Term: proto.Uint64(mterm), ConfState: &raftpb.ConfState{Voters: ids},
					}}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := client.Send(ctx, &pb.SendRequest{Messages: []*raftpb.Message{m}})
				cancel()
				switch status.Code(err) {
				case codes.InvalidArgument:
					rejected++ // by the transport: above the term bound
				case codes.OK:
					accepted++ // queued; the step guard refuses it (term budget)
				default:
					t.Fatalf("%v in term %d to %s: %v", typ, mterm, target.Name, err)
				}
			}
		}
	}
	t.Logf("%d crafted messages refused by the transport, %d passed to the step guard", rejected, accepted)
	require.Positive(t, accepted, "no message reached the step guard: the test no longer covers the term budget")

	// Watch two election timeouts: the crash came within two seconds.
	time.Sleep(2 * tc.ElectionTimeout) // the observation window itself
	require.Empty(t, instability(c, leader.Name, term, since, map[string]bool{other.Name: true}))
	require.True(t, leader.Elector.IsLeader())

	// Restart everyone: each node starts in the term it stopped in (the
	// leader's graceful stop hands over, a term or two later).
	c.StopAll()
	restart := eventlog.Now()
	stopped := map[string]uint64{}
	for _, e := range c.EventsSince(since) {
		if e.Kind == eventlog.KindStop {
			stopped[e.Node] = e.Term
		}
	}
	c.Start()
	c.WaitLeader(10 * time.Second)
	starts := 0
	for _, e := range c.EventsSince(restart) {
		if e.Kind == eventlog.KindStart {
			starts++
			require.Equal(t, stopped[e.Node], e.Term, "%s restarted in term %d, it stopped in %d", e.Node, e.Term, stopped[e.Node])
			require.LessOrEqual(t, e.Term, term+3, "%s restarted in term %d, far from %d", e.Node, e.Term, term)
		}
	}
	require.Equal(t, 3, starts)
	c.StopAll()
	c.Check()
}
