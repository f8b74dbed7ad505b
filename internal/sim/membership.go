package sim

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/raftelect/raftelect/internal/core"
	"github.com/raftelect/raftelect/storage"
)

// Membership in schedules (Options.Membership): spare nodes start with
// core.Config.Join and an operator adds them (AddMember on whoever leads,
// retrying on ErrNotLeader and ErrChangeInProgress as a person would),
// removes live and dead members (the leader after a transfer), replaces a
// voter in one joint change; some schedules give members witness records and
// priorities (Config.FailBackAfter). Faults are also timed around the
// changes: when a node first applies a configuration with a learner, a joint
// configuration or one without a removed member, a trigger crashes or pauses
// the leader, the new or the old member, or cuts old members from new ones
// (both ways or one way).
//
// The network models the transport's refusal of removed members in most
// schedules: a receiver whose applied configuration removed the sender
// refuses its batch, and the sender is told (the transport's NotMember and
// the membership difference it reports, which holds the sender's
// elections). A sender the receiver never knew is let through unless
// Options.RefuseUnknown: a member that missed a change would otherwise
// refuse a new leader it has not heard of yet, and so never catch up (seed
// 17 shows it with -sim.refuse-unknown). The other schedules deliver them, so that safety never rests
// on the transport alone. A removed node stops (as the daemon does on
// EventRemoved) in some schedules and keeps running and sending in others.

// membership is one schedule's membership plan and the operator's state.
type membership struct {
	orig      int               // nodes that bootstrap the cluster; the rest are spares
	bootNames map[uint64]string // the bootstrap members (Config.Names)
	records   []core.Member     // their records, with witnesses and priorities
	failBack  time.Duration
	refuse    bool // receivers refuse batches from non-members
	stop      bool // a removed node stops; else it keeps running
	cutFlight bool // a partition also drops what is in flight
	ops       []*memberOp
	triggers  []*trigger
	retry     time.Duration // the operator's pause between attempts
	// transferFirst: the operator moves leadership away before replacing
	// the leader (by the seed's parity: drawing it would move every
	// seed's schedule).
	transferFirst bool
	deadline      time.Duration // the operator gives up then
	changed       bool          // a change was proposed: a node that lost its state joins
	quietFrom     time.Duration // the last fault, heal or change; the end check needs quiet since
	done          int           // ops finished
	settled       bool          // the end check ran
}

type memberOp struct {
	kind     string // "add", "remove", "remove-leader", "remove-dead"
	node     int    // the member added or removed (remove-leader: chosen when it runs)
	replaces int    // add: the voter it replaces, or -1
	at       time.Duration
	started  bool
	finished bool
}

func (o *memberOp) String(s *sim) string {
	switch {
	case o.kind == "add" && o.replaces >= 0:
		return fmt.Sprintf("replace %s by %s at %v", s.nodes[o.replaces].name, s.nodes[o.node].name, o.at)
	case o.kind == "add":
		return fmt.Sprintf("add %s at %v", s.nodes[o.node].name, o.at)
	case o.kind == "remove-leader":
		return fmt.Sprintf("remove the leader at %v", o.at)
	default:
		return fmt.Sprintf("%s %s at %v", o.kind, s.nodes[o.node].name, o.at)
	}
}

// trigger is a fault timed around a change: it fires at the first
// configuration that matches on.
type trigger struct {
	on     string // "learner", "joint", "removed"
	action string // "crash-leader", "crash-new", "crash-old", "pause-leader", "cut-old-new", "cut-new-to-leader", "cut-leader-to-old", "restart-removed"
	delay  time.Duration
	length time.Duration
	fired  bool
}

