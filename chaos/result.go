package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/raftelect/raftelect/checker"
	"github.com/raftelect/raftelect/eventlog"
)

const roleLeader = "leader"

// Millis is a duration that JSON shows as milliseconds.
type Millis time.Duration

// MarshalJSON writes the duration in milliseconds, three decimals.
func (m Millis) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(m)/1e6, 'f', 3, 64), nil
}

// UnmarshalJSON reads milliseconds back, so result files can be loaded.
func (m *Millis) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("milliseconds: %w", err)
	}
	*m = Millis(v * 1e6)
	return nil
}

func (m Millis) String() string { return time.Duration(m).Round(time.Millisecond).String() }

// FaultWindow is one fault as it happened: times are CLOCK_MONOTONIC ns,
// on the same clock as the event logs.
type FaultWindow struct {
	Index int    `json:"index"`
	Kind  string `json:"kind"`
	Desc  string `json:"desc"`
	Start int64  `json:"start_mono_ns"`
	End   int64  `json:"end_mono_ns"`
	// LeaderAtStart is who led when the fault began; Roles are the roles
	// it named and the nodes they resolved to.
	LeaderAtStart string            `json:"leader_at_start"`
	Roles         map[string]string `json:"roles"`
}

// Failover is what followed a fault that targeted the leader.
type Failover struct {
	Fault     int    `json:"fault"`
	OldLeader string `json:"old_leader"`
	NewLeader string `json:"new_leader,omitempty"`
	// NewLeaderAfter: from the fault to another node's becoming leader;
	// absent if none did before the run ended.
	NewLeaderAfter *Millis `json:"new_leader_after_ms,omitempty"`
	// OldLeaseEndedAfter: from the fault to the end of the lease the old
	// leader held then (a kill ends it at once); absent if it held none.
	OldLeaseEndedAfter *Millis `json:"old_lease_ended_after_ms,omitempty"`
	// OldLeaseEndedFirst: the old lease ended no later than the new leader
	// started.
	OldLeaseEndedFirst bool `json:"old_lease_ended_first"`
}

// NodeStats are the figures of one node over a run.
type NodeStats struct {
	Name string `json:"name"`
	// CPUPercent: CPU time of all its processes over the observed window,
	// in percent of one core.
	CPUPercent float64 `json:"cpu_percent"`
	RSSMaxMB   float64 `json:"rss_max_mb"`
	// RSSGrowthMB: growth from the first fault to the end; absent when
	// the process was restarted in between.
	RSSGrowthMB *float64 `json:"rss_growth_mb,omitempty"`
	// MaxQueueDepth and Drops: the most messages the node had waiting for
	// any one peer, and all it dropped, from polling its Status.
	MaxQueueDepth uint64 `json:"max_queue_depth"`
	Drops         uint64 `json:"drops"`
	Campaigns     int    `json:"campaigns"` // times it became pre-candidate or candidate
	// LogBytes and LogLines: what it wrote to its log (stderr) during the
	// observation, over all its processes.
	LogBytes int64 `json:"log_bytes"`
	LogLines int   `json:"log_lines"`
}

// Check is one expectation and how the run did against it.
type Check struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	OK   bool   `json:"ok"`
}

