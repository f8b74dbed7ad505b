package election

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/storage"
	"github.com/raftelect/raftelect/transport"
)

// compactAbove: once this many applied entries accumulate, the log is
// compacted into a snapshot. An election cluster appends one empty entry per
// term, so this is years of elections, and a snapshot is a few bytes.
const compactAbove = 1000

// raftLoop owns the raft node. One goroutine runs it, and everything that
// touches raft goes through it: tick -> Ready -> persist -> hand messages to
// the transport (never blocking) -> Advance. Inbound messages arrive through
// a channel from the gRPC handlers.
type raftLoop struct {
	e        *Elector
	rn       *raft.RawNode
	store    storage.Store
	ownStore bool
	tr       *transport.Transport
	guard    stepGuard
	lease    *leaseTracker
	cbq      *callbackQueue
	routines []func(context.Context, Lease) error

	inbound   chan inboundBatch
	acks      ackBook
	transfers chan transferRequest
	reports   deliveryReports
	stopped   chan struct{} // closed when the loop has exited

	confState *raftpb.ConfState
	applied   uint64

	// leadership as last observed
	role       raft.StateType
	term, vote uint64
	lead       uint64
	leaseTerm  uint64
	current    *Lease
	cancel     context.CancelFunc // of the current lease's context
	leaseTimer *time.Timer
	// campaignTimer fires a campaign shortly after the leader's process is
	// known to be gone (its connections refused): goneLeader. campaigns
	// counts the quick campaigns since.
	campaignTimer *time.Timer
	goneLeader    uint64
	campaigns     int
	// leaderHeardAt: when we last stepped a heartbeat or append of the
	// leader we follow, which renews our promise to it.
	leaderHeardAt time.Time
	// quick: a quick campaign (campaignIfLeaderSilent) is under way.
	quick bool
	// candidateSeenAt: when a vote or pre-vote request last reached us
	// (stepped, or dropped by the vote guard).
	candidateSeenAt time.Time
	// firstCampaign: how long after the start a node that has heard no
	// leader campaigns.
	firstCampaign time.Duration
	guardLen      time.Duration // the vote guard's length at start (tests)
	// tickFrom: raft is not ticked before then, so it cannot campaign
	// while a promise of our previous run (made with a longer election
	// timeout) may still stand. Zero when timings did not shrink.
	tickFrom time.Time
	// identity is what the store records about whose state it holds;
	// lowerTimeoutAt, when set, is when identity.ElectionTimeout may come
	// down to the current timeout (the previous run's promises are over).
	identity       storage.Identity
	lowerTimeoutAt time.Time
	clusterID      atomic.Pointer[string] // read by the transport
	idProposedTerm uint64                 // term we last proposed a cluster ID in
	work           sync.WaitGroup         // leader routines
	// fallbacks: the other candidates of the transfer under way, best
	// first (retargetTransfer).
	fallbacks []uint64
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

// ackBook holds, per peer, the acknowledgement we give it: the stamp of its
// last heartbeat or append batch we stepped and whom we followed afterwards.
type ackBook struct {
	mu   sync.Mutex
	acks map[uint64]transport.Ack
}

func (b *ackBook) get(peer uint64) transport.Ack {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.acks[peer]
}

func (b *ackBook) set(peer uint64, a transport.Ack) {
	b.mu.Lock()
	b.acks[peer] = a
	b.mu.Unlock()
}

type transferRequest struct {
	to     uint64
	result chan error
}

// deliveryReports collects the transport's reports for the loop without
// blocking the senders.
type deliveryReports struct {
	mu          sync.Mutex
	unreachable map[uint64]bool
	refused     map[uint64]bool
	snapshots   map[uint64]raft.SnapshotStatus
	// heartbeatResp: peers whose Send answer acknowledged our heartbeats,
	// with the term; stepped as MsgHeartbeatResp from them.
	heartbeatResp map[uint64]uint64
	serveErr      error
	notify        chan struct{}
}

func newRaftLoop(e *Elector, routines []func(context.Context, Lease) error) (*raftLoop, error) {
	cfg := e.cfg
	l := &raftLoop{
		e:         e,
		store:     cfg.Storage,
		routines:  routines,
		inbound:   make(chan inboundBatch, inboundQueue),
		transfers: make(chan transferRequest),
		stopped:   make(chan struct{}),
		lease:     newLeaseTracker(len(cfg.Peers), e.electionTimeout, e.tick, cfg.LeaseDriftMargin),
		cbq:       newCallbackQueue(cfg.Callbacks),
	}
	l.acks.acks = map[uint64]transport.Ack{}
	l.leaseTimer = time.NewTimer(time.Hour)
	l.leaseTimer.Stop()
	l.reports.unreachable = map[uint64]bool{}
	l.reports.refused = map[uint64]bool{}
	l.reports.heartbeatResp = map[uint64]uint64{}
	l.campaignTimer = time.NewTimer(time.Hour)
	l.campaignTimer.Stop()
	l.reports.snapshots = map[uint64]raft.SnapshotStatus{}
	l.reports.notify = make(chan struct{}, 1)
	if l.store == nil {
		l.store = storage.NewMemory()
		l.ownStore = true
	}
	fresh := l.store.Fresh()
	hs, cs, err := l.store.InitialState()
	if err != nil {
		return nil, fmt.Errorf("read raft state: %w", err)
	}
	snap, err := l.store.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("read raft snapshot: %w", err)
	}
	l.confState = cs
	l.applied = snap.GetMetadata().GetIndex()
	rc := &raft.Config{
		ID:              e.self,
		ElectionTick:    e.electionTicks,
		HeartbeatTick:   1,
		Storage:         l.store,
		Applied:         l.applied,
		MaxSizePerMsg:   transport.MaxAppendBytes, // so appends fit the receiver's entry cap
		MaxInflightMsgs: 64,
		CheckQuorum:     true,
		PreVote:         true,
		Logger:          newRaftLogger(e),
	}
	l.rn, err = raft.NewRawNode(rc)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	last, _ := l.store.LastIndex()
	if raft.IsEmptyHardState(hs) && last == 0 {
		peers := make([]raft.Peer, 0, len(cfg.Peers))
		for _, p := range cfg.Peers {
			peers = append(peers, raft.Peer{ID: NodeID(p.Name)})
		}
		if err := l.rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("bootstrap raft: %w", err)
		}
	}
	ident, err := l.store.Identity()
	if err != nil {
		return nil, fmt.Errorf("read raft store identity: %w", err)
	}
	if err := checkStoreIdentity(ident, cfg); err != nil {
		return nil, err
	}
	l.clusterID.Store(&ident.ClusterID)

	// The vote guard (docs/safety.md): one election timeout after any
	// start, because we may have acknowledged a leader just before we went
	// down and its lease counts on our silence; two after a start without
	// state, because we may also have voted in a term still running. With
	// state, hearing from a leader ends the guard early: from then on raft's
	// own in-lease check refuses votes for as long as the guard would have.
	//
	// A promise lasts the election timeout it was made with. If the last
	// run had a longer one (a rolling change of timings), the guard lasts
	// that long, hearing a leader does not end it, and raft is not ticked
	// (so it cannot campaign) until only the current timeout is left.
	now := time.Now()
	guard := e.electionTimeout
	liftOnLeader := !fresh
	if prev := ident.ElectionTimeout; prev > e.electionTimeout {
		guard, liftOnLeader = prev, false
		l.tickFrom = now.Add(prev - e.electionTimeout)
		l.lowerTimeoutAt = now.Add(prev)
	}
	if fresh {
		guard = max(guard, 2*e.electionTimeout)
	}
	if fresh && ident.NeverRan {
		// Explicitly bootstrapped for a brand-new cluster: no vote cast,
		// no promise made, nothing to guard (storage.MarkNeverRan).
		guard = 0
	}
	if cfg.unsafeNoVoteGuard {
		guard, l.tickFrom = 0, time.Time{}
	}
	l.guard = stepGuard{rn: l.rn, store: l.store, voteGuardUntil: now.Add(guard), liftOnLeader: liftOnLeader}
	// If no leader is heard from meanwhile, campaign once the guard is over
	// and an election timeout has passed (see campaignIfLeaderSilent).
	l.firstCampaign = max(guard, e.electionTimeout)
	l.guardLen = guard
	l.identity = ident
	l.identity.Node, l.identity.NeverRan = cfg.Name, false
	l.identity.ElectionTimeout = max(ident.ElectionTimeout, e.electionTimeout)
	if l.identity != ident {
		if err := l.store.SetIdentity(l.identity); err != nil {
			return nil, err
		}
	}

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
	l.tr, err = transport.New(transport.Options{
		Self:        self,
		Peers:       others,
		Credentials: creds,
		Insecure:    cfg.Insecure,
		Listener:    cfg.Listener,
		Handler:     l,
		Labels:      cfg.Labels,
		// What every member must agree on, checked on every connection
		// (transport/agreement.go).
		Members: members,
		Timings: transport.Timings{
			Heartbeat: cfg.HeartbeatInterval, ElectionTimeout: e.electionTimeout, LeaseDriftMargin: cfg.LeaseDriftMargin,
		},
		Logger:  e.log,
		Hooks:   cfg.Hooks,
		Metrics: cfg.Metrics,
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
		SyncSend:            cfg.UnsafeSyncSend,
		RegisterServices:    cfg.RegisterServices,
		ClusterID:           l.currentClusterID,
		Operators:           cfg.Operators,
		Limits:              cfg.ConnectionLimits,
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
		l.endLease(time.Now())
		l.work.Wait()
		l.tr.Stop()
		close(cbStop)
		<-l.cbq.done
		l.logEvent(eventlog.KindStop)
	}()
	st := l.rn.BasicStatus()
	l.term, l.vote = st.GetTerm(), st.GetVote()
	l.logEvent(eventlog.KindStart)
	l.e.publish(l)

	ticker := time.NewTicker(l.e.tick)
	defer ticker.Stop()
	l.campaignTimer.Reset(l.firstCampaign + l.campaignDelay())
	defer l.leaseTimer.Stop()
	defer l.campaignTimer.Stop()

	done := ctx.Done()
	var stopBy <-chan time.Time // set once a graceful stop is under way
	for {
		select {
		case <-done:
			done = nil
			if !l.startGracefulStop() {
				return nil
			}
			stopBy = time.After(l.e.electionTimeout)
		case <-stopBy:
			l.e.log.Warn("leadership transfer did not complete before stop")
			return nil
		case now := <-ticker.C:
			if now.After(l.tickFrom) {
				l.rn.Tick()
			}
			if err := l.lowerRecordedTimeout(now); err != nil {
				return err
			}
		case b := <-l.inbound:
			if err := l.step(b); err != nil {
				return err
			}
		case <-l.reports.notify:
			if err := l.applyReports(); err != nil {
				return err
			}
		case <-l.campaignTimer.C:
			l.campaignIfLeaderSilent()
		case <-l.leaseTimer.C:
		case req := <-l.transfers:
			req.result <- l.transfer(req.to)
		}
		observed, err := l.handleReady()
		if err != nil {
			return err
		}
		if !observed {
			l.observe(time.Now()) // lease timer, acknowledgements, reports
		}
		if done == nil && l.lead != l.e.self && l.lead != 0 {
			return nil // graceful stop: someone else leads now
		}
		if done == nil {
			l.retargetTransfer()
		}
	}
}