// planMembership adds spares to the cluster and draws the operator's
// changes and the faults timed around them. It runs after the bootstrap
// nodes exist and before any starts.
func (s *sim) planMembership() {
	m := &membership{orig: len(s.nodes), bootNames: map[uint64]string{}}
	s.m = m
	// No hostile leader here: its forged appends overwrite entries a
	// majority holds, after which the logs never agree again and nothing
	// commits while it leads; with it, a third of the changes never
	// finished (seeds 1-4,000: 3,364 of 5,016 done, against 98 % without).
	// The quarter of schedules without changes keeps it.
	s.hostile = -1
	for _, nd := range s.nodes {
		m.bootNames[nd.id] = nd.name
	}
	m.refuse = s.rng.IntN(4) != 0
	m.stop = s.rng.IntN(2) == 0
	m.cutFlight = s.rng.IntN(2) == 0
	m.retry = time.Duration(100+s.rng.IntN(400)) * time.Millisecond
	m.transferFirst = s.seed%2 == 1
	end := s.opts.Duration - 2*ElectionTimeout
	m.deadline = end
	if s.rng.IntN(4) == 0 {
		// Witnesses and priorities: one bootstrap member a witness (of a
		// five, or of a three whose two others may lead), priorities on
		// the rest, and fail-back after a stable period.
		w := s.rng.IntN(m.orig)
		s.nodes[w].witness = true
		for _, nd := range s.nodes {
			if !nd.witness {
				nd.priority = s.rng.IntN(3)
			}
		}
		m.failBack = time.Duration(1+s.rng.IntN(3)) * time.Second
	}
	for _, nd := range s.nodes {
		m.records = append(m.records, core.Member{ID: nd.id, Name: nd.name, Address: nd.name + ":7000", Witness: nd.witness, Priority: nd.priority})
	}
	spares := 1 + s.rng.IntN(2)
	for i := range spares {
		name := "n" + strconv.Itoa(m.orig+i+1)
		nd := &node{idx: len(s.nodes), id: core.NodeID(name), name: name, spare: true,
			rate: 1 + (s.rng.Float64()*2-1)*MaxRateSkew,
			skew: time.Duration(s.rng.Int64N(int64(time.Hour))),
		}
		if s.witnesses() == "" && s.rng.IntN(6) == 0 {
			// At most one witness: one that is not a witness must remain
			// when a member is removed, or nobody could lead.
			nd.witness = true
		} else if m.failBack > 0 {
			nd.priority = s.rng.IntN(4)
		}
		s.names[nd.id] = name
		s.nodes = append(s.nodes, nd)
	}
	// The changes, one after another, each from a random moment.
	at := ElectionTimeout + time.Duration(s.rng.Int64N(int64(3*time.Second)))
	orig := func() int { return s.rng.IntN(m.orig) }
	add := func(spare, replaces int) {
		m.ops = append(m.ops, &memberOp{kind: "add", node: spare, replaces: replaces})
	}
	first := m.orig
	switch s.rng.IntN(6) {
	case 0: // grow by one or two
		for i := range spares {
			add(first+i, -1)
		}
	case 1, 2: // replace a voter (a region lost for good, or a planned move)
		add(first, orig())
		if spares > 1 {
			add(first+1, -1)
		}
	case 3: // remove a member, alive or dead, then grow
		kind := []string{"remove", "remove-dead"}[s.rng.IntN(2)]
		m.ops = append(m.ops, &memberOp{kind: kind, node: orig(), replaces: -1})
		add(first, -1)
	case 4: // remove the leader (after a transfer), then add a spare
		m.ops = append(m.ops, &memberOp{kind: "remove-leader", node: -1, replaces: -1})
		add(first, -1)
	case 5: // grow, then remove one of the old members
		add(first, -1)
		m.ops = append(m.ops, &memberOp{kind: []string{"remove", "remove-dead"}[s.rng.IntN(2)], node: orig(), replaces: -1})
	}
	for _, o := range m.ops {
		o.at = at
		at += time.Duration(s.rng.Int64N(int64(2 * time.Second)))
	}
	s.at(m.ops[0].at, func() { s.operate() }) // drawn first, so ops[0] is the earliest
	for _, sp := range s.nodes[m.orig:] {
		// A spare's process starts a little before it is added (or never,
		// if it is never added).
		for _, o := range m.ops {
			if o.kind == "add" && o.node == sp.idx {
				nd := sp
				s.at(max(0, o.at-time.Duration(s.rng.Int64N(int64(time.Second)))), func() {
					if nd.inc == 0 && slices.Contains(m.ops, o) {
						s.start(nd, storage.NewMemory())
					}
				})
			}
		}
	}
	// Faults timed around the changes.
	ons := []string{"learner", "joint", "joint", "removed"}
	actions := []string{"crash-leader", "crash-new", "crash-old", "pause-leader", "cut-old-new", "cut-old-new", "cut-new-to-leader", "cut-leader-to-old", "restart-removed"}
	for range s.rng.IntN(3) {
		tr := &trigger{on: ons[s.rng.IntN(len(ons))], action: actions[s.rng.IntN(len(actions))],
			length: 200*time.Millisecond + time.Duration(s.rng.Int64N(int64(3*time.Second)))}
		if s.rng.IntN(2) == 0 {
			tr.delay = time.Duration(s.rng.Int64N(int64(500 * time.Millisecond)))
		}
		if tr.action == "restart-removed" {
			tr.on = "removed"
		}
		m.triggers = append(m.triggers, tr)
	}
	if testHookPlanned != nil {
		testHookPlanned(s)
	}
}

