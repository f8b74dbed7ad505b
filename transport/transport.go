// Package transport carries raft messages between raftelect nodes over gRPC
// with mutual TLS.
//
// Outbound, each peer has two lanes, each a bounded queue drained by its own
// goroutine: a control lane (heartbeats, votes, responses) and a data lane
// (log appends and snapshots). The raft Ready loop only enqueues: Send never
// blocks and never waits for a peer, so one silent peer cannot delay
// messages to another, and a slow append cannot delay a heartbeat to the same
// peer. A full queue drops the message and counts it; raft retransmits.
// Each lane sends its batches on one long-lived gRPC stream, one request in
// flight, each answer due within the lane's timeout by the lane's own timer
// (stream.go).
//
// Inbound, the gRPC handler checks the caller's certificate against every
// message's From, checks the message (see inbound_validator.go) and hands it
// to the Handler, which steps it into raft.
//
// Both ways, every Send and its answer carry the digest of the node's
// configuration (cluster ID, membership, timings), and nodes that disagree
// on the cluster ID, or on the membership while neither is established,
// step none of each other's raft messages (see agreement.go). The member
// set changes at runtime (SetPeers, peers.go).
package transport

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// Peer names one node of the cluster.
type Peer struct {
	ID   uint64
	Name string
	Addr string // host:port of its gRPC listener
	// Identity is the name its certificate carries, as CommonName or DNS
	// SAN; empty means Name. See identity.go for the rule.
	Identity string
	// PublicKeyPins, if any, are the pins (see PublicKeyPin) one of which
	// its certificate's public key must match.
	PublicKeyPins []string
}

// identity returns the name p's certificate must carry.
func (p Peer) identity() string {
	if p.Identity != "" {
		return p.Identity
	}
	return p.Name
}

// Handler is the narrow interface from the transport back into the node.
// Every method but Deliver must return at once. What a node tells its
// operators (status, check, transfer, watch) is not the transport's
// business: the node registers a service of its own for that
// (RegisterServices, RegisterOperatorService).
type Handler interface {
	// Deliver queues validated messages from peer `from` for raft, without
	// waiting for them to be stepped (the raft loop may itself be busy
	// sending to that peer), and returns the latest acknowledgement for that
	// peer: the stamp of the last batch stepped and who we followed after
	// it. It returns an error only if ctx ends before the batch is queued.
	Deliver(ctx context.Context, from uint64, msgs []*raftpb.Message, sent Stamp) (Ack, error)
	// ReportUnreachable tells raft that a send to peer id failed.
	ReportUnreachable(id uint64)
	// PeerRefused says that a connection to peer id was refused: nothing
	// listens at its address, so its process is gone (or stopped serving,
	// which a node does only after ending its lease). Unlike silence, that
	// is certain, and a follower may act on it at once.
	PeerRefused(id uint64)
	// ServeFailed says the server stopped on its own: peers now see
	// refused connections, so the node must stop acting as leader.
	ServeFailed(err error)
	// ReportSnapshot tells raft whether a snapshot reached peer id.
	ReportSnapshot(id uint64, failed bool)
	// MembershipDiffers says that peer id's member list differs from ours
	// (differs) or agrees again; each change is reported once.
	MembershipDiffers(id uint64, differs bool)
	// NotMember says that member `by` of our set refused this node as no
	// member of its set: it removed us, or never added us. The answer is
	// authenticated: it came on our connection to `by`, whose server
	// certificate identified it (without TLS, as everything, it is taken
	// on trust). It is reported once, and again only after `by` accepted
	// a Send from us in between. The node decides what follows.
	NotMember(by uint64)
	// Acked passes on peer id's acknowledgement from the answer to a Send
	// (see Ack), as the peer wrote it: the transport does not interpret
	// it. The node checks whose stamp and which leader it names.
	Acked(id uint64, ack Ack)
}

// Stamp identifies when a batch was sent: the sender's monotonic clock
// reading and the run of its process (so a restarted process never mistakes
// an echo of its predecessor's stamp for its own).
type Stamp struct {
	At          uint64 // nanoseconds since monoBase
	Incarnation uint64
}

// Ack is a receiver's acknowledgement of the last heartbeat or append batch
// it stepped from a peer: the batch's stamp, the term and leader the
// receiver followed right after stepping it, and how long after stepping it
// the receiver grants no vote (see SendResponse.ack_promise_ns).
type Ack struct {
	Stamp   Stamp
	Term    uint64
	Leader  uint64
	Promise time.Duration
}

// monoBase and incarnation make stamps: time since monoBase keeps Go's
// monotonic clock, and incarnation tells runs of the process apart.
var (
	monoBase    = time.Now()
	incarnation = func() uint64 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic(err) // crypto/rand does not fail on Linux
		}
		return binary.LittleEndian.Uint64(b[:]) | 1
	}()
)

