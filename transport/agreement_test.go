package transport

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// lineCounter is a slog handler that counts records by message and keeps
// their attributes, to check that a report is made once, not per message.
type lineCounter struct {
	mu    sync.Mutex
	lines map[string][]map[string]string
}

func (c *lineCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *lineCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *lineCounter) WithGroup(string) slog.Handler            { return c }
func (c *lineCounter) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lines == nil {
		c.lines = map[string][]map[string]string{}
	}
	c.lines[r.Message] = append(c.lines[r.Message], attrs)
	return nil
}

func (c *lineCounter) get(msg string) []map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lines[msg])
}

const differsLine = "peer's configuration differs from this node's"

// heartbeatsBothWays has every transport send a heartbeat to every peer.
func heartbeatsBothWays(tn *testNet, term uint64) {
	for i, tr := range tn.trs {
		var batch []*raftpb.Message
		for j := range tn.trs {
			if j != i {
				batch = append(batch, msg(raftpb.MsgHeartbeat, uint64(i+1), uint64(j+1), term))
			}
		}
		tr.Send(batch)
	}
}

func statsOf(tr *Transport, peer string) PeerStats {
	for _, s := range tr.Stats() {
		if s.Name == peer {
			return s
		}
	}
	return PeerStats{}
}

// Nodes of different clusters never step each other's raft messages, in
// either direction, and each says which cluster the other belongs to. A
// third node that agrees with one of them is not affected.
func TestAgreement_OtherClusterIDRefusedBothWays(t *testing.T) {
	t.Parallel()
	ids := []string{"cluster-a", "cluster-b", "cluster-a"}
	logs := make([]*lineCounter, 3)
	tn := newTestNet(t, 3, func(i int, o *Options) {
		o.ClusterID = func() string { return ids[i] }
		logs[i] = &lineCounter{}
		o.Logger = slog.New(logs[i])
	})
	for round := range 5 {
		heartbeatsBothWays(tn, uint64(round+1))
	}
	waitFor(t, 5*time.Second, "n1 and n3 to step each other's heartbeats", func() bool {
		return tn.recs[0].count(raftpb.MsgHeartbeat) > 0 && tn.recs[2].count(raftpb.MsgHeartbeat) > 0
	})
	waitFor(t, 5*time.Second, "every node to judge n2's configuration", func() bool {
		return !statsOf(tn.trs[0], "n2").ConfigUnknown && !statsOf(tn.trs[1], "n1").ConfigUnknown &&
			!statsOf(tn.trs[1], "n3").ConfigUnknown && !statsOf(tn.trs[2], "n2").ConfigUnknown
	})
	for round := range 5 {
		heartbeatsBothWays(tn, uint64(round+10))
	}
	// n1 and n3 keep exchanging; wait until the later rounds arrived, so that
	// anything from n2 sent with them would have too.
	waitFor(t, 5*time.Second, "later rounds between n1 and n3", func() bool {
		return tn.recs[0].count(raftpb.MsgHeartbeat) >= 2 && tn.recs[2].count(raftpb.MsgHeartbeat) >= 2
	})
	require.Zero(t, tn.recs[1].count(raftpb.MsgHeartbeat), "n2 (cluster-b) stepped heartbeats from cluster-a")
	for _, pair := range [][2]int{{0, 1}, {2, 1}, {1, 0}, {1, 2}} {
		s := statsOf(tn.trs[pair[0]], tn.peers[pair[1]].Name)
		require.Equal(t, []string{MismatchClusterID}, s.ConfigMismatch, "n%d's view of n%d", pair[0]+1, pair[1]+1)
		require.Contains(t, s.ConfigDetail, `belongs to cluster "`+ids[pair[1]]+`"`)
		require.Contains(t, s.ConfigDetail, "data directory")
	}
	require.Empty(t, statsOf(tn.trs[0], "n3").ConfigMismatch)
	// n1 sends n2 nothing once it knows.
	require.Positive(t, tn.trs[0].set().byName["n2"].refusedOut.Load(), "n1 kept sending raft messages to n2")

	// Reported once per peer, however many messages crossed.
	require.Len(t, logs[0].get(differsLine), 1)
	require.Len(t, logs[1].get(differsLine), 2)
	require.Len(t, logs[2].get(differsLine), 1)
}