// describeMembership lists the plan among the schedule's faults.
func (s *sim) describeMembership() {
	m := s.m
	for _, o := range m.ops {
		s.faults = append(s.faults, o.String(s))
	}
	for _, tr := range m.triggers {
		s.faults = append(s.faults, fmt.Sprintf("%s on %s after %v for %v", tr.action, tr.on, tr.delay, tr.length))
	}
	s.faults = append(s.faults, fmt.Sprintf("refuse-non-members=%v stop-removed=%v cut-in-flight=%v fail-back=%v witnesses=%v",
		m.refuse, m.stop, m.cutFlight, m.failBack, s.witnesses()))
}

// aloneWithLostState keeps a schedule whose one fault is a restart without
// state inside the model docs/safety.md gives for it: the rest of the
// cluster keeps a leader and no other node lags behind. So its changes only
// grow the cluster (a removal could leave two voters, one of them the node
// that loses its state; a removed node that comes back, or one that never
// learnt of its removal, is a node that lags behind), and no fault is timed
// around them. Seed 90529 of an earlier model shows why: n2 was removed
// while down, n1 lost its state and rejoined, and n2, back with its old
// log and members, was elected with n1's vote (the transport refused no
// one: refuse-non-members=false; and n1, empty, knew no removed member) —
// the committed removal was lost.
func (s *sim) aloneWithLostState() {
	m := s.m
	m.triggers = nil
	m.ops = slices.DeleteFunc(m.ops, func(o *memberOp) bool { return o.kind != "add" })
	for _, o := range m.ops {
		o.replaces = -1
	}
}

func (s *sim) witnesses() string {
	var w []string
	for _, nd := range s.nodes {
		if nd.witness {
			w = append(w, nd.name)
		}
	}
	return strings.Join(w, ",")
}

// disturbed notes a fault, heal or change: the end check wants the cluster
// quiet for a while before it.
func (s *sim) disturbed() {
	if s.m != nil {
		s.m.quietFrom = s.now
	}
}

// leader is the live node that leads in the highest term, or nil.
func (s *sim) leader() *node {
	var best *node
	for _, nd := range s.nodes {
		if !nd.up {
			continue
		}
		st := nd.core.Status()
		if st.RaftState == raft.StateLeader && (best == nil || st.GetTerm() > best.core.Status().GetTerm()) {
			best = nd
		}
	}
	return best
}