// Result is everything a run measured, and the verdict.
type Result struct {
	Scenario        string     `json:"scenario"`
	Description     string     `json:"description"`
	Nodes           int        `json:"nodes"`
	Dir             string     `json:"dir"`
	SyncSend        bool       `json:"sync_send"`
	Heartbeat       Millis     `json:"heartbeat_ms"`
	ElectionTimeout Millis     `json:"election_timeout_ms"`
	Start           int64      `json:"observed_from_mono_ns"`
	End             int64      `json:"observed_to_mono_ns"`
	Observed        Millis     `json:"observed_ms"`
	InitialLeader   string     `json:"initial_leader"`
	InitialTerm     uint64     `json:"initial_term"`
	Elections       int        `json:"elections"`    // terms won after the start
	TermChanges     int        `json:"term_changes"` // how far the highest term moved
	LeaderChanges   int        `json:"leader_changes"`
	StepDowns       int        `json:"step_downs"`    // a leader that stopped leading (or died)
	Leaderless      Millis     `json:"leaderless_ms"` // no node held the lease
	MaxOverlap      Millis     `json:"max_overlap_ms"`
	Failovers       []Failover `json:"failovers"`
	FailoverP50     *Millis    `json:"failover_p50_ms,omitempty"`
	FailoverMax     *Millis    `json:"failover_max_ms,omitempty"`

	Faults     []FaultWindow      `json:"faults"`
	NodeStats  []NodeStats        `json:"node_stats"`
	Checks     []Check            `json:"checks"`
	Violations []string           `json:"violations"` // the checker's broken rules
	Errors     []string           `json:"errors"`     // faults that could not be applied
	Checker    checker.Report     `json:"-"`
	Timeline   []checker.Interval `json:"timeline"`
	// Config lists the nodes whose configuration the scenario changed from
	// the harness's, as they started ("n1: peers [n1,n2,n3]"); restarts
	// that change it are in Faults.
	Config []string `json:"config,omitempty"`
	// Changes are the membership changes (add and remove faults), in
	// the order they ran.
	Changes []MembershipChange `json:"membership_changes,omitempty"`
	// FailBackAfter: from the end of the last fault to the start of the
	// lease of expect.fail_back's node; absent if it did not lead again.
	FailBackAfter *Millis           `json:"fail_back_after_ms,omitempty"`
	Pass          bool              `json:"pass"`
	Bindings      map[string]string `json:"roles"`
	Events        []eventlog.Event  `json:"-"`
}

// MembershipChange is one add or remove as it happened. Times are
// CLOCK_MONOTONIC ns, on the event logs' clock.
type MembershipChange struct {
	Kind     string `json:"kind"` // add or remove
	Node     string `json:"node"`
	Replaces string `json:"replaces,omitempty"`
	Desc     string `json:"desc"`
	// Before and After: the members (learners marked) before the request
	// and the ones every member must show after it.
	Before []string `json:"before"`
	After  []string `json:"after"`
	// Requested: the request left; Answered: the leader's answer came back
	// (an error if its leader died: RequestError); Applied: the last
	// member showed After; 0 if it never did.
	Requested    int64  `json:"requested_mono_ns"`
	Answered     int64  `json:"answered_mono_ns"`
	Applied      int64  `json:"applied_mono_ns"`
	RequestError string `json:"request_error,omitempty"`
	// HandedOverTo: the node removed led when the removal came up, so it
	// handed leadership to this one first (inside Took).
	HandedOverTo string `json:"handed_over_to,omitempty"`
	// Took: from Requested to Applied. Leaderless: the time in it when no
	// node held the lease.
	Took       Millis `json:"took_ms"`
	Leaderless Millis `json:"leaderless_ms"`
	// RemovedExited: removed nodes whose processes stopped by themselves,
	// saying they were removed.
	RemovedExited []string `json:"removed_exited,omitempty"`
}

// measureChanges adds the membership changes of a run, with the leaderless
// time during each, and judges them against expect.max_change_time.
func (r *Result) measureChanges(s *Scenario, changes []MembershipChange) {
	r.Changes = changes
	for i := range r.Changes {
		ch := &r.Changes[i]
		end := ch.Applied
		if end == 0 {
			end = r.End
		}
		ch.Leaderless = Millis(leaderless(r.Timeline, ch.Requested, end))
		if lim := s.Expect.MaxChangeTime; lim > 0 {
			c := Check{Name: "change " + ch.Desc, Want: "<= " + lim.D().String(), Got: "not applied everywhere"}
			if ch.Applied != 0 {
				c.Got, c.OK = ch.Took.String(), time.Duration(ch.Took) <= lim.D()
			}
			r.Checks = append(r.Checks, c)
			r.Pass = r.Pass && c.OK
		}
	}
}