// startGracefulStop ends the lease and hands leadership to a peer if we lead
// a cluster of more than one; it reports whether there is a transfer to wait
// for.
func (l *raftLoop) startGracefulStop() bool {
	if l.rn.BasicStatus().RaftState != raft.StateLeader || len(l.e.names) == 1 {
		return false
	}
	if err := l.transfer(0); err != nil {
		l.e.log.Warn("no leadership transfer before stop", "err", err)
		return false
	}
	return true
}

// transfer ends the lease and asks raft to hand leadership to `to` (0: the
// best candidate, see transferCandidates; the others are kept, in order, as
// fallbacks for retargetTransfer).
func (l *raftLoop) transfer(to uint64) error {
	st := l.rn.Status()
	if st.RaftState != raft.StateLeader {
		return ErrNotLeader
	}
	l.fallbacks = nil
	if to != 0 && !l.reachablePeers()[to] {
		return fmt.Errorf("election: cannot transfer to %s: it is not reachable from this leader now; check it runs, or let the leader choose", l.e.names[to])
	}
	if to == 0 {
		c := l.transferCandidates(st)
		if len(c) == 0 {
			return errors.New("election: no reachable peer has acknowledged this leader recently; nobody to transfer to")
		}
		to, l.fallbacks = c[0], c[1:]
	}
	// End the lease before anyone else can be told to campaign: the
	// transferee campaigns at once and peers grant it votes inside their
	// own leases. observe also ends it (LeadTransferee is set), but the
	// order must not depend on that.
	now := time.Now()
	l.endLease(now)
	l.fenceTransfer(now)
	l.e.log.Info("transferring leadership", "to", l.e.names[to])
	l.rn.TransferLeader(to)
	return nil
}