// A cluster ID learnt while running (a new cluster's first leader makes it)
// reaches the peers without a new connection, and is compared from then on.
func TestAgreement_ClusterIDLearntLaterIsCompared(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	ids := []string{"", "cluster-b"}
	tn := newTestNet(t, 2, func(i int, o *Options) {
		o.ClusterID = func() string { mu.Lock(); defer mu.Unlock(); return ids[i] }
	})
	heartbeatsBothWays(tn, 1)
	waitFor(t, 5*time.Second, "heartbeats while n1 does not know its cluster", func() bool {
		return tn.recs[0].count(raftpb.MsgHeartbeat) > 0 && tn.recs[1].count(raftpb.MsgHeartbeat) > 0
	})
	require.Empty(t, statsOf(tn.trs[1], "n1").ConfigMismatch, "an unknown cluster ID is no difference")

	mu.Lock()
	ids[0] = "cluster-a"
	mu.Unlock()
	for term := uint64(2); ; term++ {
		heartbeatsBothWays(tn, term)
		if slices.Contains(statsOf(tn.trs[1], "n1").ConfigMismatch, MismatchClusterID) &&
			slices.Contains(statsOf(tn.trs[0], "n2").ConfigMismatch, MismatchClusterID) {
			break
		}
		require.Less(t, term, uint64(500), "the new cluster ID did not reach the peer")
		time.Sleep(10 * time.Millisecond) // pace the rounds; the loop ends on the condition
	}
}

// Two nodes whose member lists differ refuse each other's raft messages,
// both ways, name the members that differ, and tell their nodes (which then
// take no part in elections: internal/core, agreement.go and
// testdata/membership-differs.txt); messages between members that agree
// still flow.
func TestAgreement_MembershipDifferenceRefusedBothWaysAndReported(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, func(i int, o *Options) {
		if i == 2 {
			// n3 lists a fourth member and another address for n2.
			o.Members = []Peer{o.Self, o.Peers[0], {ID: 2, Name: "n2", Addr: "10.9.9.9:7000"}, {ID: 4, Name: "n4", Addr: "10.0.0.4:7000"}}
		}
	})
	heartbeatsBothWays(tn, 1)
	waitFor(t, 5*time.Second, "n1 and n2 to see n3's list differ", func() bool {
		return slices.Contains(statsOf(tn.trs[0], "n3").ConfigMismatch, MismatchMembership) &&
			slices.Contains(statsOf(tn.trs[1], "n3").ConfigMismatch, MismatchMembership) &&
			slices.Contains(statsOf(tn.trs[2], "n1").ConfigMismatch, MismatchMembership)
	})
	d := statsOf(tn.trs[0], "n3").ConfigDetail
	require.Contains(t, d, "n3 lists members this node does not: n4")
	require.Contains(t, d, "n2's address is "+tn.peers[1].Addr+" here, 10.9.9.9:7000 on n3")
	for i, peer := range []uint64{3, 3, 1} {
		differs, ok := tn.recs[i].told(peer)
		require.True(t, ok && differs, "n%d's node was not told that n%d's member list differs", i+1, peer)
	}
	_, told := tn.recs[0].told(2)
	require.False(t, told, "n1's node was told about n2, whose list agrees")

	before := [3]int{}
	for i := range before {
		before[i] = tn.recs[i].count(raftpb.MsgHeartbeat)
	}
	fromN3 := tn.recs[0].countFrom(3)
	// n2 sends a heartbeat (delivered); n3 sends n1 a heartbeat (refused).
	tn.trs[1].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 2, 1, 5)})
	tn.trs[2].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 3, 1, 5), msg(raftpb.MsgVote, 3, 1, 5)})
	waitFor(t, 5*time.Second, "n2's heartbeat to reach n1", func() bool {
		return tn.recs[0].count(raftpb.MsgHeartbeat) >= before[0]+1
	})
	// n2's heartbeat may arrive twice (hedged: stream.go).
	require.Equal(t, fromN3, tn.recs[0].countFrom(3), "n1 stepped n3's heartbeat")
	require.Zero(t, tn.recs[2].count(raftpb.MsgHeartbeat), "n3 stepped heartbeats of nodes with another member list")
}

