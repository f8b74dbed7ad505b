// Package core is the elector's decision-making, as a deterministic state
// machine: raft (a RawNode), the leader lease, the vote guard, the gone-leader
// campaign, leadership transfers and their fence, and the cluster identity.
//
// It takes events, each with an explicit monotonic now (a tick, a batch of
// inbound messages, an acknowledgement, a delivery report, a timer, a user
// request), and answers with what to do: the messages to send, the
// leadership events to report, and when to wake it next. It starts no
// goroutine, reads no clock, owns no timer, channel or connection; the same
// inputs give the same outputs. Storage is the one thing it calls, through
// the Storage interface, synchronously: persist before send is kept by the
// order of the calls inside one event (Save, then the messages are handed
// out). A driver (election's raft loop) owns the timers, the transport,
// storage, callbacks and the event log; the simulator (internal/sim) drives
// many Nodes in one goroutine under a simulated network and clocks.
//
// A Node is not safe for concurrent use: one goroutine drives it.
package core

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/storage"
)

// compactAbove: once this many applied entries accumulate, the log is
// compacted into a snapshot. An election cluster appends one empty entry per
// term, so this is years of elections, and a snapshot is a few bytes.
const compactAbove = 1000

// MaxAppendBytes bounds the entries of one append (raft's MaxSizePerMsg),
// so appends fit the receiver's entry cap. The driver sets it from the
// transport's bound.
const defaultMaxAppendBytes = 1 << 20

// Config is what a Node needs to start. Every duration is measured on the
// driver's monotonic clock (the now of each input).
type Config struct {
	ID    uint64            // this node's raft ID
	Name  string            // this node's name
	Names map[uint64]string // every member, this node included
	// Members, if set, are the configured members' records (addresses,
	// witness, priority): a brand-new cluster bootstraps with them. Unset:
	// records with the names of Names only.
	Members []Member
	// Join: an empty store starts with no configuration at all, to be added
	// by the cluster's leader (AddMember) and to learn the membership from
	// it, instead of bootstrapping a new cluster from Members.
	Join bool
	// FailBackAfter: once the leader has held its lease this long and a
	// voter of higher priority has been healthy as long, leadership moves
	// to it (preference.go). 0: never.
	FailBackAfter time.Duration
	// Storage holds raft's state; New reads it, and every Ready is saved to
	// it before its messages are handed out.
	Storage storage.Store
	// Tick is the heartbeat interval: the driver calls Tick when NextTick
	// is due.
	Tick time.Duration
	// ElectionTicks is the election timeout in ticks.
	ElectionTicks int
	// DriftMargin is the fraction of each promise the lease gives up for
	// clocks that run at different rates.
	DriftMargin float64
	// FastFailoverOnRefusal takes a refused connection to the leader as
	// proof that its process is gone (see PeerRefused).
	FastFailoverOnRefusal bool
	// ClusterID is the configured cluster ID ("" if none).
	ClusterID string
	// MaxAppendBytes bounds one append's entries (0: 1 MiB).
	MaxAppendBytes uint64
	// Rand staggers campaigns and makes cluster IDs. Seeded by the driver:
	// a simulator seeds it from its schedule's seed.
	Rand *rand.Rand
	// PeerClusterID returns the cluster ID a peer described in its
	// configuration digest ("" if none yet). Optional.
	PeerClusterID func(id uint64) string
	// Logger receives the node's log lines (nil: none).
	Logger *slog.Logger
	// RaftLogger receives raft's own log lines (nil: none).
	RaftLogger raft.Logger
	// Bugs puts known bugs back on purpose, so tests can show that the
	// simulator and the checker catch them. Never set outside tests.
	Bugs Bugs
}

// Bugs are known, fixed bugs that a test may put back to show it is caught.
type Bugs struct {
	// LeaseLength replaces every follower's promise in the lease (after the
	// drift margin), e.g. 3 election timeouts: a lease longer than anyone
	// promised.
	LeaseLength time.Duration
	// NoVoteGuard grants votes at once after a start, even without state.
	NoVoteGuard bool
	// ChecksAgainstBatchStart checks each message of an inbound batch
	// against the log as it was before the batch, not as the batch's
	// earlier messages left it.
	ChecksAgainstBatchStart bool
	// LeaseIgnoresOutgoing counts the lease over the incoming half of a
	// joint configuration only, as if the new voters were the whole
	// cluster already.
	LeaseIgnoresOutgoing bool
}