// transferCandidates lists the peers a transfer may go to, best first.
// Only a peer whose connection is up, whose last send from us succeeded and
// that acknowledged us within an election timeout qualifies: one that went
// away a moment ago cannot take over, and waiting for it costs a
// whole election timeout. Among those: acknowledged within the last few
// heartbeats first (a live peer acknowledges every heartbeat; an older
// acknowledgement means a slow or dying link), then caught up with our log
// (raft can send MsgTimeoutNow at once), then the most recent
// acknowledgement.
func (l *raftLoop) transferCandidates(st raft.Status) []uint64 {
	reachable := l.reachablePeers()
	now := time.Now()
	last := st.Progress[l.e.self].Match
	type cand struct {
		id         uint64
		fresh, cur bool
		ack        time.Time
	}
	var cs []cand
	for id, pr := range st.Progress {
		ack := l.lease.lastAck(id)
		if id == l.e.self || !reachable[id] || now.Sub(ack) > l.e.electionTimeout {
			continue
		}
		cs = append(cs, cand{id: id, fresh: now.Sub(ack) <= recentAckTicks*l.e.tick, cur: pr.Match >= last, ack: ack})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		switch {
		case a.fresh != b.fresh:
			return boolFirst(a.fresh)
		case a.cur != b.cur:
			return boolFirst(a.cur)
		default:
			return b.ack.Compare(a.ack)
		}
	})
	out := make([]uint64, len(cs))
	for i, c := range cs {
		out[i] = c.id
	}
	return out
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

