package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// fromSource dials from a loopback address other than 127.0.0.1 (Linux
// routes all of 127/8 to lo), so a test can play a host other than the
// members', which all use 127.0.0.1.
func fromSource(ip string) grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return d.DialContext(ctx, "tcp", addr)
	})
}

// clientAs returns a client of node 0 of tn holding a fresh certificate for
// name (with DNS SANs sans), connecting from source ip ("" for the default).
func (tn *testNet) clientAs(t *testing.T, name string, sans []string, ip string) rpcClient {
	t.Helper()
	conn := tn.connAs(t, name, sans, ip)
	return rpcClient{peer: pb.NewPeerClient(conn), node: pb.NewNodeClient(conn)}
}

// rpcClient calls both services on the peer port: the Peer service
// (members only) and the Node service (an operator service: members and
// operators).
type rpcClient struct {
	peer pb.PeerClient
	node pb.NodeClient
}

func (tn *testNet) connAs(t *testing.T, name string, sans []string, ip string) *grpc.ClientConn {
	t.Helper()
	certPEM, keyPEM, err := tn.ca.Issue(name, sans, time.Hour)
	require.NoError(t, err)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	cfg := tn.trs[0].opts.Credentials.ClientConfig(tn.peers[0].Name)
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	if ip != "" {
		opts = append(opts, fromSource(ip))
	}
	conn, err := grpc.NewClient(tn.peers[0].Addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// testNodeService stands in for the election package's Node service, which
// the transport only authorizes: it answers Status, Check and Watch (one
// status, then the end of the stream), and leaves Transfer unimplemented.
type testNodeService struct{ pb.UnimplementedNodeServer }

func (testNodeService) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{Node: &pb.NodeStatus{Name: "test"}}, nil
}

func (testNodeService) Check(context.Context, *pb.CheckRequest) (*pb.CheckResponse, error) {
	return &pb.CheckResponse{}, nil
}

func (testNodeService) Watch(_ *pb.WatchRequest, s pb.Node_WatchServer) error {
	return s.Send(&pb.WatchResponse{Update: &pb.WatchResponse_Status{Status: &pb.NodeStatus{Name: "test"}}})
}

func registerTestNodeService(r grpc.ServiceRegistrar) {
	RegisterOperatorService(r, &pb.Node_ServiceDesc, testNodeService{})
}

// rpcCodes calls Send on the Peer service and every RPC of the Node
// service, each within its own deadline, and returns the codes by name.
// An authorized caller gets OK, and Unimplemented for Transfer.
func rpcCodes(c rpcClient) map[string]codes.Code {
	got := map[string]codes.Code{}
	call := func(name string, f func(ctx context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got[name] = status.Code(f(ctx))
	}
	call("Send", func(ctx context.Context) error {
		_, err := c.peer.Send(ctx, &pb.SendRequest{Messages: []*raftpb.Message{msg(raftpb.MsgHeartbeat, 2, 1, 1)}})
		return err
	})
	call("Check", func(ctx context.Context) error { _, err := c.node.Check(ctx, &pb.CheckRequest{}); return err })
	call("forwarded Check", func(ctx context.Context) error {
		_, err := c.node.Check(ctx, &pb.CheckRequest{Forwarded: true})
		return err
	})
	call("Status", func(ctx context.Context) error { _, err := c.node.Status(ctx, &pb.StatusRequest{}); return err })
	call("Transfer", func(ctx context.Context) error { _, err := c.node.Transfer(ctx, &pb.TransferRequest{}); return err })
	call("Watch", func(ctx context.Context) error {
		w, err := c.node.Watch(ctx, &pb.WatchRequest{})
		if err != nil {
			return err
		}
		if _, err := w.Recv(); err != nil {
			return err
		}
		return nil
	})
	return got
}

func codesOf(send, node codes.Code) map[string]codes.Code {
	return map[string]codes.Code{"Send": send, "Check": node, "forwarded Check": node, "Status": node, "Transfer": node, "Watch": node}
}

// A certificate from the cluster's CA that names no member and no operator
// gets nothing: every RPC of the Peer service and of the Node service (an
// operator service) is refused.
func TestNonMemberCertificate_RefusedForEveryRPC(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, func(i int, o *Options) { o.Operators = []string{"ops"} })
	require.Equal(t, codesOf(codes.PermissionDenied, codes.PermissionDenied), rpcCodes(tn.clientAs(t, "mallory", nil, "")))
	require.Equal(t, uint64(6), tn.trs[0].Rejections(RejectNotMember))

	// Every method of both services, also those added later: an empty
	// request (which decodes as any request message) gets PermissionDenied,
	// before any handler runs (the test service's Watch would answer).
	conn := tn.connAs(t, "mallory", nil, "")
	for _, desc := range []grpc.ServiceDesc{pb.Peer_ServiceDesc, pb.Node_ServiceDesc} {
		for _, m := range desc.Methods {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := conn.Invoke(ctx, "/"+desc.ServiceName+"/"+m.MethodName, &emptypb.Empty{}, &emptypb.Empty{})
			cancel()
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%s/%s: %v", desc.ServiceName, m.MethodName, err)
		}
		for _, sd := range desc.Streams {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: sd.ServerStreams, ClientStreams: sd.ClientStreams},
				"/"+desc.ServiceName+"/"+sd.StreamName)
			if err == nil {
				_ = st.SendMsg(&emptypb.Empty{})
				_ = st.CloseSend()
				err = st.RecvMsg(&emptypb.Empty{})
			}
			cancel()
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%s/%s: %v", desc.ServiceName, sd.StreamName, err)
		}
	}
	require.NotEmpty(t, pb.Node_ServiceDesc.Streams, "the loop above covered a streaming RPC")

	// A member gets all of them (the control for the above; the test
	// service does not transfer).
	member := codesOf(codes.OK, codes.OK)
	member["Transfer"] = codes.Unimplemented
	require.Equal(t, member, rpcCodes(tn.clientAs(t, "n2", nil, "")))
	// So does the node's own certificate (`raftelect status --config`
	// beside it), but for Send: no raft message comes from ourselves.
	self := codesOf(codes.PermissionDenied, codes.OK)
	self["Transfer"] = codes.Unimplemented
	require.Equal(t, self, rpcCodes(tn.clientAs(t, "n1", nil, "")))
}

