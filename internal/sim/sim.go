// Package sim runs clusters of the real core (internal/core) in one
// goroutine, under a simulated network and simulated clocks, and checks each
// run's history with the checker (package checker).
//
// One schedule is a seed: it picks the cluster's size, each node's clock
// rate (within the drift bound of docs/safety.md), the network's delays,
// loss and duplication, and a list of faults (partitions both ways and one
// way, refused connections from live peers, crashes with durable or lost
// state, pauses, slow disks, a hostile leader), and then runs every node's
// ticks, timers and messages in true-time order. Nothing reads the wall
// clock, and every random choice comes from the schedule's seed, so a seed
// replays byte for byte: Result.TraceHash is the hash of every step taken.
// (Raft draws its randomized election timeouts from crypto/rand; the tests
// make that deterministic with testing/cryptotest.SetGlobalRandom.)
//
// The network stands in for the transport (transport/): a batch of messages
// per destination, stamped by the sender, answered with the receiver's
// acknowledgement, lost, delayed, duplicated or refused as a fault says;
// a send that cannot arrive in half an election timeout is reported
// unreachable, as the transport's deadline does.
//
// With Options.Membership, three schedules in four also change the
// membership while the faults happen: spare nodes join, members are
// removed and replaced, witnesses and priorities appear, faults are timed
// around the changes, and the checks learn membership (membership.go).
package sim

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/checker"
	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/internal/core"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/storage"
	"github.com/raftelect/raftelect/transport"
)

// Timings of every schedule: the timings the chaos scenarios use.
const (
	Tick            = 100 * time.Millisecond
	ElectionTicks   = 10
	ElectionTimeout = ElectionTicks * Tick
	DriftMargin     = 0.1
	// MaxRateSkew bounds each clock's rate around true time: 1 +/- this.
	// Two clocks then differ in rate by at most (1.045/0.955) = 9.4 %,
	// inside the 10 % that docs/safety.md assumes.
	MaxRateSkew = 0.045
)

// Options choose what a schedule may do.
type Options struct {
	// Duration of each schedule in simulated time (0: 12 s).
	Duration time.Duration
	// Refusals from live peers (firewall reject rules, proxies) are among
	// the faults.
	Refusals bool
	// Hostile: one node, when it leads, sends a crafted batch to a follower
	// whose log its append truncates: the append and a heartbeat whose
	// commit is the follower's last index before the batch.
	Hostile bool
	// FastFailoverOnRefusal is the core's option of that name.
	FastFailoverOnRefusal bool
	// Bugs put known bugs back into every node (core.Bugs).
	Bugs core.Bugs
	// Membership: spare nodes join and members are added, removed and
	// replaced while faults happen (membership.go).
	Membership bool
	// RefuseUnknown: in membership schedules whose network refuses
	// non-members, a receiver refuses every sender its applied
	// configuration does not name, not only the members it removed.
	RefuseUnknown bool
	// Focus, if set, draws faults of these kinds only ("partition",
	// "one-way", "crash", "pause", "slow-disk", "reject", "reject-all"),
	// two to five of them: a test that hunts one bug says where to look.
	Focus []string
	// MaxSteps bounds the core inputs of one schedule (0: 200,000, about
	// 100 times a quiet run's); more is reported as a violation: a
	// message storm or a livelock.
	MaxSteps int
	// Trace, if set, receives every step as a line (for reading a failing
	// seed); it does not change the run.
	Trace func(string)
	// SyncSends puts a fixed driver bug back: messages sent on the node's
	// own loop, one destination after the other, each waiting for its
	// answer, or for the synchronous deadline (2 election timeouts) from a
	// peer that never answers (transport.Options.SyncSend, the reference
	// system before its fix). The node takes no input meanwhile.
	SyncSends bool
	// plan, if set, replaces the drawn faults: a test of this package
	// places its own at fixed times (scenario_test.go).
	plan func(s *sim)
}