// recentAckTicks: a peer that acknowledged us within this many heartbeats
// is heard from recently. The leader sends every heartbeat and a peer's
// answer comes one round trip later (at most about one heartbeat on a link
// the timeouts are chosen for), so a live peer's last acknowledgement is at
// most two heartbeats old; three leave room for jitter.
const recentAckTicks = 3

func boolFirst(a bool) int {
	if a {
		return -1
	}
	return 1
}

// retargetTransfer runs on every loop pass of a graceful stop: if the
// transferee is no longer reachable (it stopped after we chose it), or raft
// gave the transfer up, hand over to the next candidate at once instead of
// waiting out the stop's election timeout for a transfer that cannot
// complete.
func (l *raftLoop) retargetTransfer() {
	st := l.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || len(l.fallbacks) == 0 {
		return
	}
	reachable := l.reachablePeers()
	if cur := st.LeadTransferee; cur != raft.None && reachable[cur] {
		return
	}
	for len(l.fallbacks) > 0 {
		next := l.fallbacks[0]
		l.fallbacks = l.fallbacks[1:]
		if !reachable[next] {
			continue
		}
		// As in transfer: no acknowledgement founds a lease until this
		// transfer's MsgTimeoutNow and forced votes are over.
		l.fenceTransfer(time.Now())
		l.e.log.Info("transferring leadership to the next candidate", "to", l.e.names[next], "unreachable", l.e.names[st.LeadTransferee])
		l.rn.TransferLeader(next)
		return
	}
}