func stampNow() Stamp {
	return Stamp{At: uint64(time.Since(monoBase)), Incarnation: incarnation}
}

// Time converts a stamp this process wrote back to the time it was sent;
// false for a stamp of another process (or of an earlier run of this one).
func (s Stamp) Time() (time.Time, bool) {
	if s.Incarnation != incarnation || s.At == 0 {
		return time.Time{}, false
	}
	return monoBase.Add(time.Duration(s.At)), true
}

// Options configure a Transport. Zero durations take the defaults below.
type Options struct {
	Self  Peer
	Peers []Peer // the other nodes at Start; SetPeers replaces them

	// Credentials for mutual TLS. Nil only with Insecure (tests, demos on
	// loopback): then the caller's identity is what it claims to be.
	Credentials *Credentials
	Insecure    bool

	// Listener to serve on; if nil, the transport listens on Self.Addr.
	Listener net.Listener

	Handler Handler
	Labels  map[string]string

	// What every member must agree on besides ClusterID (agreement.go).
	// Members lists every member as the configuration names it, this node
	// included (default: Self and Peers); Self.Addr may be a listen address
	// that differs from it. Timings are this node's election timings.
	Members []Peer
	Timings Timings
	// Established: this node's cluster is established at New (its store
	// holds the replicated membership); see SetEstablished.
	Established bool

	Logger  *slog.Logger
	Hooks   *FaultHooks
	Metrics Metrics

	// ControlTimeout bounds one RPC of the control lane, DataTimeout one of
	// the data lane. See docs/operations.md for how they are chosen.
	ControlTimeout time.Duration
	DataTimeout    time.Duration
	// MaxMessageAge: a queued message older than this when its turn comes is
	// dropped instead of sent; raft has moved on by then.
	MaxMessageAge time.Duration
	// ControlQueue and DataQueue are the lane capacities.
	ControlQueue int
	DataQueue    int
	// KeepaliveTime and KeepaliveTimeout: ping a connection idle this long,
	// close it when the ping is not answered in time.
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// MaxReconnectBackoff caps the delay between reconnect attempts.
	MaxReconnectBackoff time.Duration
	// DropLogInterval is how often dropped-message counts are logged.
	DropLogInterval time.Duration
	// MaxMessageBytes bounds one gRPC message in either direction.
	MaxMessageBytes int
	// Limits bound the peer listener's connections (limits.go); zero
	// fields take the defaults.
	Limits Limits

	// Operators are the certificate identities (CommonName or DNS SAN) of
	// operator tools, such as `raftelect status`: they may call every RPC
	// of operator services (RegisterOperatorService), never Send. A
	// certificate that names neither a member nor an operator gets nothing.
	Operators []string

	// RegisterServices, if set, registers more gRPC services on the peer
	// server before it starts serving, so that they are reached on the peer
	// port, behind the same mutual TLS: the node's operator surface (the
	// Node service, with RegisterOperatorService, which the transport
	// authorizes) and extensions such as the k8s module's cluster
	// credentials (which name their caller with CallerMember).
	RegisterServices func(grpc.ServiceRegistrar)

	// ClusterID returns the cluster ID the node has applied, "" while it
	// knows none; it is carried on every connection and compared
	// (agreement.go). Nil: never known.
	ClusterID func() string

	// Datagrams: heartbeats, their lease acknowledgements and heartbeat
	// responses also travel as UDP datagrams on the peer listener's port
	// number, sealed with keys from the TLS sessions (datagram.go), so
	// that a lost TCP segment stalls none of them. Needs Credentials; the
	// streams carry them as before whenever datagrams go unanswered.
	Datagrams bool
	// DeferAnswers (with Datagrams, on Linux): heartbeat datagrams leave
	// from a socket of their own that Go's poller does not watch, and the
	// answers wait there until the owner calls ReadAnswers, so that an
	// idle leader is not woken for each one (datagram.go). The owner must
	// call ReadAnswers often: a raft loop does before every tick and timer.
	DeferAnswers bool

	// SyncSend makes Send deliver every message synchronously on the
	// caller's goroutine, without a deadline: the behaviour of the reference
	// system before its fix. It exists only so that a test can show that the
	// asymmetric-drop test catches that bug. Never use it otherwise.
	SyncSend bool
}

// Defaults. The queue sizes are generous for an election: in steady state a
// leader has at most one heartbeat per peer in flight (heartbeats coalesce),
// and a burst of votes and responses is a handful of messages.
const (
	DefaultControlQueue        = 64
	DefaultDataQueue           = 256
	DefaultKeepaliveTime       = 10 * time.Second
	DefaultKeepaliveTimeout    = 3 * time.Second
	DefaultMaxReconnectBackoff = 2 * time.Second
	DefaultDropLogInterval     = 30 * time.Second
	DefaultMaxMessageBytes     = 4 << 20
)