// Stamp identifies a batch a leader sent, as the sender's transport wrote
// it; a follower echoes it in its acknowledgement without interpreting it.
type Stamp struct {
	At          uint64
	Incarnation uint64
}

// Ack is a follower's acknowledgement of the last heartbeat or append batch
// it stepped from a leader: the batch's stamp, the term and leader it
// followed right after stepping it, and its promise: how long after stepping
// it it grants no vote.
type Ack struct {
	Stamp   Stamp
	Term    uint64
	Leader  uint64
	Promise time.Duration
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventState: role, term, vote or leader changed (after it is durable).
	EventState EventKind = iota + 1
	// EventLeader: the leader this node knows changed (Lead may be 0).
	EventLeader
	// EventLeaseStart: this node holds the lease from now on, for Term.
	EventLeaseStart
	// EventLeaseEnd: this node's lease for Term ended now. Reported before
	// any message that could help another node be elected is handed out.
	EventLeaseEnd
	// EventClusterID: the cluster ID was learned and recorded.
	EventClusterID
	// EventMembers: the applied membership changed (Members).
	EventMembers
	// EventRemoved: this node was removed from the cluster: it must stop.
	EventRemoved
	// EventPreferred: the leader hands leadership to a preferred member
	// (Reason says why).
	EventPreferred
)

// Event is one thing the driver must report, in order.
type Event struct {
	Kind EventKind
	Role raft.StateType
	Term uint64
	Vote uint64
	Lead uint64
	At   time.Time // now of the input that caused it
	// Token and Start: the lease's term and start (EventLeaseStart,
	// EventLeaseEnd).
	Token uint64
	Start time.Time
	// ClusterID: EventClusterID.
	ClusterID string
	// Reason: EventPreferred.
	Reason string
}

// Output is what an input asks the driver to do: report Events in order,
// then send Messages (already durable). The driver must take both before
// its next input (TakeOutput).
type Output struct {
	Events   []Event
	Messages []*raftpb.Message
}

// ErrNotLeader is returned by Transfer when this node does not lead.
var ErrNotLeader = errors.New("this node is not the leader")

// Node is one elector's state machine.
type Node struct {
	cfg   Config
	log   *slog.Logger
	rn    *raft.RawNode
	store storage.Store
	guard stepGuard
	lease *leaseTracker
	rand  *rand.Rand
	out   Output

	electionTimeout time.Duration
	confState       *raftpb.ConfState
	applied         uint64

	// leadership as last observed
	role       raft.StateType
	term, vote uint64
	lead       uint64
	leaseTerm  uint64
	holding    bool      // the lease is held
	leaseStart time.Time // when it started
	expiry     time.Time // when it ends unless renewed (while holding)

	// campaignAt: when campaignIfLeaderSilent runs next (zero: never).
	// goneLeader is the leader whose silence (or refusal) it acts on,
	// campaigns counts the quick campaigns since.
	campaignAt time.Time
	goneLeader uint64
	campaigns  int
	// leaderHeardAt: when we last stepped a heartbeat or append of the
	// leader we follow, which renews our promise to it.
	leaderHeardAt time.Time
	// quick: a quick campaign is under way; candidateAt: when we last
	// became a candidate (the vote phase, after the pre-vote).
	quick       bool
	candidateAt time.Time
	leaderSince time.Time // when we last became leader
	// candidateSeenAt: when a vote or pre-vote request last reached us.
	candidateSeenAt time.Time
	// guardLen is the vote guard's length at start.
	guardLen time.Duration
	// tickFrom: raft is not ticked before then, so it cannot campaign
	// while a promise of our previous run (made with a longer election
	// timeout) may still stand. Zero when timings did not shrink.
	tickFrom time.Time
	// nextTick: when the driver ticks next (NextTick); ticks counts raft's
	// ticks. owedFrom, when set, is the first of the ticks a follower that
	// hears its leader defers (rideTick): they fall due every heartbeat
	// from then on, up to nextTick, and are stepped at its next input.
	nextTick time.Time
	owedFrom time.Time
	ticks    uint64
	// lastInput: when the last input ended (noteStall).
	lastInput time.Time
	// identity is what the store records about whose state it holds;
	// lowerTimeoutAt, when set, is when identity.ElectionTimeout may come
	// down to the current timeout (the previous run's promises are over).
	identity       storage.Identity
	lowerTimeoutAt time.Time
	idProposedTerm uint64 // term we last proposed a cluster ID in
	// fallbacks: the other candidates of the transfer under way, best
	// first (RetargetTransfer).
	fallbacks []uint64
	// acks: per peer, the acknowledgement we give it (Step returns it).
	acks map[uint64]Ack
	// hbRespAt: per peer, when we last stepped an acknowledgement as its
	// heartbeat response (Acked).
	hbRespAt map[uint64]time.Time
	// differing: the peers whose member lists differ from ours
	// (agreement.go).
	differing map[uint64]bool

	// members: the replicated member records (membership.go); removed:
	// this node is no longer a member. promotedTerm/At: the promotion proposed
	// last, so it is not proposed twice while it commits.
	members map[uint64]Member
	// appliedTerm: the term of the last entry applied (bootstrap: 1).
	appliedTerm uint64
	// joining: started with Config.Join on an empty store (no bootstrap).
	joining bool
	removed bool
	// membersChanged: a configuration change was applied in this Ready.
	membersChanged bool
	promotedTerm   uint64
	promotedAt     uint64
	// pref: the preferred-leader state (preference.go).
	pref preference
	// confGen counts configuration and record changes; cache holds what
	// is derived from them (membership.go).
	confGen uint64
	cache   confCache
}