// analyse measures the events of a run observed from t0 to end and judges
// them against the scenario's expectations.
func analyse(s *Scenario, all []eventlog.Event, t0, end int64, faults []FaultWindow, bindings map[string]string, stats []NodeStats) *Result {
	r := &Result{
		Scenario: s.Name, Description: s.Description, Nodes: len(stats),
		Start: t0, End: end, Observed: Millis(end - t0),
		Faults: faults, NodeStats: stats, Bindings: bindings,
	}
	// Observation ends at end: later events (the harness's own kills at
	// the end) are not part of the run, and every node is treated as
	// stopped at end so that open intervals close there.
	var ev []eventlog.Event
	last := map[string]eventlog.Kind{}
	var names []string
	for _, e := range all {
		if e.Mono > end {
			continue
		}
		if _, ok := last[e.Node]; !ok {
			names = append(names, e.Node)
		}
		ev = append(ev, e)
		last[e.Node] = e.Kind
	}
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].Mono < ev[j].Mono })
	for _, n := range names {
		if k := last[n]; k != eventlog.KindStop && k != eventlog.KindCrash {
			ev = append(ev, eventlog.Event{Mono: end, Node: n, Kind: eventlog.KindStop})
		}
	}
	r.Events = ev
	r.Checker = checker.Check(ev, checker.Options{})
	for _, v := range r.Checker.Violations {
		r.Violations = append(r.Violations, v.String())
	}
	r.MaxOverlap = Millis(r.Checker.MaxOverlap)
	r.Timeline = checker.Timeline(ev)

	// Walk the events: the state at t0 first, then what changed after.
	role := map[string]string{}
	var baseTerm, maxTerm uint64
	leaderTerms := map[uint64]bool{}
	lastLeader := ""
	campaigns := map[string]int{}
	for _, e := range ev {
		after := e.Mono > t0
		switch e.Kind {
		case eventlog.KindState:
			was := role[e.Node]
			role[e.Node] = e.Role
			if !after {
				baseTerm = max(baseTerm, e.Term)
				if e.Role == roleLeader && e.Term >= r.InitialTerm {
					r.InitialLeader, r.InitialTerm = e.Node, e.Term
				}
				if e.Role == roleLeader {
					lastLeader = e.Node
				}
				continue
			}
			maxTerm = max(maxTerm, e.Term)
			if e.Role == roleLeader {
				if !leaderTerms[e.Term] && e.Term > r.InitialTerm {
					leaderTerms[e.Term] = true
					r.Elections++
				}
				if e.Node != lastLeader {
					r.LeaderChanges++
					lastLeader = e.Node
				}
			}
			if was == roleLeader && e.Role != roleLeader {
				r.StepDowns++
			}
			if (e.Role == "pre-candidate" || e.Role == "candidate") && was != e.Role {
				campaigns[e.Node]++
			}
		case eventlog.KindStart, eventlog.KindStop, eventlog.KindCrash:
			if after && role[e.Node] == roleLeader && e.Mono < end {
				r.StepDowns++
			}
			role[e.Node] = ""
			if e.Kind == eventlog.KindStart && !after {
				baseTerm = max(baseTerm, e.Term)
			}
		}
	}
	if maxTerm > baseTerm {
		r.TermChanges = int(maxTerm - baseTerm)
	}
	for i := range r.NodeStats {
		r.NodeStats[i].Campaigns = campaigns[r.NodeStats[i].Name]
	}
	r.Leaderless = Millis(leaderless(r.Timeline, t0, end))
	r.failovers()

	r.Checks = expectations(s, r)
	r.Pass = len(r.Violations) == 0
	for _, c := range r.Checks {
		r.Pass = r.Pass && c.OK
	}
	return r
}