// fenceTransfer keeps acknowledgements from founding a lease while a
// transfer's messages may still act. If raft gives the transfer up (after
// at most an election timeout) we stay leader in this term, but
// MsgTimeoutNow may be on its way: it can wait half an election timeout in
// a queue and half in flight, and so can the transferee's forced vote
// requests, which peers grant inside their leases. Until all of that is
// over: 3 election timeouts from now, the longest of anyone's (a peer's
// timeouts follow its promise, its own election timeout less a tick).
func (l *raftLoop) fenceTransfer(now time.Time) {
	longest := max(l.e.electionTimeout, l.lease.longestPromise()+l.e.tick)
	l.lease.fence(now.Add(3 * longest))
}

// promise is what this node promises a leader whose heartbeat or append it
// just stepped: no vote and no campaign for one election timeout of its
// own, less the tick that may come at once (see leaseTracker).
func (l *raftLoop) promise() time.Duration { return l.e.electionTimeout - l.e.tick }

// step hands a batch of inbound messages to raft (see stepGuard.stepBatch).
// Messages that fail the state checks are not stepped; they are logged, as
// the sender has long had its answer. The error is the store's: the loop
// must stop.
func (l *raftLoop) step(b inboundBatch) error {
	defer close(b.stepped)
	ready := func() error { _, err := l.handleReady(); return err }
	rejected := func(m *raftpb.Message, err error) {
		l.e.log.Warn("rejected message", "from", l.e.names[b.from], "type", m.GetType().String(), "err", err)
		if mt := l.e.cfg.Metrics; mt != nil {
			mt.Rejected(transport.RejectStateCheck)
		}
	}
	now := time.Now()
	resetBy, campaign, err := l.guard.stepBatch(b.msgs, now, ready, rejected)
	if campaign {
		l.candidateSeenAt = now
	}
	if err != nil {
		return err
	}
	// Raft resets a follower's election timer on a heartbeat, append or
	// snapshot from the leader of its current term, and on nothing else. If
	// the batch held one and we now follow its sender in its term, that
	// reset happened: acknowledge the batch's stamp for the sender's lease.
	if st := l.rn.BasicStatus(); resetBy != 0 && resetBy == st.GetTerm() && st.Lead == b.from {
		l.acks.set(b.from, transport.Ack{Stamp: b.sent, Term: st.GetTerm(), Leader: st.Lead, Promise: l.promise()})
		l.guard.leaderHeard()
		l.leaderHeard(now, b.from)
	}
	return nil
}

func (l *raftLoop) applyReports() error {
	r := &l.reports
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.unreachable {
		l.rn.ReportUnreachable(id)
	}
	clear(r.unreachable)
	for id, s := range r.snapshots {
		l.rn.ReportSnapshot(id, s)
	}
	clear(r.snapshots)
	for id := range r.refused {
		l.leaderRefused(id)
	}
	clear(r.refused)
	for id, term := range r.heartbeatResp {
		if !l.guard.ackTerm(term) {
			continue
		}
		t, from, to := term, id, l.e.self
		if err := l.rn.Step(&raftpb.Message{Type: raftpb.MsgHeartbeatResp.Enum(), From: &from, To: &to, Term: &t}); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
			l.e.log.Warn("step acknowledged heartbeat", "peer", l.e.names[id], "err", err)
		}
	}
	clear(r.heartbeatResp)
	if r.serveErr != nil {
		return fmt.Errorf("peer listener failed: %w", r.serveErr)
	}
	return nil
}

