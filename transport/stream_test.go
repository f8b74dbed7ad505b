package transport

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/raftelect/raftelect/certs"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// Each lane keeps one stream for as long as it works: many batches of
// heartbeats, votes and appends open two streams (control and data) and
// make no unary Send but the hello.
func TestLanes_OneLongLivedStreamPerLane(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, nil)
	for i := range 30 {
		tn.trs[0].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1), msg(raftpb.MsgApp, 1, 2, 1)})
		want := i + 1
		// ...and its answer: a heartbeat that finds the previous one
		// unanswered may be hedged (TestHedge_*).
		waitFor(t, 10*time.Second, "the batch", func() bool {
			return tn.recs[1].count(raftpb.MsgApp) == want && tn.recs[1].count(raftpb.MsgHeartbeat) >= want &&
				tn.trs[0].set().byID[2].controlBusy.Load() == 0
		})
	}
	require.Equal(t, uint64(2), tn.trs[0].set().byID[2].streams.Load(), "lane streams opened by n1")
	require.Equal(t, uint64(2), tn.trs[1].streamsServed.Load(), "streams n2 served")
	// n1's hellos (until answered) are n2's only unary Sends; none carries
	// a raft message (the recorder counted every one above exactly).
	require.LessOrEqual(t, tn.trs[1].unarySends.Load(), uint64(3))
	require.Equal(t, 30, tn.recs[1].count(raftpb.MsgApp))
	require.Zero(t, tn.trs[0].set().byID[2].hedged.Load(), "a healthy lane hedges nothing")
}

// A stream whose answer does not come within the lane's timeout is torn
// down and raft is told the peer is unreachable; once the peer answers
// again, the next batch goes on a new stream. Without the tear-down the
// next batch would wait behind the hung one forever.
func TestLanes_StalledStreamTornDownReportedAndReopened(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, func(i int, o *Options) { o.ControlTimeout = 300 * time.Millisecond })
	tn.trs[0].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
	waitFor(t, 10*time.Second, "the first heartbeat", func() bool { return tn.recs[1].count(raftpb.MsgHeartbeat) == 1 })
	require.Equal(t, uint64(1), tn.trs[0].set().byID[2].streams.Load())

	tn.hooks[1].BlockFrom("n1", true)
	tn.trs[0].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 2)})
	waitFor(t, 10*time.Second, "the stall to be reported to raft", func() bool { return tn.recs[0].unreachable.Load() > 0 })
	require.False(t, tn.trs[0].Stats()[0].Reachable)
	tn.hooks[1].BlockFrom("n1", false)

	waitFor(t, 10*time.Second, "a heartbeat after the stall", func() bool {
		tn.trs[0].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 3)})
		time.Sleep(20 * time.Millisecond) // pacing the retries, not synchronisation
		return tn.recs[1].count(raftpb.MsgHeartbeat) >= 2
	})
	require.GreaterOrEqual(t, tn.trs[0].set().byID[2].streams.Load(), uint64(2), "a new stream after the tear-down")
	waitFor(t, 10*time.Second, "n2's handler of the torn-down stream to end", func() bool {
		return tn.trs[1].limiter.stats().Open > 0 // the connection itself stays up
	})
	require.True(t, tn.trs[0].Stats()[0].Reachable)
}

// unaryOnlyPeer is a node of the previous release: a Peer service without
// Stream.
type unaryOnlyPeer struct {
	pb.UnimplementedPeerServer
	inner   *peerServer
	streams atomic.Int64
}

func (u *unaryOnlyPeer) Send(ctx context.Context, req *pb.SendRequest) (*pb.SendResponse, error) {
	return u.inner.Send(ctx, req)
}

func (u *unaryOnlyPeer) Stream(s pb.Peer_StreamServer) error {
	u.streams.Add(1)
	return u.UnimplementedPeerServer.Stream(s)
}