// Timings may differ (a rolling change of election_timeout): raft messages
// flow, and the difference is reported once per peer.
func TestAgreement_DifferentTimingsAllowedAndReportedOnce(t *testing.T) {
	t.Parallel()
	logs := make([]*lineCounter, 2)
	tn := newTestNet(t, 2, func(i int, o *Options) {
		o.Timings = Timings{Heartbeat: 100 * time.Millisecond, ElectionTimeout: time.Second, LeaseDriftMargin: 0.1}
		if i == 1 {
			o.Timings.ElectionTimeout = 5 * time.Second
		}
		logs[i] = &lineCounter{}
		o.Logger = slog.New(logs[i])
	})
	for term := range uint64(20) {
		heartbeatsBothWays(tn, term+1)
		waitFor(t, 5*time.Second, "the round to arrive", func() bool {
			return tn.recs[0].count(raftpb.MsgHeartbeat) > int(term) && tn.recs[1].count(raftpb.MsgHeartbeat) > int(term)
		})
	}
	for i, l := range logs {
		lines := l.get(differsLine)
		require.Len(t, lines, 1, "node %d", i+1)
		require.Equal(t, MismatchTimings, lines[0]["differs"])
		require.Equal(t, "false", lines[0]["refusing_raft_messages"])
		require.Contains(t, lines[0]["detail"], "election timeout")
	}
	require.Contains(t, statsOf(tn.trs[0], "n2").ConfigDetail, "election timeout 1s here, 5s on n2")
	_, told := tn.recs[0].told(2)
	require.False(t, told, "a difference in timings was reported as one in membership")
}

// After the first exchange, a Send carries the digest only: the description
// crosses the wire once per change, not with every heartbeat; so does the
// answer's.
func TestAgreement_DescriptionSentOncePerChange(t *testing.T) {
	t.Parallel()
	newTr := func(self, other Peer) *Transport {
		tr, err := New(Options{Self: self, Peers: []Peer{other}, Insecure: true, Handler: &recorder{}})
		require.NoError(t, err)
		tr.ctx = context.Background() // send without Start: no network here
		return tr
	}
	n1p, n2p := Peer{ID: 1, Name: "n1", Addr: "127.0.0.1:1"}, Peer{ID: 2, Name: "n2", Addr: "127.0.0.1:2"}
	n1, n2 := newTr(n1p, n2p), newTr(n2p, n1p)
	c := &handlerClient{srv: &peerServer{t: n2}}
	p := n1.set().byName["n2"]
	p.client, p.ctx = c, n1.ctx
	for term := range uint64(10) {
		n1.send(p, []*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, term+1)}, time.Second)
	}
	require.Equal(t, 10, c.total)
	require.Equal(t, 1, c.fullReq, "our configuration went with more than the first Send")
	require.Equal(t, 1, c.fullResp, "the peer's configuration came with more than the first answer")
	require.Equal(t, 10, n2.opts.Handler.(*recorder).count(raftpb.MsgHeartbeat))

	// A new connection describes the configuration again (the peer may be
	// a new process).
	n1.hello(p)
	require.Equal(t, 2, c.fullReq)
}

// handlerClient calls a peer's Send handler directly.
type handlerClient struct {
	pb.PeerClient
	srv                      *peerServer
	total, fullReq, fullResp int
}

func (c *handlerClient) Send(ctx context.Context, req *pb.SendRequest, _ ...grpc.CallOption) (*pb.SendResponse, error) {
	c.total++
	if req.GetConfig() != nil {
		c.fullReq++
	}
	resp, err := c.srv.Send(ctx, req)
	if resp.GetConfig() != nil {
		c.fullResp++
	}
	return resp, err
}

func TestCompareConfigs_NamesEveryDifference(t *testing.T) {
	own := newLocalConfig("a", []Peer{{Name: "n1", Addr: "h1:1"}, {Name: "n2", Addr: "h2:1"}, {Name: "n3", Addr: "h3:1"}},
		Timings{Heartbeat: time.Second, ElectionTimeout: 10 * time.Second, LeaseDriftMargin: 0.1}).desc
	remote := newLocalConfig("b", []Peer{{Name: "n1", Addr: "h1:1"}, {Name: "n2", Addr: "h2:1", Identity: "n2.example"}, {Name: "n4", Addr: "h4:1"}},
		Timings{Heartbeat: time.Second, ElectionTimeout: 5 * time.Second, LeaseDriftMargin: 0.2}).desc
	a := compareConfigs("n1", "n2", own, remote)
	require.Equal(t, MismatchKinds, a.kinds)
	require.True(t, a.refuse)
	for _, want := range []string{
		`n2 belongs to cluster "b", this node (n1) to cluster "a"`,
		"n2 lists members this node does not: n4",
		"this node lists members n2 does not: n3",
		`n2's identity is "n2" here, "n2.example" on n2`,
		"election timeout 10s here, 5s on n2",
		"lease drift margin 0.1 here, 0.2 on n2",
	} {
		require.True(t, strings.Contains(a.detail, want), "detail %q lacks %q", a.detail, want)
	}
	// The order of a peer list does not matter.
	shuffled := newLocalConfig("a", []Peer{{Name: "n3", Addr: "h3:1"}, {Name: "n1", Addr: "h1:1"}, {Name: "n2", Addr: "h2:1"}},
		Timings{Heartbeat: time.Second, ElectionTimeout: 10 * time.Second, LeaseDriftMargin: 0.1})
	require.Equal(t, configDigest(own), shuffled.digest)
	require.Empty(t, compareConfigs("n1", "n2", own, shuffled.desc).kinds)
}