// operate is the operator: it works on the first unfinished change, on
// whoever leads, and comes back after m.retry until the change shows in the
// leader's applied membership.
func (s *sim) operate() {
	m := s.m
	if m.done >= len(m.ops) || s.now > m.deadline {
		return
	}
	o := m.ops[m.done]
	again := func() { s.at(s.now+m.retry, func() { s.operate() }) }
	l := s.leader()
	if l == nil || max(l.pausedUntil, l.busyUntil) > s.now {
		again() // nobody to ask, or the leader does not answer now
		return
	}
	if o.kind == "remove-dead" && !o.started {
		// The member to remove dies first (a region lost for good); the
		// operator asks whoever leads next time.
		o.started = true
		s.crash(s.nodes[o.node])
		again()
		return
	}
	if o.kind == "remove-leader" && o.node < 0 {
		o.node = l.idx
		s.trace("operator: removes the leader %s", l.name)
	}
	target := s.nodes[o.node]
	members := l.core.Members()
	var cur *core.Member
	for i := range members {
		if members[i].ID == target.id {
			cur = &members[i]
		}
	}
	addDone := o.kind == "add" && cur != nil && !cur.Learner
	switch {
	case addDone && len(l.core.RawNode().Status().Config.Voters[1]) > 0:
		// The joint configuration of a replacement: the leader leaves it
		// by itself.
	case addDone && o.replaces >= 0 && slices.ContainsFunc(members, func(mb core.Member) bool { return mb.ID == s.nodes[o.replaces].id }):
		// Promoted without removing the member it replaces (a core that
		// skipped the removal): the operator removes it now.
		s.trace("operator: %s was promoted, %s is still a member", target.name, s.nodes[o.replaces].name)
		*o = memberOp{kind: "remove", node: o.replaces, replaces: -1, at: o.at}
		s.operate()
		return
	case addDone || o.kind != "add" && cur == nil:
		s.finish(o)
		return
	case target == l && o.kind != "add" || o.kind == "add" && o.replaces == l.idx && m.transferFirst:
		// The leader does not remove itself: hand leadership over first.
		// It may replace itself (it leads the joint configuration and
		// hands leadership to a member that stays), but in half the
		// schedules the operator transfers first all the same, as the
		// advice was before the core allowed it.
		reach := map[uint64]bool{}
		for _, nd := range s.nodes {
			if nd.up && nd != l && !s.links[l.idx][nd.idx].drop {
				reach[nd.id] = true
			}
		}
		s.input(l, func(now time.Time) error {
			if err := l.core.Transfer(now, 0, reach); err != nil {
				s.trace("operator: transfer from %s: %v", l.name, err.Error())
			}
			return nil
		}, "operator transfers leadership")
	case o.kind == "add" && cur != nil:
		// A learner catching up: the leader promotes it.
	case o.kind == "add":
		rec := core.Member{Name: target.name, Address: target.name + ":7000", Witness: target.witness, Priority: target.priority}
		if o.replaces >= 0 {
			rec.Replaces = s.nodes[o.replaces].id
		}
		s.change(l, "add "+target.name, func(now time.Time) error { return l.core.AddMember(now, rec) })
	default:
		s.change(l, "remove "+target.name, func(now time.Time) error { return l.core.RemoveMember(now, target.id) })
	}
	again()
}

// change runs an AddMember or RemoveMember on l as an input (the core
// runs it like one, and its output leaves as any other).
func (s *sim) change(l *node, what string, f func(now time.Time) error) {
	var err error
	s.input(l, func(now time.Time) error { err = f(now); return nil }, "operator: "+what)
	if err == nil {
		s.m.changed = true
	}
	s.trace("operator: %s: %s", what, errText(err))
}

func errText(err error) string {
	switch {
	case err == nil:
		return "proposed"
	case errors.Is(err, core.ErrNotLeader), errors.Is(err, core.ErrChangeInProgress):
		return "wait: " + err.Error()
	default:
		return "refused: " + err.Error()
	}
}