// A peer without the Stream method (the previous release) is sent unary
// Sends: nothing is lost, and the lanes stop asking for streams until the
// connection is re-established.
func TestLanes_PeerWithoutStreamsGetsUnarySends(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewCA("test CA", time.Hour)
	require.NoError(t, err)
	var lis [2]net.Listener
	var peers [2]Peer
	var creds [2]*Credentials
	for i := range 2 {
		lis[i], err = net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		name := fmt.Sprintf("n%d", i+1)
		peers[i] = Peer{ID: uint64(i + 1), Name: name, Addr: lis[i].Addr().String()}
		f, err := ca.WriteNode(filepath.Join(t.TempDir(), name), name, []string{"127.0.0.1"}, time.Hour)
		require.NoError(t, err)
		creds[i], err = LoadCredentials(f.CA, f.Cert, f.Key)
		require.NoError(t, err)
	}
	rec1, rec2 := &recorder{}, &recorder{}
	tr1, err := New(Options{Self: peers[0], Peers: peers[1:], Credentials: creds[0], Handler: rec1, Listener: lis[0]})
	require.NoError(t, err)
	require.NoError(t, tr1.Start())
	t.Cleanup(tr1.Stop)
	// n2 runs the previous release's server: the same Send, no Stream.
	tr2, err := New(Options{Self: peers[1], Peers: peers[:1], Credentials: creds[1], Handler: rec2})
	require.NoError(t, err)
	old := &unaryOnlyPeer{inner: &peerServer{t: tr2}}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(creds[1].serverConfig())))
	pb.RegisterPeerServer(srv, old)
	go srv.Serve(lis[1])
	t.Cleanup(srv.Stop)

	for i := range 10 {
		tr1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1), msg(raftpb.MsgApp, 1, 2, 1)})
		want := i + 1
		waitFor(t, 10*time.Second, "the batch", func() bool { return rec2.count(raftpb.MsgApp) == want })
	}
	require.GreaterOrEqual(t, rec2.count(raftpb.MsgHeartbeat), 1)
	require.True(t, tr1.set().byID[2].unary.Load())
	require.LessOrEqual(t, old.streams.Load(), int64(2), "asked for a stream at most once per lane")
	require.True(t, tr1.Stats()[0].Reachable)
}

// Fields a stream leaves out come back as they were, including after a
// change, and a stream's first message carries every field.
func TestStreamElision_FillRestoresWhatElideLeftOut(t *testing.T) {
	var out, in streamRequests
	reqs := []*pb.SendRequest{
		{LabelsDigest: 7, Incarnation: 9, ConfigDigest: 11, KnownConfigDigest: 0},
		{LabelsDigest: 7, Incarnation: 9, ConfigDigest: 11, KnownConfigDigest: 13},
		{LabelsDigest: 7, Incarnation: 9, ConfigDigest: 11, KnownConfigDigest: 13},
		{LabelsDigest: 7, Incarnation: 9, ConfigDigest: 12, KnownConfigDigest: 13},
		{LabelsDigest: 7, Incarnation: 9, ConfigDigest: 12, KnownConfigDigest: 13},
	}
	for i, r := range reqs {
		want := &pb.SendRequest{LabelsDigest: r.LabelsDigest, Incarnation: r.Incarnation, ConfigDigest: r.ConfigDigest, KnownConfigDigest: r.KnownConfigDigest}
		out.elide(r)
		if i == 0 {
			require.Equal(t, uint64(11), r.ConfigDigest, "the first request carries every field")
		}
		if i == 2 {
			require.Zero(t, r.LabelsDigest+r.Incarnation+r.ConfigDigest+r.KnownConfigDigest, "a repeat carries none")
		}
		in.fill(r)
		require.Equal(t, want.String(), r.String(), "request %d", i)
	}
	var sOut, sIn streamResponses
	resps := []*pb.SendResponse{
		{ConfigDigest: 5},
		{ConfigDigest: 5, AckStamp: 100, AckIncarnation: 3},
		{ConfigDigest: 5, AckStamp: 200, AckIncarnation: 3},
		{ConfigDigest: 5},
		{ConfigDigest: 6, AckStamp: 300, AckIncarnation: 3},
	}
	for i, r := range resps {
		want := &pb.SendResponse{ConfigDigest: r.ConfigDigest, AckStamp: r.AckStamp, AckIncarnation: r.AckIncarnation}
		sOut.elide(r, 0, 0) // answering requests whose stamps it does not echo
		if i == 2 {
			require.Zero(t, r.ConfigDigest+r.AckIncarnation, "a repeat carries neither")
		}
		sIn.fill(r, 0, 0)
		require.Equal(t, want.String(), r.String(), "response %d", i)
	}
}

// A stream's errors come back to the sender as the unary Send's did: a
// message whose From is not the caller ends the stream with
// PermissionDenied, and the next batch opens a new stream.
func TestStream_RefusesAForgedFromAndEndsTheStream(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	p := tn.trs[1].set().byID[1] // n2's view of n1
	var ls laneStream
	defer ls.close()
	require.NoError(t, laneHeartbeat(tn, &ls, p, 2, 1))
	err := laneHeartbeat(tn, &ls, p, 3, 1) // n2 posing as n3
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	require.Nil(t, ls.stream, "torn down")
	require.NoError(t, laneHeartbeat(tn, &ls, p, 2, 1))
	require.Equal(t, 2, tn.recs[0].count(raftpb.MsgHeartbeat), "only n2's own heartbeats reached n1")
	require.Equal(t, uint64(1), tn.trs[0].Rejections(RejectFromMismatch))
}