// Metrics receives per-peer events. Implementations must be cheap and safe
// for concurrent use. Nil means none.
type Metrics interface {
	Sent(peer string, t raftpb.MessageType)
	Received(peer string, t raftpb.MessageType)
	Dropped(peer string, t raftpb.MessageType)
	SendFailed(peer string, err error)
	SendLatency(peer string, d time.Duration)
	// Rejected counts one refused connection, handshake or inbound RPC by
	// reason (one of the Reject constants). No peer label: a rejected
	// caller is often no member at all.
	Rejected(reason string)
}

// CertificateMetrics is implemented by Metrics that record when this node's
// certificate and its CA bundle (the earliest certificate in it) expire. A
// transport with credentials tells them at New and after every reload.
type CertificateMetrics interface {
	CertificatesLoaded(certNotAfter, caNotAfter time.Time)
}

// Transport sends and receives raft messages for one node.
type Transport struct {
	opts      Options
	log       *slog.Logger
	peers     atomic.Pointer[peerSet] // the member set (peers.go)
	setMu     sync.Mutex              // serializes SetPeers, Start and Stop
	digest    uint64
	operators map[string]bool
	rejected  rejections
	strays    chan struct{} // Send slots for RPCs on no tracked connection

	// Inbound Peer calls served: unary Sends and Streams.
	unarySends, streamsServed atomic.Uint64

	local        atomic.Pointer[localConfig] // this node's configuration description
	localMu      sync.Mutex                  // serializes rebuilding local
	localMembers []Peer                      // the members local describes; under localMu
	established  bool                        // SetEstablished; under localMu
	stopped      bool                        // under setMu
	formerList   []Peer                      // removed members, newest last; under setMu
	// refusedRemoved: the removed members whose refusal was logged.
	refusedRemoved sync.Map

	lis     net.Listener
	dgram   *datagrams // nil: no datagram heartbeats
	limiter *connLimiter
	server  *grpc.Server
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// operatorServices: services only members and operators may call
	// (RegisterOperatorService); filled before the server serves.
	operatorServices map[string]bool

	// dropLogRounds counts the drop logger's finished rounds, so a test
	// can wait for rounds instead of sleeping through intervals.
	dropLogRounds atomic.Int64
}