// Result is one schedule's outcome.
type Result struct {
	Seed       uint64
	Nodes      int
	Violations []string
	Report     checker.Report
	TraceHash  uint64
	Steps      int // inputs handled by cores
	Faults     []string
	Forged     int // crafted batches the hostile leader sent
	// Membership schedules: changes planned and done, faults timed around
	// them that fired, and whether the end check ran (the run ended quiet).
	Changes, ChangesDone, Triggered int
	Settled                         bool
}

// OK reports whether the schedule broke no promise.
func (r Result) OK() bool { return len(r.Violations) == 0 }

// FNV-1a, 64 bits, for the trace hash.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// base is the origin of every simulated clock.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type eventKind uint8

const (
	evTick eventKind = iota + 1
	evWake
	evDeliver
	evAck
	evUnreachable
	evRefused
	evFault
	evNotMember   // the receiver refused the sender as no member
	evMemberAgain // a receiver that had refused the sender accepted it
)

type event struct {
	at   time.Duration // true time
	seq  uint64
	kind eventKind
	node int // the node it is for
	inc  uint64
	// evDeliver, evAck, evUnreachable, evRefused
	from  int
	msgs  []*raftpb.Message
	stamp core.Stamp
	ack   core.Ack
	// evFault
	fault func()
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type node struct {
	idx   int
	id    uint64
	name  string
	rate  float64       // local seconds per true second
	skew  time.Duration // local clock at true time 0
	core  *core.Node
	store storage.Store
	inc   uint64 // incarnation: a new process after each restart
	up    bool
	// pausedUntil/busyUntil: the process is stopped (SIGSTOP) or its disk
	// is slow; inputs wait until then (true time).
	pausedUntil time.Duration
	busyUntil   time.Duration
	diskDelay   time.Duration
	wakeAt      time.Time // the core's NextWake when last scheduled
	tickAt      time.Time // the core's NextTick when last scheduled
	// the lease as the application sees it
	leaseOpen   bool
	leaseToken  uint64
	leaseExpiry time.Time // local
	// Membership schedules (membership.go): a spare starts with
	// Config.Join; witness and priority are its record; gone: it stopped
	// after it learnt it was removed; members and voter cache its applied
	// configuration; refusedBy: peers that refused it as no member, and
	// its node was told.
	spare    bool
	witness  bool
	priority int
	gone     bool
	members  map[uint64]bool
	former   map[uint64]bool // members its applied configuration removed
	voter    bool
	// lostUnder: the term of the leader that led when it restarted
	// without its state (membership schedules).
	lostUnder uint64
	// membersChanged: the current input applied a configuration change.
	membersChanged bool
	refusedBy      map[int]bool
}

type link struct {
	drop   bool // every packet silently dropped
	reject bool // connections refused (a reject rule): the peer may be alive
}

// sim is one schedule.
type sim struct {
	opts    Options
	rng     *rand.Rand
	now     time.Duration
	seq     uint64
	q       eventQueue
	nodes   []*node
	names   map[uint64]string
	links   [][]link
	loss    float64 // per send: one retransmission timeout of delay
	dup     float64
	minLat  time.Duration
	maxLat  time.Duration
	hostile int // -1: none
	events  []eventlog.Event
	hash    uint64
	buf     []byte // trace's scratch
	steps   int
	bad     []string
	faults  []string
	forged  int
	m       *membership // nil: the membership never changes
	seed    uint64
}

// Run runs the schedule of seed.
func Run(seed uint64, opts Options) (res Result) {
	if opts.Duration == 0 {
		opts.Duration = 12 * time.Second
	}
	s := &sim{seed: seed, opts: opts, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), hostile: -1}
	s.hash = fnvOffset
	n := 3
	if s.rng.IntN(3) == 0 {
		n = 5
	}
	s.names = map[uint64]string{}
	for i := range n {
		name := "n" + strconv.Itoa(i+1)
		s.names[core.NodeID(name)] = name
	}
	s.minLat = time.Duration(s.rng.IntN(5)+1) * time.Millisecond / 2
	s.maxLat = s.minLat + time.Duration(s.rng.IntN(int(Tick/time.Millisecond)))*time.Millisecond
	s.loss = []float64{0, 0, 0.05, 0.2, 0.3}[s.rng.IntN(5)]
	s.dup = []float64{0, 0, 0.02, 0.1}[s.rng.IntN(4)]
	if opts.Hostile {
		s.hostile = s.rng.IntN(n)
	}
	for i := range n {
		name := "n" + strconv.Itoa(i+1)
		nd := &node{idx: i, id: core.NodeID(name), name: name,
			rate: 1 + (s.rng.Float64()*2-1)*MaxRateSkew,
			skew: time.Duration(s.rng.Int64N(int64(time.Hour))),
		}
		s.nodes = append(s.nodes, nd)
	}
	if opts.Membership && s.rng.IntN(4) != 0 {
		s.planMembership() // a quarter of the schedules keep their members
	}
	s.links = make([][]link, len(s.nodes))
	for i := range s.links {
		s.links[i] = make([]link, len(s.nodes))
	}
	defer func() {
		if p := recover(); p != nil {
			s.violation(fmt.Sprintf("panic: %v", p))
			res = s.result(seed)
		}
	}()
	for _, nd := range s.nodes {
		if !nd.spare {
			s.start(nd, storage.NewMemory())
		}
	}
	if opts.plan != nil {
		opts.plan(s)
	} else {
		s.planFaults()
	}
	if s.m != nil {
		s.describeMembership()
	}
	if opts.MaxSteps == 0 {
		opts.MaxSteps = 200_000
	}
	runFor := opts.Duration
	if s.m != nil {
		// Faults and changes are drawn within Duration; a quiet tail lets
		// the end check see most schedules settle.
		runFor += QuietTail
	}
	for s.q.Len() > 0 {
		e := heap.Pop(&s.q).(*event)
		if e.at > runFor {
			break
		}
		if s.steps > opts.MaxSteps {
			s.violation(fmt.Sprintf("more than %d inputs in %v: a message storm or a livelock", opts.MaxSteps, runFor))
			break
		}
		s.now = e.at
		s.handle(e)
	}
	s.now = runFor
	if s.m != nil {
		s.m.settled = s.checkSettled()
	}
	for _, nd := range s.nodes {
		if nd.up {
			s.closeLease(nd, s.now)
		}
	}
	return s.result(seed)
}