// A heartbeat and its answer on a lane's stream cost one small gRPC message
// each way and nothing else: no header fields, no trailers, and no PING of
// gRPC's bandwidth estimator (windowSize). With dynamic windows the same
// round trip costs ~182 bytes above TCP (a PING and its ack each way); on
// unary Sends ~172 with fixed windows, ~267 without.
func TestStream_HeartbeatRoundTripBytes(t *testing.T) {
	t.Parallel()
	var wire atomic.Int64
	tn := newTestNet(t, 2, func(i int, o *Options) {
		if i == 1 {
			o.Listener = countingListener{Listener: o.Listener, n: &wire}
		}
	})
	tr, p := tn.trs[0], tn.trs[0].set().byID[2]
	var ls laneStream
	defer ls.close()
	batch := []*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)}
	waitFor(t, 10*time.Second, "the stream to carry heartbeats", func() bool {
		tr.sendOnLane(p, &ls, p.client, false, batch, 5*time.Second)
		return tn.recs[1].count(raftpb.MsgHeartbeat) >= 10
	})
	const n = 200
	before, got := wire.Load(), tn.recs[1].count(raftpb.MsgHeartbeat)
	for range n {
		tr.sendOnLane(p, &ls, p.client, false, batch, 5*time.Second)
	}
	require.Equal(t, got+n, tn.recs[1].count(raftpb.MsgHeartbeat))
	perRoundTrip := float64(wire.Load()-before) / n
	t.Logf("a heartbeat and its answer on a stream: %.1f bytes above TCP", perRoundTrip)
	// Two TLS records (22 bytes each), two HTTP/2 DATA frame headers (9),
	// two gRPC prefixes (5), a heartbeat of ~25 bytes with its stamp: ~97.
	require.Less(t, perRoundTrip, 120.0)
}

// freezeListener lets a test stall one accepted connection: its reads
// block until it is thawed, as when TCP waits to retransmit a lost segment.
type freezeListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*freezeConn
}

func (l *freezeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	fc := &freezeConn{Conn: c, closed: make(chan struct{})}
	l.mu.Lock()
	l.conns = append(l.conns, fc)
	l.mu.Unlock()
	return fc, nil
}

// busiest returns the connection that has read the most bytes.
func (l *freezeListener) busiest() *freezeConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	var best *freezeConn
	for _, c := range l.conns {
		if best == nil || c.read.Load() > best.read.Load() {
			best = c
		}
	}
	return best
}

type freezeConn struct {
	net.Conn
	read      atomic.Int64
	thaw      atomic.Pointer[chan struct{}]
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *freezeConn) freeze() {
	ch := make(chan struct{})
	c.thaw.Store(&ch)
}

func (c *freezeConn) unfreeze() {
	if ch := c.thaw.Swap(nil); ch != nil {
		close(*ch)
	}
}