// leaderHeard renews our promise to the leader: the campaign timer is set
// for when it has run out (see campaignIfLeaderSilent).
func (l *raftLoop) leaderHeard(now time.Time, leader uint64) {
	l.leaderHeardAt, l.goneLeader, l.campaigns, l.quick = now, leader, 0, false
	l.adoptLeadersClusterID(leader)
	l.campaignTimer.Reset(l.e.electionTimeout + l.campaignDelay())
}

// leaderRefused acts on a refused connection to the leader we follow, when
// Config.FastFailoverOnRefusal says that a refusal proves the leader's
// process is gone (docs/safety.md, "A leader that is gone"): then there is
// no lease to wait out. Forget it, so we grant (pre-)votes at once, and
// campaign soon (see campaignDelay). Without that option a refusal is only
// a hint: firewalls with reject rules, Service proxies and load balancers
// refuse connections for a leader that is alive and acting.
func (l *raftLoop) leaderRefused(id uint64) {
	st := l.rn.BasicStatus()
	if !l.e.cfg.FastFailoverOnRefusal || st.RaftState != raft.StateFollower || st.Lead != id || id == l.e.self {
		return
	}
	l.e.log.Info("leader's connections refused: taking its process as gone (fast_failover_on_refusal)", "leader", l.e.names[id], "term", st.GetTerm())
	if err := l.rn.ForgetLeader(); err != nil {
		l.e.log.Warn("forget leader", "err", err)
	}
	l.goneLeader, l.campaigns, l.quick = id, 0, true
	l.campaignTimer.Reset(l.campaignDelay())
}

// campaignDelay staggers the followers of a leader that is gone, so they
// rarely split the vote: each waits its rank among the surviving nodes
// (by name, the same order everywhere) times half a heartbeat, plus up to a
// quarter heartbeat at random. A campaign that did not produce a leader is
// tried again the same way, a few times, before raft's election timeout
// takes over.
func (l *raftLoop) campaignDelay() time.Duration {
	rank := 0
	for id, name := range l.e.names {
		if id != l.goneLeader && id != l.e.self && name < l.e.cfg.Name {
			rank++
		}
	}
	return time.Duration(rank)*l.e.tick/2 + rand.N(l.e.tick/4+1)
}

// maxQuickCampaigns bounds the quick campaigns after a leader went silent.
const maxQuickCampaigns = 5

// campaignIfLeaderSilent runs when campaignTimer fires: one election
// timeout (plus our rank's stagger) after we last heard the leader, or soon
// after it was taken as gone. Raft alone would wait a random 1-2 election
// timeouts; campaigning as soon as our promise to the old leader has run out
// is as safe (its lease counted on that promise, no longer) and, staggered
// by rank, rarely splits the vote. Peers still bound by their own promises
// refuse the pre-vote, and we try again a few times.
func (l *raftLoop) campaignIfLeaderSilent() {
	st := l.rn.BasicStatus()
	now := time.Now()
	if st.RaftState == raft.StateLeader || l.campaigns >= maxQuickCampaigns || now.Before(l.tickFrom) {
		return
	}
	switch {
	case l.quick && st.Lead == raft.None:
		// Our quick campaign (or the refusal fast path) is under way and
		// no leader has come of it yet: try again.
	case st.RaftState == raft.StateFollower && st.Lead != raft.None && st.Lead == l.goneLeader &&
		now.Sub(l.leaderHeardAt) >= l.e.electionTimeout:
		// The leader we follow has been silent for all of our promise.
		l.quick = true
	case st.RaftState == raft.StateFollower && st.Lead == raft.None && l.leaderHeardAt.IsZero() &&
		!now.Before(l.guard.voteGuardUntil):
		// Started, heard no leader for an election timeout, and our vote
		// guard is over: a new cluster, or one restarting as a whole.
		l.quick = true
	default:
		return // a leader was heard, or an election we did not start is under way
	}
	if now.Sub(l.candidateSeenAt) < l.e.electionTimeout/2 {
		// Another node is campaigning: let its election finish rather
		// than split the vote, and look again a little later.
		l.campaignTimer.Reset(l.e.tick + l.campaignDelay())
		return
	}
	l.campaigns++
	if err := l.rn.Campaign(); err != nil {
		l.e.log.Warn("campaign", "err", err)
	}
	l.campaignTimer.Reset(l.e.tick + l.campaignDelay())
}