// New checks opts and prepares a transport; Start makes it run.
func New(opts Options) (*Transport, error) {
	if opts.Handler == nil {
		return nil, errors.New("transport: no handler")
	}
	if opts.Credentials == nil && !opts.Insecure {
		return nil, errors.New("transport: no TLS credentials (set Insecure only for tests on loopback)")
	}
	setDefault(&opts.ControlQueue, DefaultControlQueue)
	setDefault(&opts.DataQueue, DefaultDataQueue)
	setDefault(&opts.KeepaliveTime, DefaultKeepaliveTime)
	setDefault(&opts.KeepaliveTimeout, DefaultKeepaliveTimeout)
	setDefault(&opts.MaxReconnectBackoff, DefaultMaxReconnectBackoff)
	setDefault(&opts.DropLogInterval, DefaultDropLogInterval)
	setDefault(&opts.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&opts.ControlTimeout, time.Second)
	setDefault(&opts.DataTimeout, 5*time.Second)
	setDefault(&opts.MaxMessageAge, opts.ControlTimeout)
	opts.Limits.setDefaults()
	t := &Transport{
		opts:      opts,
		log:       opts.Logger,
		digest:    labelsDigest(opts.Labels),
		operators: map[string]bool{},
		strays:    make(chan struct{}, maxInboundSendsPerConn),
	}
	for _, o := range opts.Operators {
		t.operators[o] = true
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	members := opts.Members
	if len(members) == 0 {
		members = append([]Peer{opts.Self}, opts.Peers...)
	}
	t.localMembers = members
	t.established = opts.Established
	// The cluster ID is asked for at the first use (ownConfig), not here:
	// the node may not be ready to answer before New returns.
	t.local.Store(newLocalConfig("", members, opts.Timings))
	if opts.Established {
		l := t.local.Load()
		l.desc.Established = true
		l.digest = configDigest(l.desc)
	}
	set, err := t.newPeerSet(append([]Peer{opts.Self}, opts.Peers...), nil)
	if err != nil {
		return nil, err
	}
	t.peers.Store(set)
	if c := opts.Credentials; c != nil {
		// Our own certificate must identify us by the rule peers apply,
		// or every peer would refuse us: say so now, not per connection.
		if err := c.requireIdentity(set.members, opts.Self.Name, t.log); err != nil {
			return nil, err
		}
		if cm, ok := opts.Metrics.(CertificateMetrics); ok {
			c.onLoad(cm.CertificatesLoaded)
		}
	}
	return t, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Start listens, serves and starts one sender per peer lane.
func (t *Transport) Start() error {
	t.setMu.Lock()
	defer t.setMu.Unlock()
	lis := t.opts.Listener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", t.opts.Self.Addr); err != nil {
			return fmt.Errorf("listen on %s: %w", t.opts.Self.Addr, err)
		}
	}
	// Our answers (and the lease acknowledgements in them) travel as thin
	// streams too.
	lis = thinStreamListener{lis}
	t.limiter = newConnLimiter(lis, t.opts.Limits, t.reject)
	t.limiter.setMembers(t.set().members)
	t.lis = t.limiter
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.startDatagrams()

	sopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(t.opts.MaxMessageBytes),
		grpc.MaxSendMsgSize(t.opts.MaxMessageBytes),
		// Allow the clients' pings: the default policy (one ping per 5
		// minutes) answers our 10 s keepalive with GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             t.opts.KeepaliveTime / 2,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    t.opts.KeepaliveTime,
			Timeout: t.opts.KeepaliveTimeout,
		}),
		// A peer has at most two Sends in flight (one per lane) plus the
		// odd forwarded Check; an operator tool a Status or a Watch or
		// two. Anything beyond waits for a free stream.
		grpc.MaxConcurrentStreams(16),
		// Fixed flow-control windows (see windowSize).
		grpc.StaticStreamWindowSize(windowSize),
		grpc.StaticConnWindowSize(windowSize),
		// No read buffer of gRPC's own: see dial.
		grpc.ReadBufferSize(0),
		// Identify the caller once per RPC, for every service on this
		// server (CallerMember).
		grpc.ChainUnaryInterceptor(t.intercept),
		grpc.ChainStreamInterceptor(t.interceptStream),
		// The TLS handshake and the HTTP/2 preface must be done within
		// this; gRPC's default, 120 s, lets idle connections without a
		// certificate pile up (see limits.go).
		grpc.ConnectionTimeout(t.opts.Limits.HandshakeTimeout),
	}
	creds := insecure.NewCredentials()
	if t.opts.Credentials != nil {
		creds = credentials.NewTLS(t.opts.Credentials.serverConfig())
	}
	sopts = append(sopts, grpc.Creds(limitedCreds{TransportCredentials: creds, l: t.limiter}))
	t.server = grpc.NewServer(sopts...)
	pb.RegisterPeerServer(t.server, &peerServer{t: t})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(t.server, hs)
	if t.opts.RegisterServices != nil {
		t.opts.RegisterServices(serviceRegistrar{t})
	}

	for _, p := range t.set().byID {
		if err := t.startPeer(p); err != nil {
			t.cancel()
			t.closeConns()
			lis.Close()
			if t.dgram != nil {
				t.dgram.conn.Close()
			}
			t.wg.Wait()
			return err
		}
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if err := t.server.Serve(t.limiter); err != nil && !errors.Is(err, grpc.ErrServerStopped) && t.ctx.Err() == nil {
			t.log.Error("gRPC server stopped", "err", err)
			t.opts.Handler.ServeFailed(err)
		}
	}()
	t.wg.Add(1)
	go t.runDropLogger()
	return nil
}

// windowSize is the HTTP/2 flow-control window of every stream and
// connection, both ways: HTTP/2's default, but fixed. With gRPC's default,
// dynamic windows, each side estimates the bandwidth-delay product by
// answering data with a PING of its own (bdpEstimator), which on an idle
// cluster is a PING and its ack per heartbeat each way: ~80 of the ~180
// bytes a heartbeat and its answer cost on a stream
// (BenchmarkLane_Heartbeat). Nothing here needs a larger window: appends
// are at most MaxAppendBytes, snapshots carry no data.
const windowSize = 64 << 10