// New starts a node from its store at now: it bootstraps an empty store
// with every member as a voter, checks the store's identity, and sets the
// vote guard (docs/safety.md).
func New(cfg Config, now time.Time) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Rand == nil {
		return nil, errors.New("core: Config.Rand is required (seed it: the core reads no randomness of its own)")
	}
	if cfg.MaxAppendBytes == 0 {
		cfg.MaxAppendBytes = defaultMaxAppendBytes
	}
	et := time.Duration(cfg.ElectionTicks) * cfg.Tick
	n := &Node{
		cfg:             cfg,
		log:             cfg.Logger,
		store:           cfg.Storage,
		rand:            cfg.Rand,
		electionTimeout: et,
		lease:           newLeaseTracker(et, cfg.Tick, cfg.DriftMargin),
		acks:            map[uint64]Ack{},
		hbRespAt:        map[uint64]time.Time{},
		differing:       map[uint64]bool{},
		members:         map[uint64]Member{},
	}
	if len(cfg.Members) > 0 {
		n.cfg.Names = map[uint64]string{}
		for _, m := range cfg.Members {
			if m.ID != NodeID(m.Name) {
				return nil, fmt.Errorf("core: member %q has ID %x, not the ID of its name", m.Name, m.ID)
			}
			n.cfg.Names[m.ID] = m.Name
		}
	}
	n.lease.override = cfg.Bugs.LeaseLength
	fresh := n.store.Fresh()
	hs, cs, err := n.store.InitialState()
	if err != nil {
		return nil, fmt.Errorf("read raft state: %w", err)
	}
	snap, err := n.store.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("read raft snapshot: %w", err)
	}
	n.confState = cs
	n.configurationChanged()
	n.applied, n.appliedTerm = snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	rc := &raft.Config{
		ID:              cfg.ID,
		ElectionTick:    cfg.ElectionTicks,
		HeartbeatTick:   1,
		Storage:         n.store,
		Applied:         n.applied,
		MaxSizePerMsg:   cfg.MaxAppendBytes,
		MaxInflightMsgs: 64,
		CheckQuorum:     true,
		PreVote:         true,
		// A leader removed from the configuration (a replace of the leader
		// itself) steps down as soon as the change applies.
		StepDownOnRemoval: true,
		Logger:            cfg.RaftLogger,
	}
	if rc.Logger == nil {
		rc.Logger = discardRaftLogger{}
	}
	n.rn, err = raft.NewRawNode(rc)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	last, _ := n.store.LastIndex()
	n.joining = raft.IsEmptyHardState(hs) && last == 0 && cfg.Join
	if raft.IsEmptyHardState(hs) && last == 0 && !cfg.Join {
		// Each bootstrap entry carries its member's record, so that every
		// node, and every node added later, learns addresses, witnesses
		// and priorities from the log, not from its own configuration.
		peers := make([]raft.Peer, 0, len(n.cfg.Names))
		for _, id := range slices.Sorted(maps.Keys(n.cfg.Names)) {
			m := Member{ID: id, Name: n.cfg.Names[id]}
			for _, cm := range cfg.Members {
				if cm.ID == id {
					m = cm
				}
			}
			m.Learner, m.Replaces = false, 0
			peers = append(peers, raft.Peer{ID: id, Context: membersContext(m)})
		}
		if err := n.rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("bootstrap raft: %w", err)
		}
	}
	if err := n.applySnapshotData(now, snap.GetData()); err != nil {
		return nil, err
	}
	ident, err := n.store.Identity()
	if err != nil {
		return nil, fmt.Errorf("read raft store identity: %w", err)
	}
	if err := CheckStoreIdentity(ident, cfg.Name, cfg.ClusterID); err != nil {
		return nil, err
	}

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
	guard := et
	liftOnLeader := !fresh
	if prev := ident.ElectionTimeout; prev > et {
		guard, liftOnLeader = prev, false
		n.tickFrom = now.Add(prev - et)
		n.lowerTimeoutAt = now.Add(prev)
	}
	if fresh {
		guard = max(guard, 2*et)
	}
	if fresh && ident.NeverRan {
		// Explicitly bootstrapped for a brand-new cluster: no vote cast,
		// no promise made, nothing to guard (storage.MarkNeverRan).
		guard = 0
	}
	if cfg.Bugs.NoVoteGuard {
		guard, n.tickFrom = 0, time.Time{}
	}
	n.guard = stepGuard{rn: n.rn, store: n.store, voteGuardUntil: now.Add(guard), liftOnLeader: liftOnLeader,
		againstBatchStart: cfg.Bugs.ChecksAgainstBatchStart, electionsHeld: n.ElectionsHeld, isVoter: n.isVoter}
	n.guardLen = guard
	n.identity = ident
	n.identity.Node, n.identity.NeverRan = cfg.Name, false
	n.identity.ElectionTimeout = max(ident.ElectionTimeout, et)
	if n.identity != ident {
		if err := n.store.SetIdentity(n.identity); err != nil {
			return nil, err
		}
	}
	st := n.rn.BasicStatus()
	n.term, n.vote = st.GetTerm(), st.GetVote()
	// If no leader is heard from meanwhile, campaign once the guard is over
	// and an election timeout has passed (see campaignIfLeaderSilent).
	n.campaignAt = now.Add(max(guard, et) + n.campaignDelay())
	return n, nil
}