func (c *freezeConn) Read(b []byte) (int, error) {
	if ch := c.thaw.Load(); ch != nil {
		select {
		case <-*ch:
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

func (c *freezeConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// A heartbeat that finds the control lane's previous request unanswered
// (its connection stalled) also goes on the spare connection, and arrives
// although the stalled connection delivers nothing for far longer. Without
// hedging it would wait for the stall to end (or the 30 s timeout here).
func TestHedge_HeartbeatGoesOnTheSpareConnectionWhenTheLaneStalls(t *testing.T) {
	t.Parallel()
	var fl *freezeListener
	tn := newTestNet(t, 2, func(i int, o *Options) {
		o.ControlTimeout = 30 * time.Second
		if i == 1 {
			fl = &freezeListener{Listener: o.Listener}
			o.Listener = fl
		}
	})
	tr, p := tn.trs[0], tn.trs[0].set().byID[2]
	for i := range 5 {
		tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
		want := i + 1
		waitFor(t, 10*time.Second, "a heartbeat and its answer", func() bool {
			return tn.recs[1].count(raftpb.MsgHeartbeat) == want && p.controlBusy.Load() == 0
		})
	}
	require.Zero(t, p.hedged.Load(), "a lane whose requests were answered hedges nothing")
	waitFor(t, 10*time.Second, "the spare connection", func() bool {
		p.spareMu.Lock()
		defer p.spareMu.Unlock()
		return p.spare != nil && p.spare.GetState() == connectivity.Ready
	})

	stalled := fl.busiest() // the connection the control lane's stream is on
	stalled.freeze()
	defer stalled.unfreeze()
	// The server's reader may be in a Read already: the freeze holds the
	// next one.
	tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
	waitFor(t, 10*time.Second, "a heartbeat", func() bool { return tn.recs[1].count(raftpb.MsgHeartbeat) == 6 })
	tr.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 2)}) // stuck behind the stall
	hb := msg(raftpb.MsgHeartbeat, 1, 2, 2)
	waitFor(t, 10*time.Second, "the lane's request to be overdue", func() bool { return tr.hedges(p, hb) })
	tr.Send([]*raftpb.Message{hb})
	waitFor(t, 10*time.Second, "the hedged heartbeat", func() bool { return tn.recs[1].count(raftpb.MsgHeartbeat) == 7 })
	require.Equal(t, uint64(1), p.hedged.Load())
	stalled.unfreeze()
	waitFor(t, 10*time.Second, "the stalled heartbeat after the stall", func() bool { return tn.recs[1].count(raftpb.MsgHeartbeat) >= 8 })
}

// Only a node that sends heartbeats (a leader) makes spare connections:
// votes, responses and appends alone make none, so followers keep one
// connection per peer.
func TestHedge_SpareConnectionOnlyForHeartbeats(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, nil)
	p := tn.trs[0].set().byID[2]
	spare := func() bool {
		p.spareMu.Lock()
		defer p.spareMu.Unlock()
		return p.spare != nil
	}
	tn.trs[0].Send([]*raftpb.Message{msg(raftpb.MsgVoteResp, 1, 2, 1), msg(raftpb.MsgAppResp, 1, 2, 1), msg(raftpb.MsgApp, 1, 2, 1)})
	waitFor(t, 10*time.Second, "the messages", func() bool { return tn.recs[1].countFrom(1) == 3 })
	require.False(t, spare(), "a spare connection without heartbeats")
	require.False(t, p.spareReady.Load())
	require.Equal(t, 1, tn.trs[1].ConnStats().Open)
	tn.trs[0].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
	waitFor(t, 10*time.Second, "the heartbeat", func() bool { return tn.recs[1].countFrom(1) == 4 })
	require.True(t, spare(), "no spare connection after a heartbeat")
	require.True(t, p.spareReady.Load())
	waitFor(t, 10*time.Second, "n2 to accept the spare connection", func() bool { return tn.trs[1].ConnStats().Open == 2 })
}

// laneHeartbeat sends n2's heartbeat to n1 on ls, From from (n2 is 2),
// and waits for the answer.
func laneHeartbeat(tn *testNet, ls *laneStream, p *peer, from, term uint64) error {
	req, _ := tn.trs[1].request(p, []*raftpb.Message{msg(raftpb.MsgHeartbeat, from, 1, term)})
	_, err := ls.roundTrip(tn.trs[1], p.client, p, true, req, 5*time.Second)
	return err
}

// A lane's stream whose connection dropped while the lane was idle (the
// peer restarted, or closed it) must not cost the next message. gRPC lets
// Send succeed on such a stream and fails only the Recv after, so the lane
// opens a new stream first. Before, the message was reported unreachable
// and lost: between real processes a follower of a killed leader lost so
// its answer to the other follower's pre-vote (their connection dated from
// before that follower's own restart), and failover took a heartbeat
// longer (docs/benchmarks.md).
func TestStream_EndedWhileIdleLosesNothing(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, nil)
	p := tn.trs[1].set().byID[1] // n2's view of n1
	var ls laneStream
	defer ls.close()
	require.NoError(t, laneHeartbeat(tn, &ls, p, 2, 1))
	require.Equal(t, 1, tn.recs[0].count(raftpb.MsgHeartbeat))

	require.Equal(t, connectivity.Ready, p.conn.GetState())
	tn.trs[0].limiter.closeMember("n2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.True(t, p.conn.WaitForStateChange(ctx, connectivity.Ready), "n2's connection to n1 drops")

	require.NoError(t, laneHeartbeat(tn, &ls, p, 2, 2), "the message after the end goes on a new stream")
	require.Equal(t, 2, tn.recs[0].count(raftpb.MsgHeartbeat), "and arrives")
	require.Equal(t, uint64(2), p.streams.Load(), "streams opened")
}