// handleReady persists a Ready, then observes leadership, then sends its
// messages, then applies it. It reports whether there was a Ready (and so
// whether leadership was observed).
func (l *raftLoop) handleReady() (bool, error) {
	if !l.rn.HasReady() {
		return false, nil
	}
	rd := l.rn.Ready()
	if err := l.store.Save(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync); err != nil {
		return true, fmt.Errorf("persist raft state: %w", err)
	}
	// Leadership next, after the state is durable (so the event log never
	// records a term or vote that a crash could take back) and before this
	// Ready's messages leave (a lease must end before a vote for someone
	// else, say, goes out).
	l.observe(time.Now())
	if rd.HardState != nil && (rd.HardState.GetTerm() != l.term || rd.HardState.GetVote() != l.vote) {
		l.term, l.vote = rd.HardState.GetTerm(), rd.HardState.GetVote()
		l.logEvent(eventlog.KindState)
	}
	l.tr.Send(withoutHeartbeatResponses(rd.Messages))
	if s := rd.Snapshot; s != nil && !raft.IsEmptySnap(s) {
		l.confState = s.GetMetadata().GetConfState()
		l.applied = s.GetMetadata().GetIndex()
		if err := l.learnClusterID(s.GetData()); err != nil {
			return true, err
		}
	}
	for _, ent := range rd.CommittedEntries {
		if ent.GetType() == raftpb.EntryNormal {
			if err := l.learnClusterID(ent.GetData()); err != nil {
				return true, err
			}
		}
		if ent.GetType() == raftpb.EntryConfChange {
			var cc raftpb.ConfChange
			if err := proto.Unmarshal(ent.GetData(), &cc); err != nil {
				return true, fmt.Errorf("committed configuration change %d: %w", ent.GetIndex(), err)
			}
			l.confState = l.rn.ApplyConfChange(&cc)
		}
		l.applied = ent.GetIndex()
	}
	l.rn.Advance(rd)
	if first, err := l.store.FirstIndex(); err == nil && l.applied > first+compactAbove {
		if err := l.store.Compact(l.applied, l.confState, l.snapshotData()); err != nil {
			return true, fmt.Errorf("compact raft log: %w", err)
		}
	}
	return true, nil
}

