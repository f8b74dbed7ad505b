// Package election elects one leader among the replicas of an application
// running in different clusters, regions or data centres, with no shared
// store: each replica embeds a raft node (go.etcd.io/raft/v3) and the nodes
// talk over gRPC with mutual TLS.
//
// What it guarantees (see docs/safety.md for the argument and assumptions):
//   - At most one node holds the leader lease at any instant, provided clocks
//     run at rates within LeaseDriftMargin of each other and raft state is
//     persisted (or the vote guard covers its loss).
//   - The context handed to leader-only work is cancelled when the lease
//     ends, before any other node can be elected.
//   - Every lease comes with a fencing token, the raft term, which strictly
//     increases from one holder to the next: pass it to external systems so
//     they reject a stale leader's writes.
//
// What it does not: it does not stop a leader process that ignores its
// context, and it cannot bound how long a paused process (GC, SIGSTOP) takes
// to notice its lease ended; fence external writes with the token.
package election

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/raftelect/raftelect/internal/logbound"
)

// Lease is a leader's right to act.
type Lease struct {
	Holder string
	// Token is the fencing token: the raft term of the leadership. It
	// strictly increases from one holder to the next.
	Token uint64
	// Start is when this node began to hold the lease (local clock).
	Start time.Time
}

// LeaderInfo names the leader a node knows of.
type LeaderInfo struct {
	Name string // "" if no leader is known
	ID   uint64
	Term uint64
}

// Elector is one node of a raftelect cluster.
type Elector struct {
	cfg           Config
	log           *slog.Logger
	self          uint64
	tick          time.Duration
	electionTicks int
	// electionTimeout is the effective one: electionTicks ticks.
	electionTimeout time.Duration

	mu       sync.Mutex
	routines []func(context.Context, Lease) error
	started  bool

	view       atomic.Pointer[nodeView]       // published by the raft loop
	membership atomic.Pointer[membershipView] // members.go
	loop       atomic.Pointer[raftLoop]       // the running loop, nil when not running
	hub        *eventHub                      // Events readers
}

// A kind of log line may be written logBurst times at once, then once per
// logEvery: enough for every transition of a healthy cluster, a few lines a
// minute for a kind a hostile or broken peer repeats.
const (
	logBurst = 10
	logEvery = 6 * time.Second
)

// New validates cfg and returns a node ready to Run.
func New(cfg Config) (*Elector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	// Our own certificate now, before the caller opens anything else: a
	// node every peer would refuse must not start (Run checks again, the
	// files may change in between). It matches ErrCertificate.
	if err := cfg.CheckCertificate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ticks := int(math.Round(float64(cfg.ElectionTimeout) / float64(cfg.HeartbeatInterval)))
	e := &Elector{
		cfg:             cfg,
		log:             cfg.Logger,
		self:            NodeID(cfg.Name),
		tick:            cfg.HeartbeatInterval,
		electionTicks:   ticks,
		electionTimeout: time.Duration(ticks) * cfg.HeartbeatInterval,
		hub:             newEventHub(cfg.Name),
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	// Every line the network can trigger is rate-limited per kind: a
	// flood of bad messages costs a few lines and a count, not the disk.
	e.log = slog.New(logbound.New(e.log.Handler(), logBurst, logEvery)).With("node", cfg.Name)
	mv := &membershipView{names: map[uint64]string{}, changed: make(chan struct{})}
	for _, m := range cfg.configuredMembers() {
		mv.names[m.ID] = m.Name
		mv.members = append(mv.members, memberFromCore(m))
	}
	slices.SortFunc(mv.members, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	e.membership.Store(mv)
	// The operator's surface (node_service.go) on the peer port, before
	// the application's own services.
	e.cfg.RegisterServices = e.registerNodeService(cfg.RegisterServices)
	e.view.Store(&nodeView{})
	return e, nil
}

// RunWhileLeader registers work to run only while this node holds the lease.
// fn is started each time the lease begins, with a context cancelled when it
// ends. If fn returns an error while the lease holds, it is started again
// after a backoff; if it returns nil, it is done until the next lease. Run
// waits for every fn to return before it returns, so fn must honour ctx.
// Register before Run.
func (e *Elector) RunWhileLeader(fn func(ctx context.Context, lease Lease) error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.routines = append(e.routines, fn)
}

// Run runs the node until ctx is cancelled. A node that holds the lease then
// ends it and hands leadership to an up-to-date peer before it stops, so a
// rolling restart has no leaderless election timeout. Run returns nil after
// a clean stop, and an error if the node could not start or its storage
// failed. An Elector runs once; make a new one to start again.
func (e *Elector) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return ErrRunTwice
	}
	e.started = true
	routines := append([]func(context.Context, Lease) error(nil), e.routines...)
	e.mu.Unlock()
	// Events readers see the node's end: their channels close once what
	// the loop published has been delivered.
	defer e.hub.close()

	l, err := newRaftLoop(e, routines)
	if err != nil {
		return markStoreMismatch(markCertificate(err))
	}
	l.cbq.tap = e.hub.publish
	e.loop.Store(l)
	defer e.loop.Store(nil)
	// The store's identity is checked at start and again when the cluster
	// ID is learned from the leader.
	return markStoreMismatch(l.run(ctx))
}