// An operator identity, as CommonName or DNS SAN, may call every RPC of the
// Node service (Status, Check, Transfer, Watch), but never Send.
func TestOperatorCertificate_NodeServiceButNotSend(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, func(i int, o *Options) { o.Operators = []string{"ops", "ops.example"} })
	want := codesOf(codes.PermissionDenied, codes.OK)
	want["Transfer"] = codes.Unimplemented // allowed; the test service does not transfer
	for _, c := range []rpcClient{tn.clientAs(t, "ops", nil, ""), tn.clientAs(t, "alice", []string{"ops.example"}, "")} {
		require.Equal(t, want, rpcCodes(c))
	}
	require.Zero(t, tn.recs[0].count(raftpb.MsgHeartbeat), "no operator's message reached raft")
}

// RegisterOperatorService refuses a registrar other than the transport's:
// the service would be served without the transport's authorization.
func TestRegisterOperatorService_OnlyOnTheTransportsRegistrar(t *testing.T) {
	require.PanicsWithValue(t,
		"transport.RegisterOperatorService: register on the registrar that Options.RegisterServices is given, so that the transport authorizes the service's callers",
		func() { RegisterOperatorService(grpc.NewServer(), &pb.Node_ServiceDesc, testNodeService{}) })
}

// holdTerm is a Handler whose Deliver blocks, until release is closed, any
// batch whose first message has term 99: the impostor's Sends in the
// fairness test.
type holdTerm struct {
	*recorder
	release chan struct{}
	held    *atomic.Int64 // Delivers blocked now
}

func (h holdTerm) Deliver(ctx context.Context, from uint64, msgs []*raftpb.Message, sent Stamp) (Ack, error) {
	if len(msgs) > 0 && msgs[0].GetTerm() == 99 {
		h.held.Add(1)
		defer h.held.Add(-1)
		select {
		case <-h.release:
		case <-ctx.Done():
			return Ack{}, ctx.Err()
		}
	}
	return h.recorder.Deliver(ctx, from, msgs, sent)
}