// observe compares raft's state with what the application was told and
// brings the lease and the notifications up to date.
func (l *raftLoop) observe(now time.Time) {
	st := l.rn.BasicStatus()
	leading := st.RaftState == raft.StateLeader && st.LeadTransferee == raft.None
	if l.current != nil && (!leading || st.GetTerm() != l.current.Token) {
		// Raft stepped down (or began a transfer) while the lease still
		// held: end it before anything reports the new state, so no event
		// or callback ever shows a follower holding a lease.
		l.endLease(now)
	}
	changed := st.RaftState != l.role || st.Lead != l.lead || st.GetTerm() != l.term || st.GetVote() != l.vote
	if st.Lead != l.lead {
		name := l.e.names[st.Lead]
		l.cbq.push(callbackEvent{leader: &LeaderInfo{Name: name, ID: st.Lead, Term: st.GetTerm()}})
		if name != "" {
			l.e.log.Info("leader elected", "leader", name, "term", st.GetTerm())
		} else {
			l.e.log.Info("no leader", "term", st.GetTerm())
		}
	}
	// The vote belongs to its term: a new term starts with none, and
	// carrying the old one over would log a vote never cast.
	l.role, l.lead, l.term, l.vote = st.RaftState, st.Lead, st.GetTerm(), st.GetVote()
	if changed {
		l.logEvent(eventlog.KindState)
	}

	if leading && l.leaseTerm != st.GetTerm() {
		l.lease.reset(st.GetTerm())
		l.leaseTerm = st.GetTerm()
	}
	if leading {
		l.proposeClusterID(st.GetTerm())
	}
	var expiry time.Time
	if leading {
		expiry = l.lease.expiry(st.GetTerm())
	}
	if leading && now.Before(expiry) {
		if l.current == nil {
			l.startLease(now, st.GetTerm())
		}
		l.leaseTimer.Reset(expiry.Sub(now))
	} else if l.current != nil {
		l.endLease(now)
	}
	l.e.publishLease(l, expiry)
}

func (l *raftLoop) startLease(now time.Time, term uint64) {
	lease := Lease{Holder: l.e.cfg.Name, Token: term, Start: now}
	ctx, cancel := context.WithCancel(context.Background())
	l.current, l.cancel = &lease, cancel
	l.logLease(eventlog.KindLeaseStart, term)
	l.e.log.Info("started leading", "term", term)
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
	l.leaseTimer.Stop()
	l.e.publishLease(l, time.Time{})
	l.logLease(eventlog.KindLeaseEnd, lease.Token)
	l.e.log.Info("stopped leading", "term", lease.Token, "held", now.Sub(lease.Start).Round(time.Millisecond))
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
		Vote: l.e.names[l.vote], Role: roleName(l.role), Leader: l.e.names[l.lead],
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
		Node: l.e.cfg.Name, Kind: kind, Term: l.term, Role: roleName(l.role),
		Leader: l.e.names[l.lead], Token: token,
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
	// Wait a little for the loop to step the batch, so the answer
	// acknowledges this batch rather than the previous one: a fresher lease
	// for the sender, which matters on links slower than the heartbeat. The
	// wait is short and bounded: a loop busy elsewhere (a slow disk) must
	// not hold the caller, and either answer is true.
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
	s := raft.SnapshotFinish
	if failed {
		s = raft.SnapshotFailure
	}
	l.reports.mu.Lock()
	l.reports.snapshots[id] = s
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

func (l *raftLoop) Acked(id, term uint64, sentAt time.Time, promise time.Duration) {
	l.lease.ack(id, term, sentAt, promise)
	l.reports.mu.Lock()
	l.reports.heartbeatResp[id] = term
	l.reports.mu.Unlock()
	l.reports.wake()
}

// withoutHeartbeatResponses removes MsgHeartbeatResp from msgs, in place.
//
// Heartbeat responses do not travel as messages: the answer to the leader's
// Send RPC already says that the follower stepped its heartbeats and follows
// it in its term (the acknowledgement the lease is built on), and the leader
// steps a MsgHeartbeatResp on the follower's behalf from that (see Acked).
// That halves the RPCs of an idle cluster: followers send nothing at all
// while they have nothing to say, and a leader answers no inbound RPCs.
func withoutHeartbeatResponses(msgs []*raftpb.Message) []*raftpb.Message {
	out := msgs[:0]
	for _, m := range msgs {
		if m.GetType() != raftpb.MsgHeartbeatResp {
			out = append(out, m)
		}
	}
	return out
}

func roleName(s raft.StateType) string {
	switch s {
	case raft.StateLeader:
		return "leader"
	case raft.StateCandidate:
		return "candidate"
	case raft.StatePreCandidate:
		return "pre-candidate"
	default:
		return "follower"
	}
}