// dial makes a ClientConn to p: its primary one, or the spare one for
// hedged heartbeats.
func (t *Transport) dial(p *peer, primary bool) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if t.opts.Credentials != nil {
		// The member table of the moment of each handshake: the set
		// may change while the connection lives.
		creds = credentials.NewTLS(t.opts.Credentials.clientConfig(func(leaf *x509.Certificate) error {
			if err := t.set().members.check(leaf, p.Name); err != nil {
				return fmt.Errorf("peer %s: %w", p.Name, err)
			}
			return nil
		}))
	}
	bo := backoff.DefaultConfig
	// A short first delay: when a peer's process dies, the first redial
	// can still reach its closing listener and fail with a reset rather
	// than a refusal; the next one, milliseconds later, is refused, and
	// that is how followers learn the leader is gone (watchConn). Later
	// delays grow (x1.6, jittered) to MaxReconnectBackoff.
	bo.BaseDelay = 10 * time.Millisecond
	bo.MaxDelay = t.opts.MaxReconnectBackoff
	return grpc.NewClient(p.Addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return t.dialPeer(ctx, p, addr, primary)
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                t.opts.KeepaliveTime,
			Timeout:             t.opts.KeepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: t.opts.ControlTimeout}),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(t.opts.MaxMessageBytes),
			grpc.MaxCallSendMsgSize(t.opts.MaxMessageBytes),
		),
		grpc.WithUserAgent("raftelect/"+t.opts.Self.Name),
		grpc.WithStaticStreamWindowSize(windowSize),
		// Never idle: a follower's connections to its leader carry no
		// RPC for as long as the cluster is quiet (heartbeat answers ride
		// the leader's streams), and the spare connection none while the
		// link is healthy; gRPC's default (30 minutes) would close them
		// and make the next heartbeat or hedge wait for a handshake.
		grpc.WithIdleTimeout(0),
		grpc.WithStaticConnWindowSize(windowSize),
		// No read buffer of gRPC's own (32 KB per connection): TLS
		// buffers a whole record already, and a leader holds two
		// connections to every peer (docs/benchmarks.md, "Idle, heartbeat
		// bytes and loss: the second pass").
		grpc.WithReadBufferSize(0),
	)
}

// watchConn reconnects at once when the connection to p drops, instead of
// at the next message: a follower sends nothing to a silent leader, and this
// is how it learns within milliseconds that the leader's process died (the
// new dial is refused). Failed dials back off as gRPC's reconnect policy says.
//
// Each time the connection becomes ready it also sends the peer a hello (an
// empty Send with our labels): a peer that had given up on us for a backoff
// period reconnects at once, so a restarted node rejoins within a round trip.
func (t *Transport) watchConn(p *peer) {
	defer t.wg.Done()
	for {
		state := p.conn.GetState()
		switch state {
		case connectivity.Idle:
			p.conn.Connect()
		case connectivity.Ready:
			// A new connection: the peer may have been upgraded to
			// a release with streams since we fell back to unary Sends.
			p.unary.Store(false)
			t.hello(p)
		}
		if !p.conn.WaitForStateChange(p.ctx, state) {
			return
		}
	}
}

// hello tells p we are here; the answer updates reachability and RTT, and
// carries p's configuration for the agreement check (agreement.go). Two
// followers exchange no raft messages, so the hello may be the only Send
// between them: while the connection stays ready, it is sent again (every
// ControlTimeout) until p has answered it.
func (t *Transport) hello(p *peer) {
	for {
		p.sendLabels.Store(true)
		p.sendConfig.Store(true)
		t.send(p, nil, t.opts.ControlTimeout)
		if p.reachable.Load() || p.agreement.Load() != nil {
			return
		}
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(t.opts.ControlTimeout):
		}
		if p.conn.GetState() != connectivity.Ready {
			return // watchConn says hello again when it is
		}
	}
}

// Addr returns the address the transport listens on.
func (t *Transport) Addr() net.Addr { return t.lis.Addr() }

// Stop stops serving and sending; every goroutine has ended when it returns.
// Queued messages are discarded.
func (t *Transport) Stop() {
	t.setMu.Lock()
	t.stopped = true
	t.setMu.Unlock()
	if t.cancel == nil {
		return
	}
	t.cancel()
	t.server.Stop() // ends in-flight handlers' contexts; no graceful drain needed for raft
	if t.dgram != nil {
		t.dgram.conn.Close()
	}
	t.closeConns()
	t.wg.Wait()
}

func (t *Transport) closeConns() {
	for _, p := range t.set().byID {
		closeAnswers(p)
		p.spareMu.Lock()
		if p.spare != nil {
			p.spare.Close()
		}
		p.spareMu.Unlock()
		if p.conn != nil {
			p.conn.Close()
		}
	}
}

// Send queues raft messages for their peers and returns at once. Messages to
// unknown peers are dropped.
func (t *Transport) Send(msgs []*raftpb.Message) {
	now := time.Now()
	set := t.set()
	for _, m := range msgs {
		p := set.byID[m.GetTo()]
		if p == nil {
			continue
		}
		if !t.mayDeliver(p, m) {
			continue
		}
		if t.opts.SyncSend {
			// On the raft loop, in order, with a long deadline: like the
			// reference system before its fix, where only keepalive (some
			// 13 s) ended a send to a silent peer.
			t.send(p, []*raftpb.Message{m}, 4*t.opts.ControlTimeout)
			continue
		}
		q := p.data
		if isControl(m.GetType()) {
			if t.dgram != nil && m.GetType() == raftpb.MsgHeartbeat && t.sendDatagram(p, m, now) {
				continue // a datagram was answered lately: it spares the stream
			}
			q = p.control
			if t.hedges(p, m) {
				p.hedge.put(m, now)
			}
		}
		if !q.put(m, now) {
			if p.removed.Load() {
				// It left the member set as we queued: its queues
				// are closed, and its metrics forgotten.
				if m.GetType() == raftpb.MsgSnap {
					t.opts.Handler.ReportSnapshot(p.ID, true)
				}
				continue
			}
			p.drops.Add(1)
			if t.opts.Metrics != nil {
				t.opts.Metrics.Dropped(p.Name, m.GetType())
			}
			if m.GetType() == raftpb.MsgSnap {
				t.opts.Handler.ReportSnapshot(p.ID, true)
			}
		}
	}
}

