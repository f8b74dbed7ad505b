package election

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/internal/core"
	"github.com/raftelect/raftelect/storage"
	"github.com/raftelect/raftelect/transport"
)

// raftLoop is the driver of this node's core (internal/core): the one
// goroutine that feeds it events with the current time (ticks, inbound
// batches, the transport's reports, timers, user requests) and does what it
// answers, in order: report leadership events (lease, callbacks, event log),
// then hand the messages, already durable, to the transport (never
// blocking). Every decision is the core's; this file owns only the
// timers, the transport, the callbacks and the event log.
type raftLoop struct {
	e        *Elector
	node     *core.Node
	store    storage.Store
	ownStore bool
	tr       *transport.Transport
	cbq      *callbackQueue
	routines []func(context.Context, Lease) error

	inbound chan inboundBatch
	// parked: the loop waits in its select and has begun no input. Every
	// input begins by stepping the queued batches (begin), so a batch
	// queued while parked is stepped before anything else (Deliver).
	parked  atomic.Bool
	acks    peerValues[transport.Ack] // the acknowledgement we give each peer
	reports deliveryReports
	stopped chan struct{} // closed when the loop has exited
	wake    *time.Timer   // the core's next timer (Node.NextWake)
	// tick fires at the core's next tick (Node.NextTick); tickAt is what
	// it is set for (zero: not set), ticksSeen the core's tick count when
	// the loop last looked.
	tick      *time.Timer   // a function timer, which sends on ticked
	ticked    chan struct{} // capacity 1
	tickAt    time.Time
	ticksSeen uint64
	calls     chan func() // tests: run on the loop between two inputs
	changes   chan changeRequest
	self      transport.Peer // our own address and identity
	// refusedBy: the members that refused us as no member (members.go);
	// removed: why this node must stop, once it was removed.
	refusedBy map[uint64]time.Time
	removed   error
	// established: the transport was told the cluster is established
	// (core.Node.Established).
	established bool

	// leadership as last reported to the application
	role       raft.StateType
	term, vote uint64
	lead       uint64
	current    *Lease
	cancel     context.CancelFunc     // of the current lease's context
	clusterID  atomic.Pointer[string] // read by the transport
	work       sync.WaitGroup         // leader routines
	ackedAt    peerValues[time.Time]  // when we sent what each peer last acknowledged; read by Check
	// electionsHeld: the core takes no part in elections (a member's list
	// differs); read by Status.
	electionsHeld atomic.Bool
}

type inboundBatch struct {
	from    uint64
	msgs    []*raftpb.Message
	sent    transport.Stamp
	stepped chan struct{} // closed once the loop has stepped the batch
}

// inboundQueue is how many batches may wait for the raft loop. Each peer has
// at most two Sends in flight (one per lane), so this is only reached when
// the loop stalls (a slow disk); then handlers wait, bounded by their
// callers' deadlines, which pushes back on the senders.
const inboundQueue = 64

// peerValues is a map by peer that the raft loop writes and other
// goroutines read: the acknowledgement we give each peer (read by the gRPC
// handlers), when we sent what each peer last acknowledged (read by Check).
type peerValues[V any] struct {
	mu sync.Mutex
	m  map[uint64]V
}

func (b *peerValues[V]) get(peer uint64) V {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[peer]
}

func (b *peerValues[V]) set(peer uint64, v V) {
	b.mu.Lock()
	if b.m == nil {
		b.m = map[uint64]V{}
	}
	b.m[peer] = v
	b.mu.Unlock()
}

// deliveryReports collects the transport's reports for the loop without
// blocking the senders.
type deliveryReports struct {
	mu          sync.Mutex
	unreachable map[uint64]bool
	refused     map[uint64]bool
	snapshots   map[uint64]bool // peer -> failed
	differs     map[uint64]bool // peer -> its member list differs from ours
	notMember   map[uint64]bool // members that refused us as no member
	// acks: per peer, the acknowledgement with the latest stamp since the
	// loop last looked (an older one adds nothing to the lease).
	acks     map[uint64]transport.Ack
	serveErr error
	notify   chan struct{}
}