func (s *sim) result(seed uint64) Result {
	rep := checker.Check(s.events, checker.Options{LostStateRestarts: true})
	for _, v := range rep.Violations {
		s.bad = append(s.bad, v.String())
	}
	r := Result{Seed: seed, Nodes: len(s.nodes), Violations: s.bad, Report: rep, TraceHash: s.hash, Steps: s.steps, Faults: s.faults, Forged: s.forged}
	if m := s.m; m != nil {
		r.Changes, r.ChangesDone, r.Settled = len(m.ops), m.done, m.settled
		for _, tr := range m.triggers {
			if tr.fired {
				r.Triggered++
			}
		}
	}
	return r
}

func (s *sim) violation(v string) {
	s.bad = append(s.bad, fmt.Sprintf("at %v: %s", s.now, v))
}

// trace folds a step into the trace hash (FNV-1a over the time and every
// argument's value), and, with Options.Trace, formats it as a line. Only
// then is anything formatted: tracing costs a few hashes per step.
func (s *sim) trace(format string, args ...any) {
	b := s.buf[:0]
	b = strconv.AppendInt(b, int64(s.now), 10)
	b = append(b, format...)
	for _, a := range args {
		switch v := a.(type) {
		case string:
			b = append(b, v...)
		case uint64:
			b = strconv.AppendUint(b, v, 10)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case time.Duration:
			b = strconv.AppendInt(b, int64(v), 10)
		case bool:
			b = strconv.AppendBool(b, v)
		case []*raftpb.Message:
			b = appendMessages(b, v)
		default:
			b = fmt.Append(b, v)
		}
		b = append(b, 0)
	}
	h := s.hash
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	s.hash, s.buf = h, b
	if s.opts.Trace != nil {
		for i, a := range args {
			if m, ok := a.([]*raftpb.Message); ok {
				args[i] = string(appendMessages(nil, m))
			}
		}
		s.opts.Trace(fmt.Sprintf("%12v ", s.now) + fmt.Sprintf(format, args...))
	}
}