// runLane drains one lane of one peer until Stop.
func (t *Transport) runLane(p *peer, q *sendQueue, client pb.PeerClient, timeout time.Duration) {
	defer t.wg.Done()
	ls := laneStream{peer: p, keys: q == p.control}
	defer ls.close()
	var batch []*raftpb.Message
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-q.ready:
		}
		now := time.Now()
		batch = batch[:0]
		for _, qm := range q.take() {
			if now.Sub(qm.at) > t.opts.MaxMessageAge {
				p.expired.Add(1)
				continue
			}
			batch = append(batch, qm.msg)
		}
		// A lane may hold more than one request may carry (queues can be
		// configured up to 65536): split, so that a correct sender never
		// meets the receiver's caps (see ValidateRequest).
		for rest := batch; len(rest) > 0; {
			n := sendChunk(rest, t.opts.MaxMessageBytes)
			if q == p.control {
				if !p.spareReady.Load() && hasHeartbeat(rest[:n]) {
					t.openSpare(p)
				}
				p.controlBusy.Store(int64(time.Since(monoBase)))
			}
			err := t.sendOnLane(p, &ls, client, q == p.hedge, rest[:n], timeout)
			if q == p.control {
				p.controlBusy.Store(0)
				p.wanted.Store(int64(time.Since(monoBase)))
				if err != nil {
					t.controlFailed(p)
				}
			}
			rest = rest[n:]
		}
		clear(batch)
	}
}

// sendChunk returns how many of msgs (at least one) the next request
// carries: at most MaxMessagesPerSend, and no more bytes than half the
// gRPC message limit, which leaves the labels (at most 32 x 1 KiB) and the
// envelope plenty of room. A single larger message goes alone and fails at
// gRPC's check: raft makes none (MaxAppendBytes, snapshots carry no data).
func sendChunk(msgs []*raftpb.Message, maxBytes int) int {
	if len(msgs) == 1 {
		return 1 // the usual batch, one heartbeat: nothing to size
	}
	n, size := 0, 0
	for n < len(msgs) && n < MaxMessagesPerSend {
		size += proto.Size(msgs[n])
		if n > 0 && size > maxBytes/2 {
			break
		}
		n++
	}
	return n
}

// send delivers one batch to p by a unary Send with a deadline, reports the
// outcome to raft and returns the error. The lanes send on their streams
// (sendOnLane); the hello, SyncSend and lanes to a peer without Stream use
// this.
func (t *Transport) send(p *peer, batch []*raftpb.Message, timeout time.Duration) error {
	req, own := t.request(p, batch)
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	start := time.Now()
	resp, err := p.client.Send(ctx, req)
	cancel()
	t.sent(p, batch, req, own, resp, err, time.Since(start))
	return err
}

// request builds the request that carries batch to p, in full.
func (t *Transport) request(p *peer, batch []*raftpb.Message) (*pb.SendRequest, *localConfig) {
	sent := stampNow()
	own := t.ownConfig()
	req := &pb.SendRequest{
		Messages: batch, LabelsDigest: t.digest, Stamp: sent.At, Incarnation: sent.Incarnation,
		ConfigDigest: own.digest, KnownConfigDigest: p.knownDigest.Load(),
	}
	if p.sendLabels.Load() {
		req.Labels = t.opts.Labels
	}
	if p.sendConfig.Load() || p.sentDigest.Load() != own.digest {
		req.Config = own.desc
	}
	return req, own
}