// TakeOutput returns what the inputs since the last call asked for, and
// forgets it.
func (n *Node) TakeOutput() Output {
	o := n.out
	n.out = Output{}
	return o
}

// NextWake returns when the node needs an input next if nothing else
// happens (Wake): a campaign timer or the lease's end. Ticks come anyway
// (NextTick).
func (n *Node) NextWake() time.Time {
	w := n.campaignAt
	if n.holding && (w.IsZero() || n.expiry.Before(w)) {
		w = n.expiry
	}
	return w
}

// NextTick returns when the driver calls Tick next (zero before the first
// tick: within a heartbeat of the start). Usually a heartbeat after the
// last tick; but a follower's ticks ride on its leader's heartbeats
// (rideTick), and while they come, its driver's tick timer never fires.
func (n *Node) NextTick() time.Time { return n.nextTick }

// Ticks counts raft's ticks so far.
func (n *Node) Ticks() uint64 { return n.ticks }

// Tick advances raft's clock by one heartbeat, after the ticks a follower
// deferred that are due by now. The driver calls it when NextTick is due,
// and never earlier: ticks closer together than a heartbeat would shorten
// a follower's promise (docs/safety.md).
func (n *Node) Tick(now time.Time) error {
	n.catchUp(now)
	n.owedFrom = time.Time{}
	n.nextTick = now.Add(n.cfg.Tick)
	return n.tick(now)
}

// rideTick ticks a follower that has just stepped its leader's heartbeat
// (or append): raft's election timer has just restarted, and a tick now is
// the "first tick at once" its promise already allows for (docs/safety.md,
// "The argument", 1). The ticks after it would only count the election
// timer up until, at the (election timeout - 1)-th, raft could act on the
// count (a campaign, a vote granted): they are deferred, due a heartbeat
// and a random fraction of one from now and then every heartbeat, and
// stepped at the node's next input (catchUp) or when the driver ticks at
// the last one. The next heartbeat restarts the timer first, so an idle
// follower wakes once per heartbeat, not twice, and its raft counts exactly
// as if it had ticked at each of those times.
//
// The fraction is random for the same reason raft's election timeouts are:
// the followers of a leader that is gone all heard its last heartbeat at
// about the same time, and ticks on one grid would have those that drew the
// same timeout campaign at the same moment and split the vote, again and
// again (the simulator found a cluster without a leader 4 s after its
// faults ended, seed 57889). A ticker of its own gave each node a random
// phase; this gives it one per heartbeat.
func (n *Node) rideTick(now time.Time) error {
	n.owedFrom = now.Add(n.cfg.Tick + time.Duration(n.rand.Int64N(int64(n.cfg.Tick))))
	n.nextTick = n.owedFrom.Add(time.Duration(max(n.cfg.ElectionTicks-2, 0)) * n.cfg.Tick)
	return n.tick(now)
}