func (s *sim) finish(o *memberOp) {
	o.finished = true
	s.m.done++
	s.disturbed()
	s.trace("operator: done: %s", o.String(s))
	if s.m.done < len(s.m.ops) {
		s.at(max(s.now, s.m.ops[s.m.done].at), func() { s.operate() })
	}
	if o.kind == "remove-dead" {
		// The dead member comes back with its old state, a member of no one's
		// configuration but its own: it keeps sending.
		nd := s.nodes[o.node]
		s.at(s.now+time.Duration(s.rng.Int64N(int64(2*time.Second))), func() {
			if !nd.gone {
				s.restart(nd, false)
				s.disturbed()
			}
		})
	}
}

// refreshMembers caches nd's applied configuration (for the network's
// refusals and the checks) after it changed.
func (s *sim) refreshMembers(nd *node) {
	prev := nd.members
	nd.members, nd.voter = map[uint64]bool{}, false
	defer func() {
		for id := range prev {
			if !nd.members[id] {
				if nd.former == nil {
					nd.former = map[uint64]bool{}
				}
				nd.former[id] = true
			}
		}
		for id := range nd.members {
			delete(nd.former, id)
		}
	}()
	for _, mb := range nd.core.Members() {
		nd.members[mb.ID] = true
		if mb.ID == nd.id && !mb.Learner {
			nd.voter = true
		}
	}
}

// onMembers: nd applied a new configuration. It checks that a lease holder
// is still a voter of it, and fires the faults timed around changes.
func (s *sim) onMembers(nd *node) {
	s.refreshMembers(nd)
	s.trace("%s members %s", nd.name, s.summary(nd))
	nd.membersChanged = true // checked once the input's events are all in (checkLeaseHolder)
	st := nd.core.RawNode().Status()
	joint := len(st.Config.Voters[1]) > 0
	learner := len(st.Config.Learners) > 0
	for _, tr := range s.m.triggers {
		if tr.fired {
			continue
		}
		o := s.currentOp()
		if o == nil {
			continue
		}
		match := false
		switch tr.on {
		case "learner":
			match = learner && o.kind == "add"
		case "joint":
			match = joint
		case "removed":
			match = o.node >= 0 && o.kind != "add" && !nd.members[s.nodes[o.node].id] || o.kind == "add" && o.replaces >= 0 && !nd.members[s.nodes[o.replaces].id]
		}
		if !match {
			continue
		}
		tr.fired = true
		s.trace("trigger: %s on %s at %s", tr.action, tr.on, nd.name)
		s.at(s.now+tr.delay, func() { s.fire(tr, o) })
	}
}

// currentOp is the change the operator works on, or nil.
func (s *sim) currentOp() *memberOp {
	if s.m.done >= len(s.m.ops) {
		return nil
	}
	return s.m.ops[s.m.done]
}