// An impostor holding a member's certificate cannot starve the member: it
// opens many connections from another host and fills every in-flight slot
// it gets with Sends that never finish, and the member's own Sends still
// get through. It also gets no more than MaxConnsPerIdentity connections
// from its host.
func TestImpostorWithAMembersCertificate_CannotStarveTheMember(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	rec := &recorder{}
	var heldNow atomic.Int64
	tn := newTestNet(t, 2, func(i int, o *Options) {
		if i == 0 {
			o.Handler = holdTerm{recorder: rec, release: release, held: &heldNow}
		}
	})
	defer close(release)
	const conns = 12
	var exhausted, other atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range conns {
		c := tn.clientAs(t, "n2", nil, "127.0.0.2")
		for range 2 * maxInboundSendsPerConn {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.peer.Send(ctx, &pb.SendRequest{Messages: []*raftpb.Message{msg(raftpb.MsgHeartbeat, 2, 1, 99)}})
				switch status.Code(err) {
				case codes.ResourceExhausted:
					exhausted.Add(1)
				case codes.Canceled, codes.DeadlineExceeded:
					// held in a slot, or waiting for a connection
				default:
					other.Add(1)
				}
			}()
		}
	}
	// The impostor holds every slot it can get: MaxConnsPerIdentity
	// connections' worth, the rest refused or never connected.
	lim := tn.trs[0].opts.Limits
	waitFor(t, 20*time.Second, "the impostor's connections to be capped and its slots full", func() bool {
		return tn.trs[0].Rejections(RejectConnPerIdentity) > 0 &&
			tn.trs[0].Rejections(RejectInflight) >= uint64(lim.MaxConnsPerIdentity*maxInboundSendsPerConn)
	})

	// The member's own transport, on its own connection, still gets through.
	for i := range 5 {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := tn.trs[1].set().byID[1].client.Send(sctx, &pb.SendRequest{Messages: []*raftpb.Message{msg(raftpb.MsgHeartbeat, 2, 1, 1)}})
		scancel()
		require.NoError(t, err, "the member's Send %d", i)
	}
	require.Equal(t, 5, rec.count(raftpb.MsgHeartbeat), "the member's heartbeats reached the handler")
	held := heldNow.Load()
	cancel()
	wg.Wait()
	t.Logf("impostor: %d connections tried, %d refused at the handshake; Sends: %d held in slots, %d refused as excess, %d failed otherwise (no connection)",
		conns, tn.trs[0].Rejections(RejectConnPerIdentity), held, exhausted.Load(), other.Load())
	require.LessOrEqual(t, held, int64(lim.MaxConnsPerIdentity*maxInboundSendsPerConn), "slots the impostor held")
}

// A flood of idle TCP connections without a certificate, from many source
// addresses, never holds more than the caps, each costs at most the
// handshake timeout, and a member still connects during the flood.
func TestIdleConnectionFlood_BoundedAndMembersStillConnect(t *testing.T) {
	t.Parallel()
	lim := Limits{MaxPendingConns: 64, MaxPendingPerSource: 8, HandshakeTimeout: 2 * time.Second}
	tn := newTestNet(t, 2, func(i int, o *Options) { o.Limits = lim })
	tr := tn.trs[0]
	lim = tr.opts.Limits // with defaults

	const sources, perSource = 50, 40 // 2,000 connections
	var mu sync.Mutex
	var flood []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range flood {
			c.Close()
		}
	}()
	maxOpen, maxPending := 0, 0
	sample := func() {
		s := tr.ConnStats()
		maxOpen, maxPending = max(maxOpen, s.Open), max(maxPending, s.Pending)
	}
	dialErrs := 0
	for s := range sources {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(s+1))}, Timeout: 5 * time.Second}
		for range perSource {
			c, err := d.Dial("tcp", tn.peers[0].Addr)
			if err != nil {
				dialErrs++
				continue
			}
			mu.Lock()
			flood = append(flood, c)
			mu.Unlock()
		}
		sample()
	}
	sample()

	// During the flood (the connections are all still open on our side), a
	// member connects and is heard.
	require.Equal(t, codes.OK, rpcCodes(tn.clientAs(t, "n2", nil, ""))["Send"], "the member's Send during the flood")
	sample()

	// Every connection without a handshake is closed by the timeout.
	waitFor(t, 30*time.Second, "every idle connection to be closed", func() bool {
		sample()
		return tr.ConnStats().Pending == 0
	})
	t.Logf("flood: %d connections dialled (%d dial errors); at most %d open and %d pending at once on the node; rejected: %d per source, %d evicted, %d handshake timeouts, %d failed handshakes",
		len(flood), dialErrs, maxOpen, maxPending, tr.Rejections(RejectPendingPerSource), tr.Rejections(RejectPendingEvicted),
		tr.Rejections(RejectHandshakeTimedOut), tr.Rejections(RejectHandshakeFailed))
	require.LessOrEqual(t, maxPending, lim.MaxPendingConns)
	require.LessOrEqual(t, maxOpen, lim.MaxPendingConns+4, "open: the pending cap plus the members' and the test client's connections")
	require.Positive(t, tr.Rejections(RejectPendingPerSource))
	require.Positive(t, tr.Rejections(RejectHandshakeTimedOut))
}