// leaderless is the time in [from, to) when no node held the lease: nobody
// acted as leader. (Raft roles would hide a gap: a cut-off leader still
// calls itself leader until CheckQuorum steps it down, after its lease
// ended.)
func leaderless(tl []checker.Interval, from, to int64) time.Duration {
	type span struct{ a, b int64 }
	var spans []span
	for _, iv := range tl {
		if !iv.Lease {
			continue
		}
		a, b := max(iv.Start, from), min(iv.End, to)
		if b > a {
			spans = append(spans, span{a, b})
		}
	}
	slices.SortFunc(spans, func(x, y span) int { return int(x.a - y.a) })
	covered, cur := int64(0), from
	for _, s := range spans {
		if s.b <= cur {
			continue
		}
		covered += s.b - max(s.a, cur)
		cur = s.b
	}
	return time.Duration(to - from - covered)
}

// failovers measures, for each fault that targeted the node leading at its
// start, how long until another node led and until the old lease ended.
func (r *Result) failovers() {
	var times []time.Duration
	for _, w := range r.Faults {
		if w.LeaderAtStart == "" || w.Roles[roleLeader] != w.LeaderAtStart {
			continue
		}
		switch w.Kind {
		case FaultIsolate, FaultKill, FaultTerm, FaultStop, FaultFlap, FaultReject, FaultRestart:
		default:
			continue // a link fault on the leader is not meant to move it
		}
		f := Failover{Fault: w.Index, OldLeader: w.LeaderAtStart}
		newAt := int64(-1)
		for _, e := range r.Events {
			if e.Mono > w.Start && e.Kind == eventlog.KindState && e.Role == roleLeader && e.Node != f.OldLeader {
				newAt, f.NewLeader = e.Mono, e.Node
				d := Millis(e.Mono - w.Start)
				f.NewLeaderAfter = &d
				times = append(times, time.Duration(d))
				break
			}
		}
		for _, iv := range r.Timeline {
			if iv.Lease && iv.Node == f.OldLeader && iv.Start <= w.Start && iv.End > w.Start {
				d := Millis(max(iv.End-w.Start, 0))
				f.OldLeaseEndedAfter = &d
				f.OldLeaseEndedFirst = newAt < 0 || iv.End <= newAt
			}
		}
		if f.OldLeaseEndedAfter == nil {
			f.OldLeaseEndedFirst = true // it held none
		}
		r.Failovers = append(r.Failovers, f)
	}
	if len(times) > 0 {
		slices.Sort(times)
		p50, mx := Millis(times[(len(times)-1)/2]), Millis(times[len(times)-1])
		r.FailoverP50, r.FailoverMax = &p50, &mx
	}
}

// failBack measures when fb.To held the lease again after the last fault
// ended, and judges it against the stable period and the bound.
func (r *Result) failBack(fb *FailBackExpect) Check {
	c := Check{Name: "leadership returns to " + fb.To + " after the last fault",
		Want: fmt.Sprintf("after %v to %v", fb.NotBefore.D(), fb.Within.D()), Got: "never"}
	healed := int64(0)
	for _, w := range r.Faults {
		healed = max(healed, w.End)
	}
	if healed == 0 {
		c.Got = "no fault"
		return c
	}
	first := int64(-1)
	for _, iv := range r.Timeline {
		if iv.Lease && iv.Node == fb.To && iv.Start >= healed && (first < 0 || iv.Start < first) {
			first = iv.Start
		}
	}
	if first >= 0 {
		d := Millis(first - healed)
		r.FailBackAfter = &d
		c.Got = d.String()
		c.OK = time.Duration(d) >= fb.NotBefore.D() && time.Duration(d) <= fb.Within.D()
	}
	// A lease of fb.To that spans the heal: leadership never left it.
	for _, iv := range r.Timeline {
		if iv.Lease && iv.Node == fb.To && iv.Start < healed && iv.End > healed {
			c.Got, c.OK = "it held the lease across the heal", false
		}
	}
	return c
}