// fire runs a trigger's fault: o is the change it was timed around.
func (s *sim) fire(tr *trigger, o *memberOp) {
	s.disturbed()
	var newer, older []int // the member coming in, the ones already there
	if o.kind == "add" {
		newer = []int{o.node}
	}
	for i := range s.m.orig {
		if i != o.node {
			older = append(older, i)
		}
	}
	if o.replaces >= 0 {
		older = []int{o.replaces}
	}
	l := s.leader()
	pick := func(set []int) *node {
		if len(set) == 0 {
			return nil
		}
		return s.nodes[set[s.rng.IntN(len(set))]]
	}
	crash := func(nd *node) {
		if nd == nil || !nd.up {
			return
		}
		s.crash(nd)
		length := tr.length
		if s.rng.IntN(2) == 0 {
			length = 50*time.Millisecond + time.Duration(s.rng.Int64N(int64(450*time.Millisecond)))
		}
		s.at(s.now+length, func() { s.restart(nd, false); s.disturbed() })
	}
	cut := func(a, b []int) {
		if len(a) == 0 || len(b) == 0 {
			return
		}
		for _, i := range a {
			for _, j := range b {
				if i != j {
					s.links[i][j].drop = true
				}
			}
		}
		s.trace("fault: %s cut (%s)", tr.action, s.groupNames(a, b))
		s.at(s.now+tr.length, func() {
			for _, i := range a {
				for _, j := range b {
					if i != j {
						s.links[i][j].drop = false
					}
				}
			}
			s.trace("heal: %s", tr.action)
			s.disturbed()
		})
	}
	switch tr.action {
	case "crash-leader":
		crash(l)
	case "crash-new":
		crash(pick(newer))
	case "crash-old":
		crash(pick(older))
	case "pause-leader":
		if l != nil {
			l.pausedUntil = max(l.pausedUntil, s.now+tr.length)
			s.trace("fault: %s paused until %v", l.name, l.pausedUntil)
			s.at(l.pausedUntil, func() { s.disturbed() })
		}
	case "cut-old-new":
		// The leader and the new member on one side, the old members on
		// the other: the joint configuration's halves each hear only part
		// of the cluster.
		side := newer
		rest := []int{}
		if l != nil {
			side = append(slices.Clone(newer), l.idx)
		}
		for i := range s.nodes {
			if !slices.Contains(side, i) {
				rest = append(rest, i)
			}
		}
		if o.replaces >= 0 || s.rng.IntN(2) == 0 {
			rest = slices.DeleteFunc(rest, func(i int) bool { return i >= s.m.orig })
		}
		cut(side, rest)
		cut(rest, side)
	case "cut-new-to-leader":
		if l != nil {
			cut(newer, []int{l.idx})
		}
	case "cut-leader-to-old":
		if l != nil {
			cut([]int{l.idx}, older)
		}
	case "restart-removed":
		for _, nd := range s.nodes {
			if !nd.up && !nd.gone && nd.inc > 0 {
				s.restart(nd, false)
			}
		}
	}
}

func (s *sim) groupNames(a, b []int) string {
	var sb strings.Builder
	for _, i := range a {
		sb.WriteString(s.nodes[i].name + " ")
	}
	sb.WriteString("/")
	for _, i := range b {
		sb.WriteString(" " + s.nodes[i].name)
	}
	return sb.String()
}

// summary is nd's applied membership, for traces and reports.
func (s *sim) summary(nd *node) string {
	var sb strings.Builder
	for i, mb := range nd.core.Members() {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(mb.Name)
		if mb.Learner {
			sb.WriteString("(learner)")
		}
		if mb.Witness {
			sb.WriteString("(witness)")
		}
	}
	return sb.String()
}

// onRemoved: nd learnt that it was removed. The daemon stops; in some
// schedules the process keeps running (and sending) instead.
func (s *sim) onRemoved(nd *node) {
	s.trace("%s removed", nd.name)
	if s.m.stop {
		// After this input's output has left, as the daemon's would.
		inc := nd.inc
		s.at(s.now, func() {
			if nd.inc == inc && nd.up {
				s.crash(nd)
				nd.gone = true
				s.trace("%s stops: removed from the cluster", nd.name)
			}
		})
	}
}

// refuses reports whether nd's transport refuses a batch from `from`: one
// its applied configuration removed, as the transport refuses a removed
// member (transport.RejectRemovedMember); with Options.RefuseUnknown, also
// one its configuration never named.
func (s *sim) refuses(nd, from *node) bool {
	if !s.m.refuse || len(nd.members) == 0 || nd.members[from.id] {
		return false
	}
	return nd.former[from.id] || s.opts.RefuseUnknown
}

// checkLeaseHolder runs after an input whose events changed nd's applied
// configuration: a node that still holds its lease is a voter of it (one
// removed ends its lease in the same input, with the same events).
func (s *sim) checkLeaseHolder(nd *node) {
	nd.membersChanged = false
	if nd.leaseOpen && !nd.voter {
		s.violation(fmt.Sprintf("%s holds a lease (token %d) but is no voter of its applied configuration %s", nd.name, nd.leaseToken, s.summary(nd)))
	}
}

// checkLeaseStart: a new lease's holder is a voter of its own applied
// configuration, and no witness.
func (s *sim) checkLeaseStart(nd *node) {
	if !nd.voter {
		s.violation(fmt.Sprintf("%s took a lease (token %d) but is no voter of its applied configuration %s", nd.name, nd.leaseToken, s.summary(nd)))
	}
	if nd.witness {
		s.violation(fmt.Sprintf("%s, a witness, took a lease (token %d)", nd.name, nd.leaseToken))
	}
}