// sent reports the outcome of one request to p (its answer resp, in full,
// or err) to raft, the lease and the agreement check.
func (t *Transport) sent(p *peer, batch []*raftpb.Message, req *pb.SendRequest, own *localConfig, resp *pb.SendResponse, err error, rtt time.Duration) {
	h := t.opts.Handler
	if err != nil {
		p.failures.Add(1)
		if p.reachable.Swap(false) {
			// Log the transition only: a dead peer costs one line, not one
			// per heartbeat. Counters and metrics carry the rest.
			t.log.Warn("peer unreachable", "peer", p.Name, "err", err)
		}
		if t.opts.Metrics != nil {
			t.opts.Metrics.SendFailed(p.Name, err)
		}
		if p.ctx.Err() == nil {
			h.ReportUnreachable(p.ID)
		}
		for _, m := range batch {
			if m.GetType() == raftpb.MsgSnap {
				h.ReportSnapshot(p.ID, true)
			}
		}
		t.refusedAsNonMember(p, own, err)
		return
	}
	p.notMember.Store(false)
	if !p.reachable.Swap(true) && p.failures.Load() > 0 {
		t.log.Info("peer reachable again", "peer", p.Name, "rtt", rtt)
	}
	p.rtt.Store(int64(rtt))
	if m := p.minRTT.Load(); m == 0 || int64(rtt) < m {
		p.minRTT.Store(int64(rtt))
	}
	p.lastContact.Store(time.Now().UnixNano())
	p.sendLabels.Store(resp.GetNeedLabels())
	p.sendConfig.Store(resp.GetNeedConfig())
	if req.Config != nil && !resp.GetNeedConfig() {
		p.sentDigest.Store(own.digest)
	}
	if err := t.agreeOutbound(p, own, resp); err != nil {
		t.log.Warn("peer sent an invalid configuration description", "peer", p.Name, "err", err)
	}
	if resp.GetRefused() != "" {
		// Reachable, but it did not step the batch (the reason was logged
		// once, when the verdict on its configuration changed).
		for _, m := range batch {
			if m.GetType() == raftpb.MsgSnap {
				h.ReportSnapshot(p.ID, true)
			}
		}
		return
	}
	if m := t.opts.Metrics; m != nil {
		m.SendLatency(p.Name, rtt)
		for _, msg := range batch {
			m.Sent(p.Name, msg.GetType())
		}
	}
	for _, m := range batch {
		if m.GetType() == raftpb.MsgSnap {
			h.ReportSnapshot(p.ID, false)
		}
	}
	if resp.GetAckStamp() != 0 {
		h.Acked(p.ID, Ack{
			Stamp: Stamp{At: resp.GetAckStamp(), Incarnation: resp.GetAckIncarnation()},
			Term:  resp.GetAckTerm(), Leader: resp.GetAckLeader(), Promise: time.Duration(resp.GetAckPromiseNs()),
		})
	}
}

// runDropLogger logs, every DropLogInterval, how many messages each peer's
// queues dropped since the last time. A healthy cluster drops nothing and
// logs nothing.
func (t *Transport) runDropLogger() {
	defer t.wg.Done()
	tick := time.NewTicker(t.opts.DropLogInterval)
	defer tick.Stop()
	last := map[uint64][2]uint64{}
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		}
		for id, p := range t.set().byID {
			now := [2]uint64{p.drops.Load(), p.expired.Load()}
			prev := last[id]
			if now != prev {
				t.log.Warn("dropped messages to peer", "peer", p.Name,
					"queue_full", now[0]-prev[0], "expired", now[1]-prev[1],
					"interval", t.opts.DropLogInterval)
			}
			last[id] = now
		}
		t.dropLogRounds.Add(1)
	}
}

// peer is the transport's state for one other node.
type peer struct {
	Peer
	// ctx ends when the transport stops or the peer leaves the member set
	// (removed is set then); set with conn and client by startPeer.
	ctx     context.Context
	cancel  context.CancelFunc
	removed atomic.Bool
	conn    *grpc.ClientConn
	client  pb.PeerClient
	control *sendQueue
	data    *sendQueue

	// Hedged heartbeats (stream.go): the spare connection (made by the
	// control lane when it first sends a heartbeat), its lane, when
	// the control lane's request in flight was sent (monoBase nanoseconds,
	// 0: none), the shortest round trip seen and the heartbeats hedged.
	spareMu     sync.Mutex
	spare       *grpc.ClientConn // guarded by spareMu
	spareTried  bool             // guarded by spareMu
	spareReady  atomic.Bool      // the spare and its lane run
	hedge       *sendQueue
	controlBusy atomic.Int64
	minRTT      atomic.Int64
	hedged      atomic.Uint64

	// Stalled paths (path.go): the connections under the ClientConns and
	// the prober's hand-over; when the control lane last sent (monoBase
	// ns); how often a stalled connection was replaced.
	path     pathState
	wanted   atomic.Int64
	rerouted atomic.Uint64

	drops       atomic.Uint64 // queue full
	expired     atomic.Uint64 // too old to send
	failures    atomic.Uint64
	reachable   atomic.Bool
	rtt         atomic.Int64
	lastContact atomic.Int64  // unix nanos of the last message either way
	sendLabels  atomic.Bool   // the peer asked for our labels
	unary       atomic.Bool   // the peer has no Stream method: lanes send unary Sends
	streams     atomic.Uint64 // lane streams opened to it
	// dialed: the local address of the primary connection's latest TCP
	// connection (path.primary's, set with it in dialled), kept apart so
	// that the lanes' check before every send takes no lock; a lane stream
	// on an older one is dead (roundTrip).
	dialed atomic.Pointer[string]

	// Datagram heartbeats (datagram.go): the session our datagrams to it
	// are sealed under, and when (monoBase ns) one was last answered and
	// we last sent one.
	dgOut              atomic.Pointer[datagramOut]
	answers            atomic.Pointer[answerSocket] // Options.DeferAnswers: where its answers wait
	dgAnswered, dgSent atomic.Int64

	// Agreement (agreement.go). agreement is the verdict on the peer's
	// configuration; confMu guards updating it from the peer's last full
	// description (remoteConfig, with its digest).
	sendConfig   atomic.Bool   // send our configuration in full
	sentDigest   atomic.Uint64 // our digest the peer last received in full
	knownDigest  atomic.Uint64 // the peer's digest we have in full
	agreement    atomic.Pointer[agreement]
	refusedOut   atomic.Uint64 // raft messages to it not sent: it disagrees
	probed       atomic.Int64  // when it was last sent our description instead (monoBase ns)
	notMember    atomic.Bool   // it refused us as no member; the node was told
	confMu       sync.Mutex
	remoteConfig *pb.NodeConfig
	remoteDigest uint64

	mu     sync.Mutex
	labels map[string]string
	digest uint64
}