// agreedAfter is how long after at every running node named the same
// leader in the same term, for good (until the run's end or until an event
// changed that); false if they never did before the observation ended.
func (r *Result) agreedAfter(at int64) (time.Duration, bool) {
	type view struct {
		alive  bool
		term   uint64
		leader string
	}
	m := map[string]view{}
	apply := func(e eventlog.Event) {
		switch e.Kind {
		case eventlog.KindStart:
			m[e.Node] = view{alive: true, term: e.Term}
		case eventlog.KindStop, eventlog.KindCrash:
			m[e.Node] = view{}
		case eventlog.KindState:
			m[e.Node] = view{alive: true, term: e.Term, leader: e.Leader}
		}
	}
	agree := func() bool {
		var first *view
		for _, v := range m {
			if !v.alive {
				continue
			}
			if v.leader == "" {
				return false
			}
			if first == nil {
				first = &v
			} else if v.term != first.term || v.leader != first.leader {
				return false
			}
		}
		return first != nil
	}
	since := int64(-1)
	for _, e := range r.Events {
		if e.Mono > at && since < 0 && agree() {
			since = at
		}
		if e.Mono >= r.End {
			break
		}
		apply(e)
		if e.Mono <= at {
			continue
		}
		switch ok := agree(); {
		case ok && since < 0:
			since = e.Mono
		case !ok:
			since = -1
		}
	}
	if since < 0 && agree() {
		since = at
	}
	if since < 0 {
		return 0, false
	}
	return time.Duration(since - at), true
}