// A Send whose configuration this node has not seen is not stepped: the
// answer asks for the description, and the next Send, describing it, is.
// A Send with no digest at all (an older raftelect) is not checked, and a
// description larger than any real one is refused.
func TestAgreement_UnknownConfigurationRefusedUntilDescribed(t *testing.T) {
	t.Parallel()
	n1p, n2p := Peer{ID: 1, Name: "n1", Addr: "127.0.0.1:1"}, Peer{ID: 2, Name: "n2", Addr: "127.0.0.1:2"}
	rec := &recorder{}
	n2, err := New(Options{Self: n2p, Peers: []Peer{n1p}, Insecure: true, Handler: rec})
	require.NoError(t, err)
	srv := &peerServer{t: n2}
	own := newLocalConfig("", []Peer{n1p, n2p}, Timings{})
	send := func(req *pb.SendRequest) *pb.SendResponse {
		req.Messages = []*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)}
		resp, err := srv.Send(context.Background(), req)
		require.NoError(t, err)
		return resp
	}
	resp := send(&pb.SendRequest{ConfigDigest: own.digest})
	require.True(t, resp.GetNeedConfig())
	require.NotEmpty(t, resp.GetRefused())
	require.Zero(t, rec.count(raftpb.MsgHeartbeat), "stepped a Send of an unknown configuration")
	require.NotNil(t, resp.GetConfig(), "n2 did not describe itself to a caller that does not know it")

	resp = send(&pb.SendRequest{ConfigDigest: own.digest, Config: own.desc, KnownConfigDigest: resp.GetConfigDigest()})
	require.False(t, resp.GetNeedConfig())
	require.Empty(t, resp.GetRefused())
	require.Nil(t, resp.GetConfig(), "n2 described itself again to a caller that knows it")
	send(&pb.SendRequest{ConfigDigest: own.digest})
	require.Equal(t, 2, rec.count(raftpb.MsgHeartbeat))

	send(&pb.SendRequest{})
	require.Equal(t, 3, rec.count(raftpb.MsgHeartbeat), "a Send without a digest is not checked")

	huge := &pb.NodeConfig{}
	for i := range maxConfigMembers + 1 {
		huge.Members = append(huge.Members, &pb.Member{Name: fmt.Sprint("m", i)})
	}
	_, err = srv.Send(context.Background(), &pb.SendRequest{
		Messages: []*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)}, ConfigDigest: 7, Config: huge,
	})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
}

// A member that refuses this node as no member of its cluster (its list
// does not name this node) is a membership difference here: this node
// reports it, sends that member no more raft messages, and holds elections.
func TestAgreement_RefusedAsNonMemberIsAMembershipDifference(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, func(i int, o *Options) {
		if i == 0 { // n1 lists n1 and n3 only
			o.Peers = []Peer{o.Peers[1]}
		}
	})
	tn.trs[1].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 2, 1, 1)})
	waitFor(t, 5*time.Second, "n2 to see n1 refuse it", func() bool {
		return slices.Contains(statsOf(tn.trs[1], "n1").ConfigMismatch, MismatchMembership)
	})
	require.Contains(t, statsOf(tn.trs[1], "n1").ConfigDetail, "n1 refuses this node (n2) as no member of its cluster")
	differs, ok := tn.recs[1].told(1)
	require.True(t, ok && differs, "n2's node was not told that n1 refuses it as a non-member")
	before := tn.trs[1].set().byName["n1"].refusedOut.Load()
	tn.trs[1].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 2, 1, 2)})
	require.Equal(t, before+1, tn.trs[1].set().byName["n1"].refusedOut.Load(), "n2 kept sending raft messages to n1")
	require.Zero(t, tn.recs[0].count(raftpb.MsgHeartbeat))
	// n3 lists the same members as n2: no difference there.
	require.Empty(t, statsOf(tn.trs[1], "n3").ConfigMismatch)
}
