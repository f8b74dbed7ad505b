// Package checker reads the event logs of every node of a cluster and verifies
// raft's and the leader lease's promises after the fact: one leader per term,
// terms that never go back, votes that are never cast twice in a term, leases
// that never overlap and always carry increasing fencing tokens, leases that
// lie inside their holder's leadership, and (optionally) a bound on how long
// the cluster goes without a leader after a node starts.
//
// Event times are CLOCK_MONOTONIC readings, so the cross-node rules (one
// leader per term, lease overlap, tokens, recovery) are only meaningful for
// logs written by processes on one host. Per-node rules hold anywhere.
package checker

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/raftelect/raftelect/eventlog"
)

// Violation kinds.
const (
	TwoLeadersInTerm     = "two-leaders-in-term"
	TermRegressed        = "term-regressed"
	VoteChanged          = "vote-changed"
	LeaseOverlap         = "lease-overlap"
	TokenNotIncreasing   = "token-not-increasing"
	LeaseOutsideTerm     = "lease-outside-term"
	NoLeaderAfterRestart = "no-leader-after-restart"
)

const roleLeader = "leader"

// Options tunes Check.
type Options struct {
	// RecoveryBound: after any node's start event, some node must be leader
	// (a state event with role leader) within this long, unless the
	// observation ends first. 0 disables.
	RecoveryBound time.Duration
	// LostStateRestarts: the run restarts nodes without their state on
	// purpose (the simulator does), so a start in term 0 is not a
	// regression. Votes are still checked across such restarts.
	LostStateRestarts bool
}

// Violation is one broken promise.
type Violation struct {
	Kind   string // one of the kind constants above
	Mono   int64  // when it happened (CLOCK_MONOTONIC ns)
	Node   string // the node at fault, or the later of two
	Detail string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s at mono %d on %s: %s", v.Kind, v.Mono, v.Node, v.Detail)
}

// Report is the outcome of Check.
type Report struct {
	Violations []Violation

	Nodes         int
	Events        int
	Terms         int // distinct terms seen in start and state events
	Elections     int // distinct terms in which some node became leader
	LeaderChanges int // times leadership passed to a different node

	Leases       int
	MaxOverlap   time.Duration // longest time two nodes held a lease at once; 0 is the goal
	TotalOverlap time.Duration // sum of all pairwise lease overlaps

	Restarts    int           // start events after a node's first
	MaxRecovery time.Duration // longest time from a start event to the next moment some node is leader
}