// expectations judges the result against what the scenario promises.
func expectations(s *Scenario, r *Result) []Check {
	x := s.Expect
	var out []Check
	atMost := func(name string, limit *int, got int) {
		if limit != nil {
			out = append(out, Check{Name: name, Want: fmt.Sprintf("<= %d", *limit), Got: strconv.Itoa(got), OK: got <= *limit})
		}
	}
	atMost("elections", x.MaxElections, r.Elections)
	atMost("term changes", x.MaxTermChanges, r.TermChanges)
	atMost("leader changes", x.MaxLeaderChanges, r.LeaderChanges)
	atMost("step-downs", x.MaxStepDowns, r.StepDowns)
	if x.MaxOverlap != nil {
		out = append(out, Check{Name: "lease overlap", Want: "<= " + x.MaxOverlap.D().String(), Got: r.MaxOverlap.String(), OK: time.Duration(r.MaxOverlap) <= x.MaxOverlap.D()})
	}
	if x.MaxLeaderless != nil {
		out = append(out, Check{Name: "leaderless time", Want: "<= " + x.MaxLeaderless.D().String(), Got: r.Leaderless.String(), OK: time.Duration(r.Leaderless) <= x.MaxLeaderless.D()})
	}
	for _, f := range r.Failovers {
		if x.NewLeaderWithin > 0 {
			c := Check{Name: fmt.Sprintf("fault %d: new leader after %s", f.Fault, f.OldLeader), Want: "<= " + x.NewLeaderWithin.D().String(), Got: "none"}
			if f.NewLeaderAfter != nil {
				c.Got = fmt.Sprintf("%s after %s", f.NewLeader, f.NewLeaderAfter)
				c.OK = time.Duration(*f.NewLeaderAfter) <= x.NewLeaderWithin.D()
			}
			out = append(out, c)
		}
		if x.OldLeaseEndsWithin > 0 {
			c := Check{Name: fmt.Sprintf("fault %d: %s's lease ends", f.Fault, f.OldLeader), Want: "<= " + x.OldLeaseEndsWithin.D().String(), Got: "held none", OK: true}
			if f.OldLeaseEndedAfter != nil {
				c.Got = f.OldLeaseEndedAfter.String()
				c.OK = time.Duration(*f.OldLeaseEndedAfter) <= x.OldLeaseEndsWithin.D()
			}
			out = append(out, c)
		}
		if x.OldLeaseEndsFirst {
			got := "yes"
			if !f.OldLeaseEndedFirst {
				got = "no"
			}
			out = append(out, Check{Name: fmt.Sprintf("fault %d: %s's lease ends before a new leader starts", f.Fault, f.OldLeader), Want: "yes", Got: got, OK: f.OldLeaseEndedFirst})
		}
	}
	if (x.NewLeaderWithin > 0 || x.OldLeaseEndsWithin > 0 || x.OldLeaseEndsFirst) && len(r.Failovers) == 0 {
		out = append(out, Check{Name: "faults on the leader", Want: ">= 1", Got: "0"})
	}
	for _, who := range x.NeverLead {
		name := who
		if n, ok := r.Bindings[who]; ok {
			name = n
		}
		led := 0
		for _, e := range r.Events {
			if e.Mono > r.Start && e.Node == name && e.Kind == eventlog.KindState && e.Role == roleLeader {
				led++
			}
		}
		out = append(out, Check{Name: fmt.Sprintf("%s (%s) leads", who, name), Want: "never", Got: fmt.Sprintf("%d times", led), OK: led == 0})
	}
	for _, who := range x.NoCampaign {
		name := who
		if n, ok := r.Bindings[who]; ok {
			name = n
		}
		got, found := 0, false
		for _, st := range r.NodeStats {
			if st.Name == name {
				got, found = st.Campaigns, true
			}
		}
		c := Check{Name: fmt.Sprintf("%s (%s) campaigns", who, name), Want: "0", Got: strconv.Itoa(got), OK: found && got == 0}
		if !found {
			c.Got = "unknown node"
		}
		out = append(out, c)
	}
	for _, who := range x.NeverLease {
		held := 0
		for _, iv := range r.Timeline {
			if iv.Lease && iv.Node == who && iv.End > r.Start {
				held++
			}
		}
		out = append(out, Check{Name: who + " holds the lease", Want: "never", Got: fmt.Sprintf("%d times", held), OK: held == 0})
	}
	if fb := x.FailBack; fb != nil {
		out = append(out, r.failBack(fb))
	}
	if lim := x.AgreeAfterHealWithin.D(); lim > 0 {
		for _, w := range r.Faults {
			if w.Kind != FaultDrop {
				continue
			}
			c := Check{Name: fmt.Sprintf("fault %d: every node names one leader after the heal", w.Index), Want: "<= " + lim.String(), Got: "never"}
			if d, ok := r.agreedAfter(w.End); ok {
				c.Got, c.OK = Millis(d).String(), d <= lim
			}
			out = append(out, c)
		}
	}
	if x.MaxRSSGrowthMB != nil {
		for _, st := range r.NodeStats {
			if st.RSSGrowthMB != nil {
				out = append(out, Check{Name: st.Name + " RSS growth", Want: fmt.Sprintf("<= %.1f MB", *x.MaxRSSGrowthMB), Got: fmt.Sprintf("%.1f MB", *st.RSSGrowthMB), OK: *st.RSSGrowthMB <= *x.MaxRSSGrowthMB})
			}
		}
	}
	if x.MaxLogBytes != nil {
		for _, st := range r.NodeStats {
			out = append(out, Check{Name: st.Name + " log bytes", Want: fmt.Sprintf("<= %d", *x.MaxLogBytes), Got: strconv.FormatInt(st.LogBytes, 10), OK: st.LogBytes <= *x.MaxLogBytes})
		}
	}
	if x.MaxLogLines != nil {
		for _, st := range r.NodeStats {
			out = append(out, Check{Name: st.Name + " log lines", Want: fmt.Sprintf("<= %d", *x.MaxLogLines), Got: strconv.Itoa(st.LogLines), OK: st.LogLines <= *x.MaxLogLines})
		}
	}
	if x.MaxCPUPercent != nil {
		for _, st := range r.NodeStats {
			out = append(out, Check{Name: st.Name + " CPU", Want: fmt.Sprintf("<= %.1f %%", *x.MaxCPUPercent), Got: fmt.Sprintf("%.2f %%", st.CPUPercent), OK: st.CPUPercent <= *x.MaxCPUPercent})
		}
	}
	return out
}