// catchUp steps the deferred ticks due by now, each as of when it fell
// due, the last one (nextTick) excepted: that one is the driver's.
func (n *Node) catchUp(now time.Time) {
	for !n.owedFrom.IsZero() && n.owedFrom.Before(n.nextTick) && !now.Before(n.owedFrom) {
		n.ticks++
		if n.owedFrom.After(n.tickFrom) {
			n.rn.Tick()
		}
		n.owedFrom = n.owedFrom.Add(n.cfg.Tick)
	}
}

// noteStall notices that this node's inputs stopped for longer than its
// timers allow: a tick comes at least every election timeout (a follower
// that defers its ticks) and every heartbeat otherwise, so a gap of more
// than an election timeout and a heartbeat means the process was stopped
// or held. Messages read just after such a stall may have waited for all
// of it; MsgTimeoutNow among them is refused (stepGuard), for a heartbeat.
func (n *Node) noteStall(now time.Time) {
	if !n.lastInput.IsZero() && now.Sub(n.lastInput) > n.electionTimeout+n.cfg.Tick {
		n.guard.stalledUntil = now.Add(n.cfg.Tick)
	}
	n.lastInput = now
}

// stopDeferringUnlessFollowing: only a follower with a leader defers ticks
// (every other role acts on them: a leader's are its heartbeats); any other
// takes the next deferred one as the driver's.
func (n *Node) stopDeferringUnlessFollowing() {
	if !n.owedFrom.IsZero() && (n.role != raft.StateFollower || n.lead == 0) {
		n.nextTick, n.owedFrom = n.owedFrom, time.Time{}
	}
}

func (n *Node) tick(now time.Time) error {
	n.ticks++
	if now.After(n.tickFrom) {
		n.rn.Tick()
	}
	if err := n.lowerRecordedTimeout(now); err != nil {
		return err
	}
	if err := n.afterInput(now); err != nil {
		return err
	}
	n.handAwayIfWitness(now)
	if err := n.considerFailBack(now); err != nil {
		n.log.Debug("fail-back", "err", err)
	}
	return n.afterInput(now)
}

// Advance processes raft's pending Ready, if any, and brings leadership up
// to date, as every input does at its end (tests that step the RawNode
// directly use it).
func (n *Node) Advance(now time.Time) error { return n.afterInput(now) }

// RawNode is the node's raft, for tests and fuzzers that set raft up
// directly. Stepping it bypasses every check of this package.
func (n *Node) RawNode() *raft.RawNode { return n.rn }

// Wake runs the timers due at now (NextWake).
func (n *Node) Wake(now time.Time) error {
	n.catchUp(now)
	if !n.campaignAt.IsZero() && !now.Before(n.campaignAt) {
		n.campaignAt = time.Time{}
		n.campaignIfLeaderSilent(now)
	}
	return n.afterInput(now)
}

// afterInput processes raft's Ready, if any, and brings leadership up to
// date: every input ends with it.
func (n *Node) afterInput(now time.Time) error {
	observed, err := n.handleReady(now)
	if err != nil {
		return err
	}
	if !observed {
		n.observe(now)
	}
	n.handOffIfLeaving(now)
	n.stopDeferringUnlessFollowing()
	n.noteStall(now)
	// Observing can propose (the cluster ID, once), which leaves a new
	// Ready in raft: save and hand it out now, not at the next input (a
	// heartbeat later, or never in a driver that waits for the network).
	for range 2 {
		if !n.rn.HasReady() {
			break
		}
		if _, err := n.handleReady(now); err != nil {
			return err
		}
	}
	return nil
}