func (s *sim) push(e *event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

// local is node nd's clock at true time t.
func (nd *node) local(t time.Duration) time.Time {
	return base.Add(nd.skew + time.Duration(float64(t)*nd.rate))
}

// trueTime is the earliest true time at which nd's clock reads l or later.
func (nd *node) trueTime(l time.Time) time.Duration {
	t := time.Duration(float64(l.Sub(base)-nd.skew) / nd.rate)
	for nd.local(t).Before(l) {
		t++
	}
	return t
}

// start boots nd's process on store at the current time.
func (s *sim) start(nd *node, store storage.Store) {
	nd.inc++
	nd.wakeAt, nd.tickAt = time.Time{}, time.Time{}
	nd.up, nd.store = true, store
	// The term the store held: 0 for an empty one (which New then
	// bootstraps into term 1), so that the checker can tell a restart that
	// lost its state from a term that went back.
	hs, _, _ := store.InitialState()
	nd.pausedUntil, nd.busyUntil = 0, 0
	cfg := core.Config{
		ID: nd.id, Name: nd.name, Names: s.names, Storage: store,
		Tick: Tick, ElectionTicks: ElectionTicks, DriftMargin: DriftMargin,
		FastFailoverOnRefusal: s.opts.FastFailoverOnRefusal,
		Rand:                  rand.New(rand.NewPCG(s.rng.Uint64(), s.rng.Uint64())),
		Bugs:                  s.opts.Bugs,
	}
	if s.m != nil {
		s.configure(nd, store, &cfg)
	}
	c, err := core.New(cfg, nd.local(s.now))
	if err != nil {
		s.violation(fmt.Sprintf("%s could not start: %v", nd.name, err))
		nd.up = false
		return
	}
	nd.core = c
	if s.m != nil {
		nd.refusedBy, nd.members, nd.former = nil, nil, nil
		s.refreshMembers(nd)
		s.disturbed()
	}
	s.log(nd, eventlog.Event{Kind: eventlog.KindStart, Term: hs.GetTerm(), Vote: s.names[hs.GetVote()], Role: "follower"})
	s.trace("%s start inc=%d term=%d", nd.name, nd.inc, hs.GetTerm())
	// The first tick comes within one tick of the start.
	s.push(&event{at: s.now + time.Duration(s.rng.Int64N(int64(Tick))), kind: evTick, node: nd.idx, inc: nd.inc})
	s.scheduleTimers(nd)
}

func (s *sim) log(nd *node, e eventlog.Event) {
	e.Mono, e.Node = int64(s.now), nd.name
	s.events = append(s.events, e)
}

// handle runs one event.
func (s *sim) handle(e *event) {
	switch e.kind {
	case evFault:
		e.fault()
		s.disturbed()
		return
	}
	nd := s.nodes[e.node]
	if !nd.up || e.inc != nd.inc {
		return // for a process that is gone
	}
	if wait := max(nd.pausedUntil, nd.busyUntil); wait > s.now {
		e.at = wait // the process runs again then; its inputs wait
		s.push(e)
		return
	}
	switch e.kind {
	case evTick:
		// As the driver does: tick when the core's next tick is due, not
		// before (a follower's tick rides on its leader's heartbeats and
		// moves it).
		if t := nd.core.NextTick(); !t.IsZero() && nd.local(s.now).Before(t) {
			return // moved since it was scheduled
		}
		s.input(nd, func(now time.Time) error { return nd.core.Tick(now) }, "tick")
	case evWake:
		if w := nd.core.NextWake(); w.IsZero() || nd.local(s.now).Before(w) {
			return // moved since it was scheduled
		}
		s.input(nd, func(now time.Time) error { return nd.core.Wake(now) }, "wake")
	case evDeliver:
		from := s.nodes[e.from]
		if e.from == s.hostile && !s.validate(from, nd, e.msgs) {
			return
		}
		if s.m != nil && s.refusedOrLost(from, nd) {
			return
		}
		var ack core.Ack
		s.input(nd, func(now time.Time) error {
			var err error
			ack, err = nd.core.Step(now, from.id, e.msgs, e.stamp, nil)
			return err
		}, "deliver from %s %s", from.name, e.msgs)
		if ack.Stamp != (core.Stamp{}) && nd.up {
			s.sendAck(nd, from, ack)
		}
	case evAck:
		from := s.nodes[e.from]
		if e.ack.Stamp.Incarnation != nd.inc {
			return // an echo of an earlier process's stamp proves nothing
		}
		if s.m != nil && s.m.cutFlight && s.links[e.from][e.node].drop {
			s.trace("%s: ack from %s lost in flight", nd.name, from.name)
			return
		}
		sentAt := base.Add(time.Duration(e.ack.Stamp.At))
		s.input(nd, func(now time.Time) error {
			return nd.core.Acked(now, from.id, e.ack, sentAt)
		}, "ack from %s term=%d", from.name, e.ack.Term)
	case evUnreachable:
		s.input(nd, func(now time.Time) error {
			return nd.core.ReportUnreachable(now, s.nodes[e.from].id)
		}, "unreachable %s", s.nodes[e.from].name)
	case evRefused:
		s.input(nd, func(now time.Time) error {
			if err := nd.core.PeerRefused(now, s.nodes[e.from].id); err != nil {
				return err
			}
			return nd.core.ReportUnreachable(now, s.nodes[e.from].id)
		}, "refused %s", s.nodes[e.from].name)
	case evNotMember:
		by := s.nodes[e.from]
		s.input(nd, func(now time.Time) error {
			if !nd.refusedBy[by.idx] {
				if nd.refusedBy == nil {
					nd.refusedBy = map[int]bool{}
				}
				nd.refusedBy[by.idx] = true
				if err := nd.core.MembershipDiffers(now, by.id, true); err != nil {
					return err
				}
			}
			return nd.core.ReportUnreachable(now, by.id)
		}, "refused as no member by %s", by.name)
	case evMemberAgain:
		by := s.nodes[e.from]
		if !nd.refusedBy[by.idx] {
			return
		}
		delete(nd.refusedBy, by.idx)
		s.input(nd, func(now time.Time) error {
			return nd.core.MembershipDiffers(now, by.id, false)
		}, "accepted again by %s", by.name)
	}
}

// input hands one input to nd's core at the current time and does what it
// answers.
func (s *sim) input(nd *node, f func(now time.Time) error, what string, args ...any) {
	now := nd.local(s.now)
	// The application stops acting at its lease's expiry even if the core
	// is told nothing (a paused process, a slow disk): IsLeader compares
	// the clock itself. A lease renewed after that is a new one.
	if nd.leaseOpen && !now.Before(nd.leaseExpiry) {
		s.closeLeaseAt(nd, nd.trueTime(nd.leaseExpiry))
	}
	s.steps++
	s.trace("%s "+what, append([]any{nd.name}, args...)...)
	if err := f(now); err != nil {
		s.violation(fmt.Sprintf("%s: %v", nd.name, err))
		nd.up = false
		return
	}
	out := nd.core.TakeOutput()
	for _, ev := range out.Events {
		s.report(nd, ev)
	}
	// Held until its expiry by the node's clock, as IsLeader reads it: an
	// input that returns before the core looks at the lease (an
	// acknowledgement from a non-member, after a pause) leaves it held
	// with an expiry already past, which is no lease.
	if held, token, _, expiry := nd.core.Lease(); held && now.Before(expiry) {
		if !nd.leaseOpen {
			nd.leaseOpen, nd.leaseToken = true, token
			s.log(nd, eventlog.Event{Kind: eventlog.KindLeaseStart, Term: token, Role: "leader", Leader: nd.name, Token: token})
			if s.m != nil {
				s.checkLeaseStart(nd)
			}
		}
		nd.leaseExpiry = expiry
	}
	if nd.membersChanged {
		s.checkLeaseHolder(nd)
	}
	sendAt := s.now
	if nd.diskDelay > 0 {
		// A slow disk: the Ready's save takes this long, and the messages
		// leave after it.
		nd.busyUntil = s.now + nd.diskDelay
		sendAt = nd.busyUntil
	}
	s.send(nd, out.Messages, sendAt)
	s.scheduleTimers(nd)
}

func (s *sim) report(nd *node, ev core.Event) {
	switch ev.Kind {
	case core.EventState:
		s.log(nd, eventlog.Event{Kind: eventlog.KindState, Term: ev.Term, Vote: s.names[ev.Vote], Role: core.RoleName(ev.Role), Leader: s.names[ev.Lead]})
		s.trace("%s state %s term=%d vote=%s lead=%s", nd.name, core.RoleName(ev.Role), ev.Term, s.names[ev.Vote], s.names[ev.Lead])
	case core.EventLeaseEnd:
		s.closeLease(nd, s.now)
	case core.EventMembers:
		if s.m != nil {
			s.onMembers(nd)
		}
	case core.EventRemoved:
		if s.m != nil {
			s.onRemoved(nd)
		}
	case core.EventPreferred:
		// Leadership moves to a preferred member: a change like the
		// operator's (the end check waits for the cluster to settle).
		s.trace("%s hands leadership to a preferred member", nd.name)
		s.disturbed()
	}
}

// closeLease ends nd's lease as the application sees it at true time t, or
// at its expiry if that came first.
func (s *sim) closeLease(nd *node, t time.Duration) {
	if !nd.leaseOpen {
		return
	}
	s.closeLeaseAt(nd, min(t, nd.trueTime(nd.leaseExpiry)))
}

func (s *sim) closeLeaseAt(nd *node, t time.Duration) {
	nd.leaseOpen = false
	s.events = append(s.events, eventlog.Event{Mono: int64(t), Node: nd.name, Kind: eventlog.KindLeaseEnd, Token: nd.leaseToken})
	s.trace("%s lease %d ends at %v", nd.name, nd.leaseToken, t)
}

// scheduleTimers schedules the core's next wake and next tick, each when
// it moved since it was last scheduled (an event for the old time finds it
// moved and does nothing).
func (s *sim) scheduleTimers(nd *node) {
	s.schedule(nd, nd.core.NextWake(), &nd.wakeAt, evWake)
	s.schedule(nd, nd.core.NextTick(), &nd.tickAt, evTick)
}

func (s *sim) schedule(nd *node, at time.Time, last *time.Time, kind eventKind) {
	if at.IsZero() || at.Equal(*last) {
		return
	}
	*last = at
	s.push(&event{at: max(nd.trueTime(at), s.now), kind: kind, node: nd.idx, inc: nd.inc})
}

// send hands msgs to the network at true time at: one batch per
// destination, stamped with the sender's clock.
func (s *sim) send(nd *node, msgs []*raftpb.Message, at time.Duration) {
	if len(msgs) == 0 {
		return
	}
	byTo := map[uint64][]*raftpb.Message{}
	var order []uint64
	for _, m := range msgs {
		if _, ok := byTo[m.GetTo()]; !ok {
			order = append(order, m.GetTo())
		}
		byTo[m.GetTo()] = append(byTo[m.GetTo()], m)
	}
	for _, to := range order {
		dst := s.index(to)
		if dst < 0 {
			continue
		}
		batch := byTo[to]
		if nd.idx == s.hostile {
			batch = s.forge(nd, s.nodes[dst], batch)
		}
		stamp := core.Stamp{At: uint64(nd.local(at).Sub(base)), Incarnation: nd.inc}
		s.transmit(nd, s.nodes[dst], at, func(arrive time.Duration) *event {
			return &event{at: arrive, kind: evDeliver, node: dst, inc: s.nodes[dst].inc, from: nd.idx, msgs: cloneAll(batch), stamp: stamp}
		})
		if s.opts.SyncSends {
			// The next destination's batch leaves once this one is
			// answered, and the node waits for the last.
			at += s.syncWait(nd, s.nodes[dst])
			nd.busyUntil = max(nd.busyUntil, at)
		}
	}
}

// syncWait is how long a synchronous send from a to b waits: a round trip,
// a refusal's latency (a process gone, a reject rule), or the whole
// synchronous deadline for a peer that never answers.
func (s *sim) syncWait(a, b *node) time.Duration {
	switch l, back := s.links[a.idx][b.idx], s.links[b.idx][a.idx]; {
	case !b.up || l.reject:
		return s.latency()
	case l.drop || back.drop:
		return 2 * ElectionTimeout
	}
	return 2 * s.latency()
}

// sendAck answers leader's batch on the connection the leader opened: a
// reject rule does not apply to it (the connection was accepted), drops
// either way do, and a lost answer is a deadline on the leader's side.
func (s *sim) sendAck(nd, leader *node, ack core.Ack) {
	if !leader.up {
		return
	}
	deadline := ElectionTimeout / 2
	if s.links[nd.idx][leader.idx].drop {
		s.push(&event{at: s.now + deadline, kind: evUnreachable, node: leader.idx, inc: leader.inc, from: nd.idx})
		return
	}
	delay := s.latency()
	for s.rng.Float64() < s.loss {
		delay += 200*time.Millisecond + s.latency()
	}
	if delay > deadline {
		s.push(&event{at: s.now + deadline, kind: evUnreachable, node: leader.idx, inc: leader.inc, from: nd.idx})
		return
	}
	s.push(&event{at: s.now + delay, kind: evAck, node: leader.idx, inc: leader.inc, from: nd.idx, ack: ack})
}

// transmit carries one batch or answer from a to b, sent at true time at,
// as the network allows: mk makes the arrival event.
func (s *sim) transmit(a, b *node, at time.Duration, mk func(arrive time.Duration) *event) {
	deadline := ElectionTimeout / 2 // the transport's control deadline
	l := s.links[a.idx][b.idx]
	if !b.up || l.reject {
		// Nothing listens there, or a reject rule answers for it: the
		// connection is refused at once.
		if b.up || s.rng.IntN(2) == 0 { // a process gone; else its host is gone (silence)
			s.push(&event{at: at + s.latency(), kind: evRefused, node: a.idx, inc: a.inc, from: b.idx})
			return
		}
		s.push(&event{at: at + deadline, kind: evUnreachable, node: a.idx, inc: a.inc, from: b.idx})
		return
	}
	if l.drop {
		s.push(&event{at: at + deadline, kind: evUnreachable, node: a.idx, inc: a.inc, from: b.idx})
		return
	}
	delay := s.latency()
	for s.rng.Float64() < s.loss {
		delay += 200*time.Millisecond + s.latency() // a retransmission timeout
	}
	if delay > deadline {
		s.push(&event{at: at + deadline, kind: evUnreachable, node: a.idx, inc: a.inc, from: b.idx})
		return
	}
	s.push(mk(at + delay))
	if s.rng.Float64() < s.dup {
		s.push(mk(at + s.latency()))
	}
}

func (s *sim) latency() time.Duration {
	return s.minLat + time.Duration(s.rng.Int64N(int64(s.maxLat-s.minLat)+1))
}

func (s *sim) index(id uint64) int {
	for i, nd := range s.nodes {
		if nd.id == id {
			return i
		}
	}
	return -1
}

// forge is the hostile leader: a member that leads, holds a valid
// certificate and knows the follower's log. When the follower holds entries
// it has not seen committed, it replaces the batch with an append that
// overwrites the first of them (an entry of another term, so raft truncates
// the follower's log there) and a heartbeat whose commit is the follower's
// last index before the batch. The heartbeat passes every check made
// against the follower's stored log as it was before the batch, but not
// raft's log once the append has shortened it. The transport's stateless
// checks still apply (deliver runs them for the hostile node's batches).
func (s *sim) forge(nd, to *node, batch []*raftpb.Message) []*raftpb.Message {
	if !to.up || nd.core.Status().RaftState != raft.StateLeader {
		return batch
	}
	st := to.core.Status()
	commit, last := st.GetCommit(), to.lastIndex()
	if last <= commit || len(batch) == 0 {
		return batch
	}
	prevTerm, err1 := to.store.Term(commit)
	cur, err2 := to.store.Term(commit + 1)
	term := batch[0].GetTerm()
	if err1 != nil || err2 != nil || term < st.GetTerm() {
		return batch
	}
	x := term
	if cur == term {
		x = prevTerm
	}
	if x == cur || x < prevTerm {
		return batch
	}
	from, dst := nd.id, to.id
	app := &raftpb.Message{Type: raftpb.MsgApp.Enum(), From: &from, To: &dst, Term: proto.Uint64(term),
		Index: proto.Uint64(commit), LogTerm: proto.Uint64(prevTerm), Commit: proto.Uint64(commit),
		Entries: []*raftpb.Entry{{Term: proto.Uint64(x), Index: proto.Uint64(commit + 1), Type: raftpb.EntryNormal.Enum()}}}
	hb := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: &from, To: &dst, Term: proto.Uint64(term), Commit: proto.Uint64(last)}
	s.forged++
	s.trace("%s forges an append at %d (term %d over %d) and a heartbeat with commit %d to %s", nd.name, commit+1, x, cur, last, to.name)
	return []*raftpb.Message{app, hb}
}