// IsLeader reports whether this node holds the lease now: whether its
// leader-only work may act.
func (e *Elector) IsLeader() bool {
	v := e.view.Load()
	return v.lease != nil && time.Now().Before(v.leaseExpiry)
}

// Lease returns the lease this node holds, if any.
func (e *Elector) Lease() (Lease, bool) {
	v := e.view.Load()
	if v.lease == nil || !time.Now().Before(v.leaseExpiry) {
		return Lease{}, false
	}
	return *v.lease, true
}

// Leader returns the leader this node knows of.
func (e *Elector) Leader() LeaderInfo {
	v := e.view.Load()
	if v.lead == 0 {
		return LeaderInfo{Term: v.term}
	}
	return LeaderInfo{Name: e.name(v.lead), ID: v.lead, Term: v.term}
}

// Transfer hands leadership to the named peer ("" picks the most up-to-date
// reachable one) and waits until another node leads or ctx ends. The lease
// ends before the transfer starts. Its errors match ErrNotLeader on a node
// that is not the leader, ErrUnknownPeer for a name not in Peers,
// ErrNotRunning before Run (or after it returned), ErrStopped if the node
// stops meanwhile, and ctx's error (wrapped) if no other node leads in time.
func (e *Elector) Transfer(ctx context.Context, to string) error {
	l := e.loop.Load()
	if l == nil {
		return ErrNotRunning
	}
	var target uint64
	if to != "" {
		target = NodeID(to)
		if !e.isMember(to) {
			return fmt.Errorf("%w: cannot transfer to %q, which is not a peer of %s", ErrUnknownPeer, to, e.cfg.Name)
		}
		if target == e.self {
			return fmt.Errorf("election: cannot transfer to %q: it is this node; name another, or none to let it choose", to)
		}
	}
	if err := e.onLoop(ctx, func(l *raftLoop, now time.Time) error {
		return l.node.Transfer(now, target, l.reachablePeers())
	}); err != nil {
		return err
	}
	// Wait for the new leader: poll the published view at the tick rate.
	t := time.NewTicker(e.tick / 4)
	defer t.Stop()
	for {
		v := e.view.Load()
		if v.lead != 0 && v.lead != e.self {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("election: transfer did not complete: %w", ctx.Err())
		case <-l.stopped:
			return ErrStopped
		case <-t.C:
		}
	}
}

// Name returns this node's name.
func (e *Elector) Name() string { return e.cfg.Name }

// ElectionTimeout returns the effective election timeout: a whole number of
// heartbeat intervals, the raft tick.
func (e *Elector) ElectionTimeout() time.Duration { return e.electionTimeout }

// nodeView is the raft loop's published state, read without locks.
type nodeView struct {
	role        raft.StateType
	term        uint64
	vote        uint64
	lead        uint64
	lease       *Lease
	leaseExpiry time.Time
	leaseTime   time.Duration // the lease length an acknowledgement buys
}