// Step hands a batch of inbound messages from peer `from`, stamped `sent`
// by its transport, to raft (see stepGuard.stepBatch), and returns the
// acknowledgement to answer with. Messages that fail the state checks are
// not stepped; rejected is told of each (it may be nil). The error is the
// store's: the driver must stop.
func (n *Node) Step(now time.Time, from uint64, msgs []*raftpb.Message, sent Stamp, rejected func(*raftpb.Message, error)) (Ack, error) {
	if rejected == nil {
		rejected = func(*raftpb.Message, error) {}
	}
	n.catchUp(now) // raft's election clock as of now, before it judges a vote request
	n.noteStall(now)
	msgs = n.withoutTransfersToWitness(msgs, rejected)
	ready := func() error { _, err := n.handleReady(now); return err }
	resetBy, campaign, err := n.guard.stepBatch(msgs, now, ready, rejected)
	if campaign {
		n.candidateSeenAt = now
	}
	if err != nil {
		return n.acks[from], err
	}
	// Raft resets a follower's election timer on a heartbeat, append or
	// snapshot from the leader of its current term, and on nothing else. If
	// the batch held one and we now follow its sender in its term, that
	// reset happened: acknowledge the batch's stamp for the sender's lease.
	reset := false
	if st := n.rn.BasicStatus(); resetBy != 0 && resetBy == st.GetTerm() && st.Lead == from {
		n.acks[from] = Ack{Stamp: sent, Term: st.GetTerm(), Leader: st.Lead, Promise: n.promise()}
		n.guard.leaderHeard()
		n.leaderHeard(now, from)
		reset = true
	}
	if err := n.afterInput(now); err != nil || !reset {
		return n.acks[from], err
	}
	return n.acks[from], n.rideTick(now)
}

// Acked records peer's acknowledgement of what we sent at sentAt (the
// driver's reading of the echoed stamp): in term, it followed leader and
// promised no vote for promise after stepping it. Only an acknowledgement
// of us as leader counts for the lease; one of our own term is also stepped
// as the peer's heartbeat response (heartbeat responses do not travel as
// messages, see WithoutHeartbeatResponses).
func (n *Node) Acked(now time.Time, peer uint64, ack Ack, sentAt time.Time) error {
	if ack.Leader != n.cfg.ID || !n.isMember(peer) || peer == n.cfg.ID {
		return nil
	}
	n.lease.ack(peer, ack.Term, sentAt, ack.Promise)
	if ack.Term == n.term {
		n.pref.heard(peer, now, n.cfg.Tick)
	}
	// Raft expects a heartbeat response about once per heartbeat, and
	// answers each with an append while the peer is not caught up (or is
	// probed). Every batch's answer carries an acknowledgement, appends'
	// too: stepping each would answer every append with another append, a
	// ping-pong at the round-trip rate for as long as the peer lags (the
	// simulator found it). So at most one per half heartbeat per peer.
	if n.guard.ackTerm(ack.Term) && now.Sub(n.hbRespAt[peer]) >= n.cfg.Tick/2 {
		n.hbRespAt[peer] = now
		t, from, to := ack.Term, peer, n.cfg.ID
		if err := n.rn.Step(&raftpb.Message{Type: raftpb.MsgHeartbeatResp.Enum(), From: &from, To: &to, Term: &t}); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
			n.log.Warn("step acknowledged heartbeat", "peer", n.name(peer), "err", err)
		}
	}
	return n.afterInput(now)
}

// ReportUnreachable tells raft that a send to peer failed.
func (n *Node) ReportUnreachable(now time.Time, peer uint64) error {
	n.rn.ReportUnreachable(peer)
	return n.afterInput(now)
}

// ReportSnapshot tells raft whether a snapshot reached peer.
func (n *Node) ReportSnapshot(now time.Time, peer uint64, failed bool) error {
	s := raft.SnapshotFinish
	if failed {
		s = raft.SnapshotFailure
	}
	n.rn.ReportSnapshot(peer, s)
	return n.afterInput(now)
}