// lastIndex is the last index raft holds on nd (its store: every input
// ends with the Ready saved).
func (nd *node) lastIndex() uint64 {
	last, _ := nd.store.LastIndex()
	return last
}

// validate runs the transport's stateless checks on a batch, as the
// receiving transport would; false if it refuses the batch.
func (s *sim) validate(from, to *node, msgs []*raftpb.Message) bool {
	if err := transport.ValidateRequest(&pb.SendRequest{Messages: msgs}); err != nil {
		s.trace("%s refuses %s's batch: %v", to.name, from.name, err)
		return false
	}
	for _, m := range msgs {
		if err := transport.ValidateInbound(m, from.id, to.id, s.names); err != nil {
			s.trace("%s refuses %s's batch: %v", to.name, from.name, err)
			return false
		}
	}
	return true
}

func cloneAll(msgs []*raftpb.Message) []*raftpb.Message {
	out := make([]*raftpb.Message, len(msgs))
	for i, m := range msgs {
		out[i] = proto.Clone(m).(*raftpb.Message)
	}
	return out
}

func appendMessages(b []byte, msgs []*raftpb.Message) []byte {
	for _, m := range msgs {
		b = append(b, ' ')
		b = append(b, m.GetType().String()...)
		b = append(b, '/')
		b = strconv.AppendUint(b, m.GetTerm(), 10)
		if m.GetType() == raftpb.MsgAppResp {
			b = append(b, ' ', 'i')
			b = strconv.AppendUint(b, m.GetIndex(), 10)
			if m.GetReject() {
				b = append(b, " reject"...)
			}
		}
		if m.GetType() == raftpb.MsgApp {
			b = append(b, ' ', 'i')
			b = strconv.AppendUint(b, m.GetIndex(), 10)
			b = append(b, '+')
			b = strconv.AppendInt(b, int64(len(m.GetEntries())), 10)
		}
		if m.GetType() == raftpb.MsgHeartbeat || m.GetType() == raftpb.MsgApp {
			b = append(b, '@')
			b = strconv.AppendUint(b, m.GetCommit(), 10)
		}
	}
	return b
}