func newRaftLoop(e *Elector, routines []func(context.Context, Lease) error) (*raftLoop, error) {
	cfg := e.cfg
	l := &raftLoop{
		e:         e,
		store:     cfg.Storage,
		routines:  routines,
		inbound:   make(chan inboundBatch, inboundQueue),
		calls:     make(chan func()),
		changes:   make(chan changeRequest),
		refusedBy: map[uint64]time.Time{},
		stopped:   make(chan struct{}),
		cbq:       newCallbackQueue(cfg.Callbacks),
	}
	l.reports.unreachable = map[uint64]bool{}
	l.reports.refused = map[uint64]bool{}
	l.reports.acks = map[uint64]transport.Ack{}
	l.reports.snapshots = map[uint64]bool{}
	l.reports.differs = map[uint64]bool{}
	l.reports.notMember = map[uint64]bool{}
	l.reports.notify = make(chan struct{}, 1)
	l.wake = time.NewTimer(time.Hour)
	l.wake.Stop()
	if l.store == nil {
		l.store = storage.NewMemory()
		l.ownStore = true
	}
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails on the platforms Go supports
	node, err := core.New(core.Config{
		ID:                    e.self,
		Name:                  cfg.Name,
		Names:                 e.membership.Load().names,
		Members:               cfg.configuredMembers(),
		Join:                  cfg.Join,
		FailBackAfter:         cfg.FailBackAfter,
		Storage:               l.store,
		Tick:                  e.tick,
		ElectionTicks:         e.electionTicks,
		DriftMargin:           cfg.LeaseDriftMargin,
		FastFailoverOnRefusal: cfg.FastFailoverOnRefusal,
		ClusterID:             cfg.ClusterID,
		MaxAppendBytes:        transport.MaxAppendBytes,
		Rand:                  rand.New(rand.NewChaCha8(seed)),
		PeerClusterID:         func(id uint64) string { return l.tr.PeerClusterID(id) },
		Logger:                e.log,
		RaftLogger:            newRaftLogger(e),
		Bugs:                  core.Bugs{NoVoteGuard: cfg.internal.NoVoteGuard},
	}, time.Now())
	if err != nil {
		if l.ownStore {
			l.store.Close()
		}
		return nil, err
	}
	l.node = node
	st := node.Status()
	l.term, l.vote = st.GetTerm(), st.GetVote()
	id := node.ClusterID()
	l.clusterID.Store(&id)

	var creds *transport.Credentials
	if !cfg.Insecure {
		if creds, err = transport.LoadCredentials(cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return nil, err
		}
	}
	self := transport.Peer{ID: e.self, Name: cfg.Name}
	var others, members []transport.Peer
	for _, p := range cfg.Peers {
		tp := transport.Peer{ID: NodeID(p.Name), Name: p.Name, Addr: p.Address, Identity: p.Identity, PublicKeyPins: p.PublicKeyPins}
		members = append(members, tp)
		if p.Name == cfg.Name {
			self.Addr, self.Identity, self.PublicKeyPins = p.Address, p.Identity, p.PublicKeyPins
			continue
		}
		others = append(others, tp)
	}
	if cfg.ListenAddress != "" {
		self.Addr = cfg.ListenAddress
	}
	l.self = self
	l.established = node.Established()
	l.tr, err = transport.New(transport.Options{
		Self:        self,
		Peers:       others,
		Credentials: creds,
		Insecure:    cfg.Insecure,
		Datagrams:   !cfg.StreamHeartbeatsOnly,
		// Answers to our heartbeat datagrams wait until begin reads
		// them: an idle leader wakes for its tick only.
		DeferAnswers: true,
		Listener:     cfg.internal.Listener,
		Handler:      l,
		Labels:       cfg.Labels,
		// What every member must agree on, checked on every connection
		// (transport/agreement.go).
		Members: members,
		Timings: transport.Timings{
			Heartbeat: cfg.HeartbeatInterval, ElectionTimeout: e.electionTimeout, LeaseDriftMargin: cfg.LeaseDriftMargin,
		},
		Logger:  e.log,
		Hooks:   cfg.internal.FaultHooks,
		Metrics: toTransport(cfg.Metrics),
		// A control message that has not arrived within half an election
		// timeout cannot help keep a leader: give up and tell raft. This is
		// still many round trips on a slow WAN link, so slowness is not
		// mistaken for death. Appends may be large: they get longer.
		ControlTimeout:      e.electionTimeout / 2,
		DataTimeout:         2 * e.electionTimeout,
		MaxMessageAge:       e.electionTimeout / 2,
		ControlQueue:        cfg.ControlQueue,
		DataQueue:           cfg.DataQueue,
		KeepaliveTime:       cfg.KeepaliveTime,
		KeepaliveTimeout:    cfg.KeepaliveTimeout,
		MaxReconnectBackoff: cfg.MaxReconnectBackoff,
		DropLogInterval:     cfg.DropLogInterval,
		SyncSend:            cfg.internal.UnsafeSyncSend,
		RegisterServices:    cfg.RegisterServices,
		ClusterID:           l.currentClusterID,
		Operators:           cfg.Operators,
		Limits:              cfg.ConnectionLimits.transport(),
		Established:         l.established,
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// run is the raft loop.
func (l *raftLoop) run(ctx context.Context) (err error) {
	defer close(l.stopped)
	if l.ownStore {
		defer l.store.Close()
	}
	if err := l.tr.Start(); err != nil {
		return err
	}
	cbStop := make(chan struct{})
	go l.cbq.run(cbStop)
	defer func() {
		l.node.Shutdown(time.Now())
		l.flush()
		l.work.Wait()
		l.tr.Stop()
		close(cbStop)
		<-l.cbq.done
		l.logEvent(eventlog.KindStop)
	}()
	l.logEvent(eventlog.KindStart)
	l.e.publish(l)

	// The first tick: a heartbeat after the start. A function timer, not a
	// channel one: the runtime keeps a channel timer out of its heap while
	// no goroutine waits on the channel, so while the loop works its tick
	// would be unknown to a thread going to sleep in the poller, and the
	// loop's wait would then wake that thread again (rearmTick).
	l.ticked = make(chan struct{}, 1)
	l.tick = time.AfterFunc(l.e.tick, func() {
		select {
		case l.ticked <- struct{}{}:
		default: // one pending is as good as two
		}
	})
	defer l.tick.Stop()
	defer l.wake.Stop()
	l.resetWake()

	done := ctx.Done()
	var stopBy <-chan time.Time // set once a graceful stop is under way
	for {
		// Every input carries the time it is handled at, never the time a
		// timer fired: a late tick must not make the core think it is
		// earlier than it is (the lease compares now with its end).
		l.parked.Store(true)
		select {
		case <-done:
			if err = l.begin(); err != nil {
				break
			}
			done = nil
			if !l.node.StartGracefulStop(time.Now(), l.reachablePeers()) {
				return nil
			}
			stopBy = time.After(l.e.electionTimeout)
		case <-stopBy:
			l.e.log.Warn("leadership transfer did not complete before stop")
			return nil
		case <-l.ticked:
			l.rearmTick()
			err = l.begin()
			// A heartbeat stepped just now (begin) may have ticked and
			// moved the next tick: two ticks closer than a heartbeat would
			// shorten this node's promise.
			if now := time.Now(); err == nil && !now.Before(l.node.NextTick()) {
				err = l.node.Tick(now)
			}
		case b := <-l.inbound:
			l.parked.Store(false)
			err = l.step(b)
		case <-l.reports.notify:
			if err = l.begin(); err == nil {
				err = l.applyReports()
			}
		case <-l.wake.C:
			err = l.begin()
			if err == nil {
				err = l.node.Wake(time.Now())
			}
		case req := <-l.changes:
			if err = l.begin(); err == nil {
				req.result <- req.f(l, time.Now())
			} else {
				req.result <- err
			}
		case f := <-l.calls:
			if err = l.begin(); err == nil {
				f()
			}
		}
		if t := l.node.Ticks(); err == nil && t != l.ticksSeen {
			l.ticksSeen = t
			if len(l.refusedBy) > 0 {
				if err = l.notMemberVerdict(time.Now()); err != nil {
					l.removed = err
				}
			}
		}
		if err == nil {
			err = l.removed
		}
		if err != nil {
			return err
		}
		if done == nil {
			if l.lead != l.e.self && l.lead != 0 {
				return nil // graceful stop: someone else leads now
			}
			if err := l.node.RetargetTransfer(time.Now(), l.reachablePeers()); err != nil {
				return err
			}
		}
		l.flush()
		l.resetWake()
		l.resetTick()
	}
}

// begin ends the loop's wait: every input steps the batches already queued
// first. After a stall select picks at random among ready cases, and a
// follower could campaign (its timer) while its leader's heartbeat already
// waits in the queue; and Deliver, which finds the loop parked, relies on its
// batch being stepped before any other work (no timer needed).
//
// It also takes the answers to our heartbeat datagrams that have arrived
// (transport.Options.DeferAnswers) and applies them at once: a timer's
// deadline, above all the lease's end, is judged with every answer that
// has arrived by then, exactly as if each had woken the loop.
func (l *raftLoop) begin() error {
	l.parked.Store(false)
	if err := l.stepQueued(); err != nil {
		return err
	}
	if l.tr.ReadAnswers() == 0 {
		return nil
	}
	// Acked signalled reports.notify for what applyReports takes now;
	// take the signal first, so that a report that comes after still
	// signals.
	select {
	case <-l.reports.notify:
	default:
	}
	return l.applyReports()
}

// stepQueued steps the batches queued now, in order. Bounded by what is
// queued now.
func (l *raftLoop) stepQueued() error {
	for range len(l.inbound) {
		select {
		case b := <-l.inbound:
			if err := l.step(b); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

// resetWake sets the timer for the core's next deadline.
func (l *raftLoop) resetWake() {
	l.wake.Stop()
	if at := l.node.NextWake(); !at.IsZero() {
		l.wake.Reset(max(time.Until(at), 0))
	}
}

// tickSlack is how much later than the core's next tick the tick timer
// may stay set (rearmTick, resetTick).
const tickSlack = time.Millisecond

// rearmTick sets the tick timer, the moment it has fired, for where the
// next tick will most likely be: a heartbeat from now, plus tickSlack so
// that the core's next tick, set during the work that follows, falls
// before it. resetTick moves it when that guess was wrong.
//
// Why at once: the timer that fired made the runtime wake a second thread
// along with this one (an idle processor for the goroutine it readied),
// and that thread, finding nothing to run, sleeps in the network poller
// until the earliest timer it sees. A tick timer set only after the work
// would be earlier than that sleep, and the runtime would wake the poller
// again to shorten it: one more wake-up per heartbeat, for nothing
// (docs/benchmarks.md, "Answers without wake-ups").
func (l *raftLoop) rearmTick() {
	l.tickAt = time.Now().Add(l.e.tick + tickSlack)
	l.tick.Reset(l.e.tick + tickSlack)
}

// resetTick sets the tick timer for the core's next tick, when that moved:
// unless it is set no earlier than that tick and at most tickSlack after it.
// A tick a little late only makes this node count time more slowly, which
// shortens no promise (docs/safety.md).
func (l *raftLoop) resetTick() {
	at := l.node.NextTick()
	if at.IsZero() || (!l.tickAt.Before(at) && l.tickAt.Sub(at) <= tickSlack) {
		return
	}
	l.tickAt = at
	l.tick.Reset(max(time.Until(at), 0))
}

// flush does what the core asked for, in its order: leadership events
// first (a lease ends before anything else happens), then the messages,
// which the core has already persisted.
func (l *raftLoop) flush() {
	out := l.node.TakeOutput()
	for _, ev := range out.Events {
		l.report(ev)
	}
	if !l.established && l.node.Established() {
		l.established = true
		l.tr.SetEstablished(true)
	}
	if len(out.Messages) > 0 {
		l.tr.Send(out.Messages)
	}
	l.e.publish(l)
}

// report turns one of the core's events into what the application, the
// event log and the status see.
func (l *raftLoop) report(ev core.Event) {
	l.role, l.term, l.vote, l.lead = ev.Role, ev.Term, ev.Vote, ev.Lead
	switch ev.Kind {
	case core.EventState:
		l.logEvent(eventlog.KindState)
	case core.EventLeader:
		l.cbq.push(callbackEvent{leader: &LeaderInfo{Name: l.e.name(ev.Lead), ID: ev.Lead, Term: ev.Term}})
	case core.EventLeaseStart:
		l.startLease(ev.Start, ev.Token)
	case core.EventLeaseEnd:
		l.endLease(ev.At)
	case core.EventClusterID:
		id := ev.ClusterID
		l.clusterID.Store(&id)
	case core.EventMembers:
		l.publishMembers()
	case core.EventPreferred:
		l.e.log.Info("leadership moves to the preferred member", "reason", ev.Reason)
		l.publishMembers()
	case core.EventRemoved:
		l.e.log.Error("this node was removed from the cluster: it stops. Give it an empty data directory and add it again (`raftelect members add`) to bring it back")
		l.removed = fmt.Errorf("%w: the cluster applied a membership without it", ErrRemoved)
	}
}

// reachablePeers: the peers whose last send from us succeeded and whose
// connection is up (a stopped peer's closes at once, before a send fails).
func (l *raftLoop) reachablePeers() map[uint64]bool {
	out := map[uint64]bool{}
	for _, p := range l.tr.Stats() {
		id := NodeID(p.Name)
		out[id] = p.Reachable && l.tr.Connected(id)
	}
	return out
}

// step hands a batch of inbound messages to the core. Messages that fail
// the state checks are not stepped; they are logged, as the sender has long
// had its answer. The error is the store's: the loop must stop.
func (l *raftLoop) step(b inboundBatch) error {
	defer close(b.stepped)
	rejected := func(m *raftpb.Message, err error) {
		l.e.log.Warn("rejected message", "from", l.e.name(b.from), "type", m.GetType().String(), "err", err)
		if mt := l.e.cfg.Metrics; mt != nil {
			mt.Rejected(transport.RejectStateCheck)
		}
	}
	ack, err := l.node.Step(time.Now(), b.from, b.msgs, core.Stamp(b.sent), rejected)
	if ack.Stamp != (core.Stamp{}) {
		l.acks.set(b.from, transport.Ack{Stamp: transport.Stamp(ack.Stamp), Term: ack.Term, Leader: ack.Leader, Promise: ack.Promise})
	}
	if err != nil {
		return err
	}
	l.flush()
	return nil
}

func (l *raftLoop) applyReports() error {
	r := &l.reports
	r.mu.Lock()
	unreachable, refused, snapshots, acks, differs, notMember, serveErr := r.unreachable, r.refused, r.snapshots, r.acks, r.differs, r.notMember, r.serveErr
	r.unreachable, r.refused, r.snapshots, r.acks, r.differs, r.notMember = map[uint64]bool{}, map[uint64]bool{}, map[uint64]bool{}, map[uint64]transport.Ack{}, map[uint64]bool{}, map[uint64]bool{}
	r.mu.Unlock()
	now := time.Now()
	for id := range notMember {
		l.refusedBy[id] = now
		if l.lead == l.e.self && slices.ContainsFunc(l.node.Members(), func(m core.Member) bool { return m.ID == id }) {
			// A member of our configuration that has not applied our
			// addition cannot hear us: leadership must move to a member
			// it knows for it to catch up.
			l.e.log.Warn("a member refuses this leader as no member: it has not applied this node's addition and cannot catch up while this node leads; transfer leadership to a member it knows (raftelect transfer)",
				"member", l.e.name(id))
		}
	}
	if len(l.refusedBy) > 0 {
		if err := l.notMemberVerdict(now); err != nil {
			l.e.log.Error("this node is no member of the cluster any more: it stops", "err", err)
			l.removed = err
			return err
		}
	}
	for id, d := range differs {
		if err := l.node.MembershipDiffers(now, id, d); err != nil {
			return err
		}
	}
	l.electionsHeld.Store(l.node.ElectionsHeld())
	for id := range unreachable {
		if err := l.node.ReportUnreachable(now, id); err != nil {
			return err
		}
	}
	for id, failed := range snapshots {
		if err := l.node.ReportSnapshot(now, id, failed); err != nil {
			return err
		}
	}
	for id := range refused {
		if err := l.node.PeerRefused(now, id); err != nil {
			return err
		}
	}
	for id, a := range acks {
		// A stamp of another process (our previous run) proves nothing
		// about what this one sent.
		sentAt, ok := a.Stamp.Time()
		if !ok {
			continue
		}
		ack := core.Ack{Stamp: core.Stamp(a.Stamp), Term: a.Term, Leader: a.Leader, Promise: a.Promise}
		if err := l.node.Acked(now, id, ack, sentAt); err != nil {
			return err
		}
		l.ackedAt.set(id, l.node.LastAck(id))
	}
	if serveErr != nil {
		return fmt.Errorf("peer listener failed: %w", serveErr)
	}
	return nil
}

func (l *raftLoop) startLease(now time.Time, term uint64) {
	lease := Lease{Holder: l.e.cfg.Name, Token: term, Start: now}
	ctx, cancel := context.WithCancel(context.Background())
	l.current, l.cancel = &lease, cancel
	l.logLease(eventlog.KindLeaseStart, term)
	l.cbq.push(callbackEvent{started: &lease, ctx: ctx})
	for _, fn := range l.routines {
		l.work.Add(1)
		go l.superviseRoutine(ctx, lease, fn)
	}
}

func (l *raftLoop) endLease(now time.Time) {
	if l.current == nil {
		return
	}
	lease := *l.current
	l.cancel()
	l.current, l.cancel = nil, nil
	l.e.publish(l)
	l.logLease(eventlog.KindLeaseEnd, lease.Token)
	l.cbq.push(callbackEvent{stopped: &lease})
}

// superviseRoutine runs fn while the lease holds, restarting it after a
// capped exponential backoff when it fails.
func (l *raftLoop) superviseRoutine(ctx context.Context, lease Lease, fn func(context.Context, Lease) error) {
	defer l.work.Done()
	backoff := l.e.tick
	maxBackoff := 30 * time.Second
	for {
		err := fn(ctx, lease)
		if ctx.Err() != nil || err == nil {
			return
		}
		l.e.log.Warn("leader work failed; restarting", "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (l *raftLoop) logEvent(kind eventlog.Kind) {
	w := l.e.cfg.EventLog
	if w == nil {
		return
	}
	if err := w.Write(eventlog.Event{
		Node: l.e.cfg.Name, Kind: kind, Term: l.term,
		Vote: l.e.name(l.vote), Role: core.RoleName(l.role), Leader: l.e.name(l.lead),
	}); err != nil {
		l.e.log.Warn("event log write failed", "err", err)
	}
}

func (l *raftLoop) logLease(kind eventlog.Kind, token uint64) {
	w := l.e.cfg.EventLog
	if w == nil {
		return
	}
	if err := w.Write(eventlog.Event{
		Node: l.e.cfg.Name, Kind: kind, Term: l.term, Role: core.RoleName(l.role),
		Leader: l.e.name(l.lead), Token: token,
	}); err != nil {
		l.e.log.Warn("event log write failed", "err", err)
	}
}

// The transport.Handler side. These run on gRPC and sender goroutines.

func (l *raftLoop) Deliver(ctx context.Context, from uint64, msgs []*raftpb.Message, sent transport.Stamp) (transport.Ack, error) {
	b := inboundBatch{from: from, msgs: msgs, sent: sent, stepped: make(chan struct{})}
	select {
	case l.inbound <- b:
	case <-ctx.Done():
		return transport.Ack{}, ctx.Err()
	case <-l.stopped:
		return transport.Ack{}, ErrStopped
	}
	// Wait for the loop to step the batch, so the answer acknowledges this
	// batch rather than the previous one: a fresher lease for the sender,
	// which matters on links slower than the heartbeat.
	if l.parked.Load() {
		// The loop had begun no input when the batch was queued: the next
		// input it takes begins by stepping the queue, this batch included
		// (begin), so the wait is that step's own. No timer: a stopped
		// timer stays in the runtime's heap and wakes the process when it
		// would have fired, a quarter heartbeat after every heartbeat on
		// an idle follower.
		select {
		case <-b.stepped:
		case <-ctx.Done():
		case <-l.stopped:
		}
		return l.acks.get(from), nil
	}
	// The loop is busy elsewhere (a slow disk, a long input): wait a
	// little, bounded, as the caller must not be held and either answer
	// is true.
	t := time.NewTimer(l.e.tick / 4)
	select {
	case <-b.stepped:
	case <-t.C:
	case <-ctx.Done():
	case <-l.stopped:
	}
	t.Stop()
	return l.acks.get(from), nil
}

func (l *raftLoop) ReportUnreachable(id uint64) {
	l.reports.mu.Lock()
	l.reports.unreachable[id] = true
	l.reports.mu.Unlock()
	l.reports.wake()
}

func (l *raftLoop) ReportSnapshot(id uint64, failed bool) {
	l.reports.mu.Lock()
	l.reports.snapshots[id] = failed
	l.reports.mu.Unlock()
	l.reports.wake()
}

func (l *raftLoop) MembershipDiffers(id uint64, differs bool) {
	l.reports.mu.Lock()
	l.reports.differs[id] = differs
	l.reports.mu.Unlock()
	l.reports.wake()
}

// NotMember: member id refused this node as no member of its set. The loop
// decides whether that makes this node removed (notMemberVerdict).
func (l *raftLoop) NotMember(id uint64) {
	l.reports.mu.Lock()
	l.reports.notMember[id] = true
	l.reports.mu.Unlock()
	l.reports.wake()
}

func (l *raftLoop) PeerRefused(id uint64) {
	l.reports.mu.Lock()
	l.reports.refused[id] = true
	l.reports.mu.Unlock()
	l.reports.wake()
}

func (l *raftLoop) ServeFailed(err error) {
	l.reports.mu.Lock()
	l.reports.serveErr = err
	l.reports.mu.Unlock()
	l.reports.wake()
}

func (r *deliveryReports) wake() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (l *raftLoop) Acked(id uint64, ack transport.Ack) {
	l.reports.mu.Lock()
	if prev, ok := l.reports.acks[id]; !ok || ack.Stamp.At > prev.Stamp.At {
		l.reports.acks[id] = ack
	}
	l.reports.mu.Unlock()
	l.reports.wake()
}