// handleReady persists a Ready, then observes leadership, then hands out
// its messages, then applies it. It reports whether there was a Ready (and
// so whether leadership was observed).
func (n *Node) handleReady(now time.Time) (bool, error) {
	if !n.rn.HasReady() {
		return false, nil
	}
	rd := n.rn.Ready()
	if err := n.store.Save(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync); err != nil {
		return true, fmt.Errorf("persist raft state: %w", err)
	}
	// Leadership next, after the state is durable (so the event log never
	// records a term or vote that a crash could take back) and before this
	// Ready's messages leave (a lease must end before a vote for someone
	// else, say, goes out).
	n.observe(now)
	if rd.HardState != nil && (rd.HardState.GetTerm() != n.term || rd.HardState.GetVote() != n.vote) {
		n.term, n.vote = rd.HardState.GetTerm(), rd.HardState.GetVote()
		n.emit(EventState, now)
	}
	msgs := WithoutHeartbeatResponses(rd.Messages)
	if n.ElectionsHeld() || n.isWitness() {
		msgs = withoutVoteRequests(msgs) // agreement.go, witness.go
	}
	n.out.Messages = append(n.out.Messages, msgs...)
	if s := rd.Snapshot; s != nil && !raft.IsEmptySnap(s) {
		n.confState = s.GetMetadata().GetConfState()
		n.configurationChanged()
		n.applied, n.appliedTerm = s.GetMetadata().GetIndex(), s.GetMetadata().GetTerm()
		if err := n.applySnapshotData(now, s.GetData()); err != nil {
			return true, err
		}
		n.membersChanged = true
	}
	for _, ent := range rd.CommittedEntries {
		switch ent.GetType() {
		case raftpb.EntryNormal:
			if err := n.learnClusterID(now, ent.GetData()); err != nil {
				return true, err
			}
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if err := proto.Unmarshal(ent.GetData(), &cc); err != nil {
				return true, fmt.Errorf("committed configuration change %d: %w", ent.GetIndex(), err)
			}
			n.applyConfChange(&cc, ent.GetIndex())
		case raftpb.EntryConfChangeV2:
			var cc raftpb.ConfChangeV2
			if err := proto.Unmarshal(ent.GetData(), &cc); err != nil {
				return true, fmt.Errorf("committed configuration change %d: %w", ent.GetIndex(), err)
			}
			n.applyConfChange(&cc, ent.GetIndex())
		}
		n.applied, n.appliedTerm = ent.GetIndex(), ent.GetTerm()
	}
	if n.membersChanged {
		n.membersApplied(now)
	}
	n.rn.Advance(rd)
	if first, err := n.store.FirstIndex(); err == nil && n.applied > first+compactAbove {
		if err := n.store.Compact(n.applied, n.confState, n.snapshotData()); err != nil {
			return true, fmt.Errorf("compact raft log: %w", err)
		}
	}
	return true, nil
}

// observe compares raft's state with what was last reported and brings the
// lease and the events up to date.
func (n *Node) observe(now time.Time) {
	st := n.rn.BasicStatus()
	leading := st.RaftState == raft.StateLeader && st.LeadTransferee == raft.None
	if n.holding && (!leading || st.GetTerm() != n.leaseTerm) {
		// Raft stepped down (or began a transfer) while the lease still
		// held: end it before anything reports the new state, so no event
		// ever shows a follower holding a lease.
		n.endLease(now)
	}
	changed := st.RaftState != n.role || st.Lead != n.lead || st.GetTerm() != n.term || st.GetVote() != n.vote
	leaderChanged := st.Lead != n.lead
	// The vote belongs to its term: a new term starts with none, and
	// carrying the old one over would log a vote never cast.
	if st.RaftState == raft.StateCandidate && (n.role != raft.StateCandidate || st.GetTerm() != n.term) {
		n.candidateAt = now
	}
	if st.RaftState == raft.StateLeader && (n.role != raft.StateLeader || st.GetTerm() != n.term) {
		n.leaderSince = now
	}
	n.role, n.lead, n.term, n.vote = st.RaftState, st.Lead, st.GetTerm(), st.GetVote()
	if leaderChanged {
		if name := n.name(st.Lead); name != "" {
			n.log.Info("leader elected", "leader", name, "term", st.GetTerm())
		} else {
			n.log.Info("no leader", "term", st.GetTerm())
		}
		n.emit(EventLeader, now)
	}
	if changed {
		n.emit(EventState, now)
	}

	if leading && n.leaseTerm != st.GetTerm() {
		n.lease.reset(st.GetTerm(), now)
		n.leaseTerm = st.GetTerm()
	}
	if leading {
		n.proposeClusterID(st.GetTerm())
		n.promoteCaughtUpLearners(now)
	}
	var expiry time.Time
	if leading && !n.isWitness() {
		voters := n.voters()
		if n.cfg.Bugs.LeaseIgnoresOutgoing {
			voters[1] = nil
		}
		expiry = n.lease.expiry(st.GetTerm(), now, n.cfg.ID, voters)
	}
	if leading && now.Before(expiry) {
		if !n.holding {
			n.holding, n.leaseStart = true, now
			n.log.Info("started leading", "term", st.GetTerm())
			n.emit(EventLeaseStart, now)
		}
		n.expiry = expiry
	} else if n.holding {
		n.endLease(now)
	}
}

// endLease ends the lease held, if any.
func (n *Node) endLease(now time.Time) {
	if !n.holding {
		return
	}
	n.holding = false
	n.log.Info("stopped leading", "term", n.leaseTerm, "held", now.Sub(n.leaseStart).Round(time.Millisecond))
	n.out.Events = append(n.out.Events, Event{Kind: EventLeaseEnd, Role: n.role, Term: n.term, Vote: n.vote, Lead: n.lead, At: now, Token: n.leaseTerm, Start: n.leaseStart})
	n.expiry = time.Time{}
}