// Over MaxConnsPerSource and MaxConns, new connections are closed at once.
func TestConnectionCaps_PerSourceAndTotal(t *testing.T) {
	t.Parallel()
	lim := Limits{MaxConns: 20, MaxConnsPerSource: 6, MaxPendingPerSource: 100, MaxPendingConns: 100, HandshakeTimeout: time.Minute}
	tn := newTestNet(t, 2, func(i int, o *Options) { o.Limits = lim })
	tr := tn.trs[0]
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for s := range 5 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(s+1))}}
		for range 10 {
			c, err := d.Dial("tcp", tn.peers[0].Addr)
			require.NoError(t, err)
			conns = append(conns, c)
		}
	}
	waitFor(t, 10*time.Second, "every connection to be admitted or refused", func() bool {
		return uint64(tr.ConnStats().Open)+tr.Rejections(RejectConnPerSource)+tr.Rejections(RejectConnTotal) >= 50+1
	})
	s := tr.ConnStats()
	t.Logf("open %d (pending %d); refused %d per source, %d total", s.Open, s.Pending, tr.Rejections(RejectConnPerSource), tr.Rejections(RejectConnTotal))
	require.LessOrEqual(t, s.Open, lim.MaxConns)
	require.Positive(t, tr.Rejections(RejectConnPerSource))
	require.Positive(t, tr.Rejections(RejectConnTotal))
}

// gRPC's own log lines pass through a per-kind budget: a flood of errors
// that differ only in addresses and numbers (what a network makes gRPC
// write) costs a few lines and a count, however many there are.
func TestGRPCLog_BoundedPerKindAndDefaultSeverity(t *testing.T) {
	var out syncBuffer
	g := newGRPCLogger(&out, func(string) string { return "" }) // gRPC's default: errors only
	const n = 10000
	for i := range n {
		g.Infof("[transport] handshake from 127.0.0.%d:%d failed", i%250, 40000+i)
		g.WarningDepth(1, "[transport] stream error", i)
		g.ErrorDepth(1, fmt.Sprintf("[transport] Client received GoAway from 10.0.%d.%d with debug data %q", i%250, i%7, "too_many_pings"))
	}
	lines := strings.Count(out.String(), "\n")
	t.Logf("%d error lines (and as many info and warning lines, below the default severity) wrote %d lines, %d bytes", n, lines, len(out.String()))
	require.Equal(t, grpcLogBurst, lines, "one kind's burst; info and warning not written")
	require.NotContains(t, out.String(), "handshake from")
	require.Contains(t, out.String(), "Client received GoAway")

	// GRPC_GO_LOG_SEVERITY_LEVEL=info writes info lines too, bounded the
	// same way.
	out = syncBuffer{}
	g = newGRPCLogger(&out, func(k string) string {
		if k == "GRPC_GO_LOG_SEVERITY_LEVEL" {
			return "info"
		}
		return ""
	})
	for i := range n {
		g.Infof("[transport] handshake from 127.0.0.%d:%d failed", i%250, 40000+i)
	}
	require.Equal(t, grpcLogBurst, strings.Count(out.String(), "\n"))
}