// PeerStats is the transport's view of one peer.
type PeerStats struct {
	Name        string
	Addr        string
	Reachable   bool
	LastContact time.Time // zero if never
	RTT         time.Duration
	QueueDepth  int
	Drops       uint64 // queue full plus expired before sending
	SendErrors  uint64
	Labels      map[string]string
	// ConfigMismatch lists how the peer's configuration differs from this
	// node's (MismatchKinds); ConfigDetail says it in words. ConfigUnknown:
	// the peer's configuration has not been seen yet.
	ConfigMismatch []string
	ConfigDetail   string
	ConfigUnknown  bool
	// DatagramHeartbeats: a heartbeat datagram to the peer was answered
	// within ControlTimeout, so heartbeats to it go as datagrams alone
	// (datagram.go). Only a leader sends heartbeats.
	DatagramHeartbeats bool
}

// Stats returns the state of every peer, sorted by name.
func (t *Transport) Stats() []PeerStats {
	set := t.set()
	out := make([]PeerStats, 0, len(set.byID))
	for _, p := range set.byID {
		s := PeerStats{
			Name:       p.Name,
			Addr:       p.Addr,
			Reachable:  p.reachable.Load(),
			RTT:        time.Duration(p.rtt.Load()),
			QueueDepth: p.control.len() + p.data.len() + p.hedge.len(),
			Drops:      p.drops.Load() + p.expired.Load(),
			SendErrors: p.failures.Load(),
		}
		if a := p.dgAnswered.Load(); a != 0 && time.Duration(int64(time.Since(monoBase))-a) < t.opts.ControlTimeout {
			s.DatagramHeartbeats = true
		}
		if lc := p.lastContact.Load(); lc != 0 {
			s.LastContact = time.Unix(0, lc)
		}
		p.mu.Lock()
		s.Labels = maps.Clone(p.labels)
		p.mu.Unlock()
		if a := p.agreement.Load(); a != nil {
			s.ConfigMismatch, s.ConfigDetail = slices.Clone(a.kinds), a.detail
		} else {
			s.ConfigUnknown = true
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b PeerStats) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Connected reports whether the connection to peer id is up now. It drops
// within milliseconds of the peer's process stopping (its server closes the
// connection), before any send to it fails: a leader choosing whom to hand
// over to uses it to skip a peer that just went away.
func (t *Transport) Connected(id uint64) bool {
	p := t.set().byID[id]
	return p != nil && p.conn != nil && p.conn.GetState() == connectivity.Ready
}

// reject counts one rejection.
func (t *Transport) reject(reason string) {
	t.rejected.add(reason)
	if m := t.opts.Metrics; m != nil {
		m.Rejected(reason)
	}
}

// Rejections returns how many rejections of the reason there were.
func (t *Transport) Rejections(reason string) uint64 { return t.rejected.get(reason) }

// ConnStats counts the peer listener's open connections now.
func (t *Transport) ConnStats() ConnStats {
	if t.limiter == nil {
		return ConnStats{}
	}
	return t.limiter.stats()
}

// PeerConn returns the connection to the named peer, for calls of the
// node's own services (a Check forwarded to the leader).
func (t *Transport) PeerConn(name string) (grpc.ClientConnInterface, bool) {
	p := t.set().byName[name]
	if p == nil || p.conn == nil {
		return nil, false
	}
	return p.conn, true
}

// labelsDigest is a stable 64-bit FNV-1a digest of a label set.
func labelsDigest(labels map[string]string) uint64 {
	h := fnv.New64a()
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(labels[k]))
		h.Write([]byte{0})
	}
	return h.Sum64()
}