// Shutdown ends the lease at now, if held: the driver is stopping.
func (n *Node) Shutdown(now time.Time) { n.endLease(now) }

func (n *Node) emit(kind EventKind, now time.Time) {
	e := Event{Kind: kind, Role: n.role, Term: n.term, Vote: n.vote, Lead: n.lead, At: now}
	if kind == EventLeaseStart {
		e.Token, e.Start = n.leaseTerm, n.leaseStart
	}
	n.out.Events = append(n.out.Events, e)
}

// promise is what this node promises a leader whose heartbeat or append it
// just stepped: no vote and no campaign for one election timeout of its
// own, less the tick that may come at once (see leaseTracker).
func (n *Node) promise() time.Duration { return n.electionTimeout - n.cfg.Tick }

// WithoutHeartbeatResponses removes MsgHeartbeatResp from msgs, in place.
//
// Heartbeat responses do not travel as messages: the acknowledgement that
// answers the leader's batch already says that the follower stepped its
// heartbeats and follows it in its term (what the lease is built on), and
// the leader steps a MsgHeartbeatResp on the follower's behalf from that
// (see Acked). That halves the traffic of an idle cluster: followers send
// nothing at all while they have nothing to say.
func WithoutHeartbeatResponses(msgs []*raftpb.Message) []*raftpb.Message {
	out := msgs[:0]
	for _, m := range msgs {
		if m.GetType() != raftpb.MsgHeartbeatResp {
			out = append(out, m)
		}
	}
	return out
}

// A read-only view for drivers and tests.

// Status is raft's basic status.
func (n *Node) Status() raft.BasicStatus { return n.rn.BasicStatus() }

// Lease reports whether the node holds its lease, for which term, since
// when and until when (unless renewed).
func (n *Node) Lease() (held bool, term uint64, start, expiry time.Time) {
	return n.holding, n.leaseTerm, n.leaseStart, n.expiry
}

// LastAck returns when we sent what peer last acknowledged in the current
// term (zero if nothing).
func (n *Node) LastAck(peer uint64) time.Time { return n.lease.lastAck(peer) }

// VoteGuardLength is the vote guard's length at start.
func (n *Node) VoteGuardLength() time.Duration { return n.guardLen }

// LeaseLength is how long one acknowledgement with our own promise keeps
// the lease.
func (n *Node) LeaseLength() time.Duration { return n.lease.credit(n.lease.own) }

// SetLeaseLength replaces every promise in the lease (tests: to show the
// checker catches an unsafe lease).
func (n *Node) SetLeaseLength(d time.Duration) { n.lease.override = d }

// TermBudget returns how far messages may move our term at now.
func (n *Node) TermBudget(now time.Time) uint64 { return n.guard.terms.available(now) }

// AgeTermBudget moves the term budget's start d into the past (tests).
func (n *Node) AgeTermBudget(d time.Duration) { n.guard.terms.start = n.guard.terms.start.Add(-d) }

// LiftVoteGuard ends the vote guard at once (tests that must reach raft).
func (n *Node) LiftVoteGuard() { n.guard.voteGuardUntil = time.Time{} }

// ClusterID is the cluster ID this node recorded ("" if none yet).
func (n *Node) ClusterID() string { return n.identity.ClusterID }

type discardRaftLogger struct{}

func (discardRaftLogger) Debug(...any)            {}
func (discardRaftLogger) Debugf(string, ...any)   {}
func (discardRaftLogger) Info(...any)             {}
func (discardRaftLogger) Infof(string, ...any)    {}
func (discardRaftLogger) Warning(...any)          {}
func (discardRaftLogger) Warningf(string, ...any) {}
func (discardRaftLogger) Error(...any)            {}
func (discardRaftLogger) Errorf(string, ...any)   {}
func (discardRaftLogger) Fatal(v ...any)          { panic(fmt.Sprint(v...)) }
func (discardRaftLogger) Fatalf(f string, v ...any) {
	panic(fmt.Sprintf(f, v...))
}
func (discardRaftLogger) Panic(v ...any)            { panic(fmt.Sprint(v...)) }
func (discardRaftLogger) Panicf(f string, v ...any) { panic(fmt.Sprintf(f, v...)) }

// NodeID is the raft ID of the node called name: the FNV-1a 64-bit hash of
// the name, the same on every node without coordination.
func NodeID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// RoleName is how logs, the event log and the status name a raft role.
func RoleName(s raft.StateType) string {
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