// OK reports whether no rule was broken.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// Summary is a few human lines: the figures, then one line per violation.
func (r Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "checked %d events from %d nodes: %d elections, %d leases, max overlap %v, %d violations\n",
		r.Events, r.Nodes, r.Elections, r.Leases, r.MaxOverlap, len(r.Violations))
	fmt.Fprintf(&b, "%d terms, %d leader changes, total overlap %v, %d restarts, max recovery %v\n",
		r.Terms, r.LeaderChanges, r.TotalOverlap, r.Restarts, r.MaxRecovery)
	for _, v := range r.Violations {
		b.WriteString(v.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Interval is a span during which Node led Term (Lease false) or held the
// lease with fencing token Term (Lease true). End is exclusive.
type Interval struct {
	Node       string
	Term       uint64
	Start, End int64
	Lease      bool
}

// CheckFiles reads the event log files and checks them together.
func CheckFiles(paths []string, opts Options) (Report, error) {
	var all []eventlog.Event
	for _, p := range paths {
		ev, err := eventlog.ReadFile(p)
		if err != nil {
			return Report{}, err
		}
		all = append(all, ev...)
	}
	return Check(all, opts), nil
}

// Check verifies the events of all nodes, given in any order. Events of one
// node with equal Mono keep their relative order.
func Check(events []eventlog.Event, opts Options) Report {
	h := buildHistory(events)
	r := Report{Events: len(events), Nodes: len(h.nodes)}
	r.Violations = append(r.Violations, h.violations...)

	r.Violations = append(r.Violations, checkTerms(h, &r, opts.LostStateRestarts)...)
	r.Violations = append(r.Violations, checkLeaders(h, &r)...)
	r.Violations = append(r.Violations, checkOverlap(h, &r)...)
	r.Violations = append(r.Violations, checkTokens(h)...)
	r.Violations = append(r.Violations, checkRecovery(h, opts, &r)...)
	r.Leases = len(h.leases)

	sort.SliceStable(r.Violations, func(i, j int) bool { return r.Violations[i].Mono < r.Violations[j].Mono })
	return r
}

// Timeline returns the leadership and lease intervals in the events, ordered
// by start time.
func Timeline(events []eventlog.Event) []Interval {
	h := buildHistory(events)
	out := append(append([]Interval(nil), h.leaders...), h.leases...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Start != out[j].Start {
			return out[i].Start < out[j].Start
		}
		return out[i].Node < out[j].Node
	})
	return out
}

// history is the events sorted by time, with the intervals they imply.
type history struct {
	events     []eventlog.Event // sorted by Mono, stable
	nodes      []string
	end        int64 // end of observation: the largest Mono
	leaders    []Interval
	leases     []Interval
	violations []Violation // lease-outside-term, found while building leases
}

func buildHistory(events []eventlog.Event) history {
	h := history{events: append([]eventlog.Event(nil), events...)}
	sort.SliceStable(h.events, func(i, j int) bool { return h.events[i].Mono < h.events[j].Mono })
	if len(h.events) > 0 {
		h.end = h.events[len(h.events)-1].Mono
	}
	walkers := map[string]*nodeWalker{}
	for _, e := range h.events {
		w := walkers[e.Node]
		if w == nil {
			w = &nodeWalker{h: &h, node: e.Node}
			walkers[e.Node] = w
			h.nodes = append(h.nodes, e.Node)
		}
		w.step(e)
	}
	for _, n := range h.nodes {
		walkers[n].stop(h.end)
	}
	return h
}

// nodeWalker follows one node's events to cut them into leadership and
// lease intervals.
type nodeWalker struct {
	h          *history
	node       string
	role       string // from the latest state event since the process started
	term       uint64
	leader     *Interval
	lease      *Interval
	leftLeader int64 // when the node stopped leading the lease's term while holding it; -1 if not
}

func (w *nodeWalker) step(e eventlog.Event) {
	switch e.Kind {
	case eventlog.KindStart, eventlog.KindStop, eventlog.KindCrash:
		// A process that stops, crashes or starts anew acts no more as
		// whatever it was; it learns its role again from raft.
		w.stop(e.Mono)
		w.role, w.term = "", 0
	case eventlog.KindState:
		w.role, w.term = e.Role, e.Term
		leading := e.Role == roleLeader
		if w.leader != nil && (!leading || e.Term != w.leader.Term) {
			w.closeLeader(e.Mono)
		}
		if leading && w.leader == nil {
			w.leader = &Interval{Node: w.node, Term: e.Term, Start: e.Mono}
		}
		if w.lease != nil && w.leftLeader < 0 && (!leading || e.Term != w.lease.Term) {
			w.leftLeader = e.Mono
		}
	case eventlog.KindLeaseStart:
		w.closeLease(e.Mono) // a lease never overlaps its own holder's previous one
		if w.role != roleLeader || w.term != e.Token {
			w.h.violations = append(w.h.violations, Violation{
				Kind: LeaseOutsideTerm, Mono: e.Mono, Node: w.node,
				Detail: fmt.Sprintf("lease with token %d started while the node was %q in term %d", e.Token, w.role, w.term),
			})
		}
		w.lease = &Interval{Node: w.node, Term: e.Token, Start: e.Mono, Lease: true}
		w.leftLeader = -1
	case eventlog.KindLeaseEnd:
		w.closeLease(e.Mono)
	}
}

// stop closes whatever the node holds at mono.
func (w *nodeWalker) stop(mono int64) {
	w.closeLeader(mono)
	w.closeLease(mono)
}

func (w *nodeWalker) closeLeader(mono int64) {
	if w.leader == nil {
		return
	}
	w.leader.End = mono
	w.h.leaders = append(w.h.leaders, *w.leader)
	w.leader = nil
}

func (w *nodeWalker) closeLease(mono int64) {
	if w.lease == nil {
		return
	}
	// Ending the lease at the very instant leadership ends is fine: the
	// lease must end no later than the state change.
	if w.leftLeader >= 0 && w.leftLeader < mono {
		w.h.violations = append(w.h.violations, Violation{
			Kind: LeaseOutsideTerm, Mono: w.leftLeader, Node: w.node,
			Detail: fmt.Sprintf("node stopped leading term %d but held its lease %v longer", w.lease.Term, time.Duration(mono-w.leftLeader)),
		})
	}
	w.lease.End = mono
	w.h.leases = append(w.h.leases, *w.lease)
	w.lease = nil
}

// checkTerms: per node, the term never decreases across events and restarts,
// and a vote cast in a term is never replaced by another name in that term,
// even after a restart that lost the node's state.
func checkTerms(h history, r *Report, allowLostState bool) []Violation {
	var out []Violation
	lastTerm := map[string]uint64{}
	votes := map[string]map[uint64]string{} // node -> term -> first vote
	terms := map[uint64]bool{}
	started := map[string]bool{}
	for _, e := range h.events {
		if e.Kind == eventlog.KindStart {
			if started[e.Node] {
				r.Restarts++
			}
			started[e.Node] = true
		}
		if e.Kind != eventlog.KindStart && e.Kind != eventlog.KindState {
			continue
		}
		if e.Term > 0 {
			terms[e.Term] = true
		}
		if allowLostState && e.Kind == eventlog.KindStart && e.Term == 0 {
			// A node that lost its state (an emptied data directory, an
			// in-memory store) starts again from term 0 by design; what it
			// must not do is vote twice in a term (below).
			delete(lastTerm, e.Node)
		}
		if last, ok := lastTerm[e.Node]; ok && e.Term < last {
			out = append(out, Violation{
				Kind: TermRegressed, Mono: e.Mono, Node: e.Node,
				Detail: fmt.Sprintf("term went from %d back to %d (%s event)", last, e.Term, e.Kind),
			})
		}
		lastTerm[e.Node] = e.Term
		if e.Vote == "" {
			continue
		}
		if votes[e.Node] == nil {
			votes[e.Node] = map[uint64]string{}
		}
		switch prev := votes[e.Node][e.Term]; {
		case prev == "":
			votes[e.Node][e.Term] = e.Vote
		case prev != e.Vote:
			out = append(out, Violation{
				Kind: VoteChanged, Mono: e.Mono, Node: e.Node,
				Detail: fmt.Sprintf("voted for %s in term %d after voting for %s", e.Vote, e.Term, prev),
			})
		}
	}
	r.Terms = len(terms)
	return out
}

// checkLeaders: at most one node becomes leader in each term. Also counts
// elections and leader changes.
func checkLeaders(h history, r *Report) []Violation {
	var out []Violation
	leaderOf := map[uint64]string{}
	reported := map[string]bool{}
	last := ""
	for _, e := range h.events {
		if e.Kind != eventlog.KindState || e.Role != roleLeader {
			continue
		}
		if e.Node != last {
			if last != "" {
				r.LeaderChanges++
			}
			last = e.Node
		}
		first, ok := leaderOf[e.Term]
		if !ok {
			leaderOf[e.Term] = e.Node
			continue
		}
		key := fmt.Sprintf("%d/%s", e.Term, e.Node)
		if first != e.Node && !reported[key] {
			reported[key] = true
			out = append(out, Violation{
				Kind: TwoLeadersInTerm, Mono: e.Mono, Node: e.Node,
				Detail: fmt.Sprintf("became leader of term %d, which %s already leads", e.Term, first),
			})
		}
	}
	r.Elections = len(leaderOf)
	return out
}

// checkOverlap: at no instant may two nodes hold a lease.
func checkOverlap(h history, r *Report) []Violation {
	var out []Violation
	for i, a := range h.leases {
		for _, b := range h.leases[i+1:] {
			if a.Node == b.Node {
				continue
			}
			start, end := max(a.Start, b.Start), min(a.End, b.End)
			if end <= start {
				continue
			}
			d := time.Duration(end - start)
			r.TotalOverlap += d
			r.MaxOverlap = max(r.MaxOverlap, d)
			first, second := a, b
			if b.Start < a.Start {
				first, second = b, a
			}
			out = append(out, Violation{
				Kind: LeaseOverlap, Mono: start, Node: second.Node,
				Detail: fmt.Sprintf("held the lease (token %d) for %v while %s held it (token %d)", second.Term, d, first.Node, first.Term),
			})
		}
	}
	return out
}

// checkTokens: a lease taken by a different node than the previous holder has
// a fencing token greater than every token handed out before; the previous
// holder may take it again with the same token.
func checkTokens(h history) []Violation {
	var out []Violation
	var maxToken, lastToken uint64
	holder := ""
	for _, e := range h.events {
		if e.Kind != eventlog.KindLeaseStart {
			continue
		}
		ok := e.Token > maxToken || (e.Node == holder && e.Token == maxToken)
		if holder != "" && !ok {
			out = append(out, Violation{
				Kind: TokenNotIncreasing, Mono: e.Mono, Node: e.Node,
				Detail: fmt.Sprintf("lease token %d after %s held token %d (highest so far %d)", e.Token, holder, lastToken, maxToken),
			})
		}
		maxToken = max(maxToken, e.Token)
		lastToken, holder = e.Token, e.Node
	}
	return out
}

// checkRecovery measures, for each start event, how long until some node is
// leader, and flags waits longer than opts.RecoveryBound. A start with no
// leader until the end of observation counts the time to that end.
func checkRecovery(h history, opts Options, r *Report) []Violation {
	var out []Violation
	for _, e := range h.events {
		if e.Kind != eventlog.KindStart {
			continue
		}
		at, found := nextLeader(h.leaders, e.Mono)
		if !found {
			at = h.end
		}
		wait := time.Duration(at - e.Mono)
		r.MaxRecovery = max(r.MaxRecovery, wait)
		if opts.RecoveryBound > 0 && wait > opts.RecoveryBound {
			out = append(out, Violation{
				Kind: NoLeaderAfterRestart, Mono: e.Mono, Node: e.Node,
				Detail: fmt.Sprintf("no leader for %v after the node started (bound %v)", wait, opts.RecoveryBound),
			})
		}
	}
	return out
}

// nextLeader returns the first instant at or after mono when some node leads.
func nextLeader(leaders []Interval, mono int64) (int64, bool) {
	best, found := int64(0), false
	for _, l := range leaders {
		if l.End <= mono {
			continue
		}
		at := max(l.Start, mono)
		if !found || at < best {
			best, found = at, true
		}
	}
	return best, found
}