// testHookPlanned, if set, sees each membership plan before it runs (a
// test changes what the checks believe, to show that they fire).
var testHookPlanned func(*sim)

// QuietTail: a membership schedule runs this much longer than
// Options.Duration, with nothing drawn in it.
const QuietTail = 2 * time.Second

// Settle is how long a schedule must have been quiet (no fault, heal or
// change) at its end for the end check: two election timeouts of vote guard
// after a restart without state, and two to elect and spread the news.
const Settle = 4 * ElectionTimeout

// checkSettled: if the schedule ended quiet for Settle, every live member
// (of the leader's configuration) agrees with it on the membership and on
// who leads.
func (s *sim) checkSettled() bool {
	if s.now-s.m.quietFrom < Settle || s.forged > 0 {
		// Not quiet; or the hostile leader forged entries, which can leave
		// logs that never agree again (a forged entry over one committed
		// elsewhere): that fault is there to show no panic, not liveness.
		return false
	}
	for _, nd := range s.nodes {
		if nd.pausedUntil > s.m.quietFrom || nd.diskDelay > 0 {
			return false
		}
	}
	for i := range s.links {
		for j := range s.links[i] {
			if s.links[i][j].drop || s.links[i][j].reject {
				return false
			}
		}
	}
	l := s.leader()
	if l == nil {
		s.violation(fmt.Sprintf("no leader after %v without faults or changes", s.now-s.m.quietFrom))
		return true
	}
	want := s.summary(l)
	for _, nd := range s.nodes {
		if !nd.up || !l.members[nd.id] {
			continue
		}
		if nd.lostUnder == l.core.Status().GetTerm() {
			// It restarted without its state under this leader, which drops
			// its refusals of entries it acknowledged before (step_guard.go:
			// the peer catches up from the next leader): a known limit, not
			// a disagreement.
			continue
		}
		if got := s.summary(nd); got != want {
			s.violation(fmt.Sprintf("%s has members %q, the leader %s has %q", nd.name, got, l.name, want))
		}
		if lead := nd.core.Status().Lead; lead != l.id {
			s.violation(fmt.Sprintf("%s follows %s, not the leader %s", nd.name, s.names[lead], l.name))
		}
	}
	return true
}

// configure sets a membership schedule's start: a spare, or a node that lost
// its state after the membership changed, joins (its bootstrap list is
// stale); the others bootstrap with the records.
func (s *sim) configure(nd *node, store storage.Store, cfg *core.Config) {
	cfg.FailBackAfter = s.m.failBack
	last, _ := store.LastIndex()
	if nd.spare || s.m.changed && last == 0 {
		cfg.Join = true
		cfg.Names = maps.Clone(s.m.bootNames)
		cfg.Names[nd.id] = nd.name
		return
	}
	cfg.Names, cfg.Members = s.m.bootNames, s.m.records
}

// refusedOrLost decides a batch's fate at its arrival at nd in a membership
// schedule: lost if a partition began while it was in flight (cutFlight),
// refused if nd's transport does not know its sender (the sender is told);
// true if nd does not step it.
func (s *sim) refusedOrLost(from, nd *node) bool {
	if s.m.cutFlight && s.links[from.idx][nd.idx].drop {
		s.trace("%s: batch from %s lost in flight", nd.name, from.name)
		return true
	}
	if s.refuses(nd, from) {
		s.trace("%s refuses %s: no member", nd.name, from.name)
		s.push(&event{at: s.now + s.latency(), kind: evNotMember, node: from.idx, inc: from.inc, from: nd.idx})
		return true
	}
	if from.refusedBy[nd.idx] {
		s.push(&event{at: s.now + s.latency(), kind: evMemberAgain, node: from.idx, inc: from.inc, from: nd.idx})
	}
	return false
}
