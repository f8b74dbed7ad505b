package chaos

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/eventlog"
)

func TestBuiltinScenariosParse(t *testing.T) {
	for _, name := range Builtin() {
		s, err := LoadScenario(name)
		if err != nil {
			t.Fatal(err)
		}
		if s.Name != name {
			t.Errorf("%s.yaml is named %q", name, s.Name)
		}
		short := s.Scaled(0.15, 2500*time.Millisecond)
		if err := short.Validate(); err != nil {
			t.Errorf("%s scaled: %v", name, err)
		}
	}
}

func TestScenarioRejectsMistakes(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"name: x\nduration: 10s\nexpect: {max_election: 0}\n", "max_election"},
		{"name: x\nduration: 10s\nschedule: [{at: 1s, fault: nuke, target: leader}]\n", "nuke"},
		{"name: x\nduration: 10s\nschedule: [{at: 5s, duration: 6s, fault: isolate, target: leader}]\n", "after the run's duration"},
		{"name: x\nduration: 10s\nschedule: [{at: 1s, fault: drop, from: leader}]\n", "from and to"},
		{"name: x\nduration: 10s\nschedule: [{at: 1s, fault: loss}]\n", "percent"},
		{"name: x\nduration: 10s\nschedule: [{at: 1s, fault: udp_drop}]\n", "udp_drop needs a target"},
		{"name: x\nduration: 10s\nschedule: [{at: 1s, fault: drop, from: n1, to: n2, params: {arriving: true}}]\n", "params.arriving applies to loss"},
	} {
		_, err := ParseScenario([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error mentioning %q", tc.yaml, err, tc.want)
		}
	}
}

// TestAnalyseCountsFromObservationStart: the initial election is not
// counted, a failover is measured from the fault, and the lease of the old
// leader ending before the new leader starts is seen as such.
func TestAnalyseCountsFromObservationStart(t *testing.T) {
	ms := func(n int64) int64 { return n * 1e6 }
	ev := []eventlog.Event{
		{Mono: ms(1), Node: "n1", Kind: eventlog.KindStart},
		{Mono: ms(1), Node: "n2", Kind: eventlog.KindStart},
		{Mono: ms(100), Node: "n1", Kind: eventlog.KindState, Term: 2, Role: "leader", Leader: "n1"},
		{Mono: ms(100), Node: "n2", Kind: eventlog.KindState, Term: 2, Role: "follower", Leader: "n1"},
		{Mono: ms(101), Node: "n1", Kind: eventlog.KindLeaseStart, Token: 2},
		// t0 = 1000; the fault isolates n1 at 2000.
		{Mono: ms(2800), Node: "n1", Kind: eventlog.KindLeaseEnd, Token: 2},
		{Mono: ms(3000), Node: "n2", Kind: eventlog.KindState, Term: 3, Role: "candidate"},
		{Mono: ms(3100), Node: "n2", Kind: eventlog.KindState, Term: 3, Role: "leader", Leader: "n2"},
		{Mono: ms(3101), Node: "n2", Kind: eventlog.KindLeaseStart, Token: 3},
		{Mono: ms(3200), Node: "n1", Kind: eventlog.KindState, Term: 3, Role: "follower", Leader: "n2"},
	}
	one := 1
	s := &Scenario{Name: "t", Nodes: 2, Expect: Expected{MaxElections: &one, NewLeaderWithin: 2000000000, OldLeaseEndsFirst: true}}
	faults := []FaultWindow{{Index: 0, Kind: FaultIsolate, Start: ms(2000), End: ms(4000), LeaderAtStart: "n1", Roles: map[string]string{"leader": "n1"}}}
	r := analyse(s, ev, ms(1000), ms(5000), faults, map[string]string{"leader": "n1"}, []NodeStats{{Name: "n1"}, {Name: "n2"}})
	if r.Elections != 1 || r.LeaderChanges != 1 || r.StepDowns != 1 || r.TermChanges != 1 {
		t.Errorf("elections %d, leader changes %d, step-downs %d, term changes %d; want 1 each", r.Elections, r.LeaderChanges, r.StepDowns, r.TermChanges)
	}
	if r.Leaderless != Millis(ms(3101-2800)) {
		t.Errorf("leaderless %v, want 301ms (no lease between n1's and n2's)", r.Leaderless)
	}
	if len(r.Failovers) != 1 || r.Failovers[0].NewLeaderAfter == nil || *r.Failovers[0].NewLeaderAfter != Millis(ms(1100)) || !r.Failovers[0].OldLeaseEndedFirst {
		t.Errorf("failovers %+v", r.Failovers)
	}
	if !r.Pass {
		t.Errorf("want PASS:\n%s", r.Summary())
	}
	if svg := r.SVG(); !strings.Contains(svg, "<svg") || !strings.Contains(svg, "fault 0") {
		t.Error("timeline SVG lacks the fault")
	}
}

// TestScaledKeepsUnscaledSchedules: --scale shortens an ordinary schedule
// but leaves one marked unscaled exactly as written.
func TestScaledKeepsUnscaledSchedules(t *testing.T) {
	const src = "name: x\nduration: 20s\nschedule: [{at: 10s, duration: 5s, fault: isolate, target: leader}]\n"
	for _, unscaled := range []bool{false, true} {
		data := src
		if unscaled {
			data += "unscaled: true\n"
		}
		s, err := ParseScenario([]byte(data))
		if err != nil {
			t.Fatal(err)
		}
		c := s.Scaled(0.5, time.Second)
		wantAt, wantDur := 5*time.Second, 10*time.Second
		if unscaled {
			wantAt, wantDur = 10*time.Second, 20*time.Second
		}
		if c.Schedule[0].At.D() != wantAt || c.Duration.D() != wantDur {
			t.Errorf("unscaled=%v: fault at %v, duration %v; want %v, %v", unscaled, c.Schedule[0].At, c.Duration, wantAt, wantDur)
		}
	}
}

// The suite's slack loosens the timing targets only: counted promises and
// the order of leases stay exact, and the scenario itself is not changed.
func TestWithTimingSlack_LoosensTimingTargetsOnly(t *testing.T) {
	cpu, one := 10.0, 1
	s := &Scenario{Name: "t", Nodes: 3, Expect: Expected{MaxElections: &one, NewLeaderWithin: config.Duration(2 * time.Second),
		OldLeaseEndsWithin: config.Duration(time.Second), OldLeaseEndsFirst: true, MaxCPUPercent: &cpu}}
	l := s.WithTimingSlack(3)
	if l.Expect.NewLeaderWithin.D() != 6*time.Second || l.Expect.OldLeaseEndsWithin.D() != 3*time.Second || *l.Expect.MaxCPUPercent != 30 {
		t.Fatalf("loosened: %+v", l.Expect)
	}
	if *l.Expect.MaxElections != 1 || !l.Expect.OldLeaseEndsFirst {
		t.Fatalf("a counted promise changed: %+v", l.Expect)
	}
	if s.Expect.NewLeaderWithin.D() != 2*time.Second || *s.Expect.MaxCPUPercent != 10 {
		t.Fatalf("the original changed: %+v", s.Expect)
	}
}

func TestScenarioRejectsMembershipMistakes(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"name: x\nduration: 10s\nschedule: [{at: 1s, fault: add}]\n", "add needs a target"},
		{"name: x\nduration: 10s\nschedule: [{at: 1s, fault: kill, target: n1, params: {replaces: n2}}]\n", "params.replaces applies to add"},
		{"name: x\nduration: 10s\nschedule: [{at: 1s, fault: kill, target: leader, params: {when: soon}}]\n", "params.when"},
		{"name: x\nduration: 10s\nschedule: [{at: 1s, fault: kill, target: n1, params: {when: joint}}]\n", "a kill of the leader"},
		{"name: x\nduration: 10s\nexpect: {fail_back: {to: n1, not_before: 5s, within: 3s}}\n", "expect.fail_back"},
	} {
		_, err := ParseScenario([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error mentioning %q", tc.yaml, err, tc.want)
		}
	}
}

// twoRegionEvents: n1 leads and holds the lease from 100 ms; it is cut off
// at 2 s (the fault) and its lease ends at 2.8 s; n2 leads from 3.1 s; the
// fault ends at 6 s; n2 hands over and n1 leads again at 6 s + backAfter.
// witnessLease adds a lease of the witness n3 in term 3, between them.
func twoRegionEvents(backAfter time.Duration, witnessLease bool) []eventlog.Event {
	ms := func(n int64) int64 { return n * 1e6 }
	back := ms(6000) + int64(backAfter)
	ev := []eventlog.Event{
		{Mono: ms(1), Node: "n1", Kind: eventlog.KindStart},
		{Mono: ms(1), Node: "n2", Kind: eventlog.KindStart},
		{Mono: ms(1), Node: "n3", Kind: eventlog.KindStart},
		{Mono: ms(100), Node: "n1", Kind: eventlog.KindState, Term: 2, Role: "leader", Leader: "n1"},
		{Mono: ms(101), Node: "n1", Kind: eventlog.KindLeaseStart, Token: 2},
		{Mono: ms(2800), Node: "n1", Kind: eventlog.KindLeaseEnd, Token: 2},
		{Mono: ms(3100), Node: "n2", Kind: eventlog.KindState, Term: 4, Role: "leader", Leader: "n2"},
		{Mono: ms(3101), Node: "n2", Kind: eventlog.KindLeaseStart, Token: 4},
		{Mono: back - ms(10), Node: "n2", Kind: eventlog.KindLeaseEnd, Token: 4},
		{Mono: back - ms(5), Node: "n2", Kind: eventlog.KindState, Term: 5, Role: "follower", Leader: ""},
		{Mono: back - ms(1), Node: "n1", Kind: eventlog.KindState, Term: 5, Role: "leader", Leader: "n1"},
		{Mono: back, Node: "n1", Kind: eventlog.KindLeaseStart, Token: 5},
	}
	if witnessLease {
		ev = append(ev,
			eventlog.Event{Mono: ms(2900), Node: "n3", Kind: eventlog.KindState, Term: 3, Role: "leader", Leader: "n3"},
			eventlog.Event{Mono: ms(2901), Node: "n3", Kind: eventlog.KindLeaseStart, Token: 3},
			eventlog.Event{Mono: ms(2950), Node: "n3", Kind: eventlog.KindLeaseEnd, Token: 3},
			eventlog.Event{Mono: ms(2951), Node: "n3", Kind: eventlog.KindState, Term: 3, Role: "follower"})
	}
	return ev
}

// TestAnalyseFailBack: leadership that returns after the stable period
// passes; one that returns before it, or a witness that held the lease,
// fails.
func TestAnalyseFailBack(t *testing.T) {
	ms := func(n int64) int64 { return n * 1e6 }
	s := &Scenario{Name: "t", Nodes: 3, Expect: Expected{NeverLease: []string{"n3"},
		FailBack: &FailBackExpect{To: "n1", NotBefore: config.Duration(3 * time.Second), Within: config.Duration(8 * time.Second)}}}
	faults := []FaultWindow{{Index: 0, Kind: FaultIsolate, Start: ms(2000), End: ms(6000), LeaderAtStart: "n1", Roles: map[string]string{"leader": "n1"}}}
	stats := []NodeStats{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}}
	for _, tc := range []struct {
		back    time.Duration
		witness bool
		pass    bool
	}{
		{3500 * time.Millisecond, false, true},
		{time.Second, false, false}, // before the stable period
		{9 * time.Second, false, false},
		{3500 * time.Millisecond, true, false},
	} {
		r := analyse(s, twoRegionEvents(tc.back, tc.witness), ms(1000), ms(20000), faults, nil, stats)
		if len(r.Violations) > 0 {
			t.Fatalf("the events break the checker's rules: %v", r.Violations)
		}
		if r.Pass != tc.pass {
			t.Errorf("back after %v, witness lease %v: pass %v, want %v:\n%s", tc.back, tc.witness, r.Pass, tc.pass, r.Summary())
		}
		if r.FailBackAfter == nil || time.Duration(*r.FailBackAfter) != tc.back {
			t.Errorf("back after %v: measured %v", tc.back, r.FailBackAfter)
		}
	}
}

// TestMeasureChanges: a change's leaderless time is the part of it without
// a lease, and max_change_time judges its length.
func TestMeasureChanges(t *testing.T) {
	ms := func(n int64) int64 { return n * 1e6 }
	s := &Scenario{Name: "t", Nodes: 3, Expect: Expected{MaxChangeTime: config.Duration(2 * time.Second)}}
	stats := []NodeStats{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}}
	r := analyse(s, twoRegionEvents(3500*time.Millisecond, false), ms(1000), ms(20000), nil, nil, stats)
	r.measureChanges(s, []MembershipChange{
		{Desc: "across the failover", Requested: ms(2500), Applied: ms(3500), Took: Millis(ms(1000))},
		{Desc: "too slow", Requested: ms(10000), Applied: ms(13000), Took: Millis(ms(3000))},
		{Desc: "never applied", Requested: ms(14000)},
	})
	if got := r.Changes[0].Leaderless; got != Millis(ms(3101-2800)) {
		t.Errorf("leaderless during the first change: %v, want 301ms", got)
	}
	var ok []bool
	for _, c := range r.Checks {
		ok = append(ok, c.OK)
	}
	if len(ok) != 3 || !ok[0] || ok[1] || ok[2] || r.Pass {
		t.Errorf("checks %+v, pass %v; want ok, too slow, never applied, and FAIL", r.Checks, r.Pass)
	}
}

// TestAnalyseAgreementAfterHeal: the time from a drop's end to every
// running node naming one leader in one term, for good: a node that names
// the leader and then campaigns again restarts the clock.
func TestAnalyseAgreementAfterHeal(t *testing.T) {
	ms := func(n int64) int64 { return n * 1e6 }
	base := []eventlog.Event{
		{Mono: ms(1), Node: "n1", Kind: eventlog.KindStart},
		{Mono: ms(1), Node: "n2", Kind: eventlog.KindStart},
		{Mono: ms(100), Node: "n1", Kind: eventlog.KindState, Term: 2, Role: "leader", Leader: "n1"},
		{Mono: ms(100), Node: "n2", Kind: eventlog.KindState, Term: 2, Role: "follower", Leader: "n1"},
		// The drop n1 -> n2 from 2000 to 4000: n2 campaigns.
		{Mono: ms(3000), Node: "n2", Kind: eventlog.KindState, Term: 2, Role: "pre-candidate"},
	}
	s := &Scenario{Name: "t", Nodes: 2, Expect: Expected{AgreeAfterHealWithin: config.Duration(time.Second)}}
	faults := []FaultWindow{{Index: 0, Kind: FaultDrop, Start: ms(2000), End: ms(4000), LeaderAtStart: "n1"}}
	stats := []NodeStats{{Name: "n1"}, {Name: "n2"}}
	back := func(at int64) eventlog.Event {
		return eventlog.Event{Mono: ms(at), Node: "n2", Kind: eventlog.KindState, Term: 2, Role: "follower", Leader: "n1"}
	}
	for _, tc := range []struct {
		name string
		more []eventlog.Event
		got  string
		pass bool
	}{
		{"soon", []eventlog.Event{back(4300)}, "300ms", true},
		{"late", []eventlog.Event{back(5500)}, "1.5s", false},
		{"never", nil, "never", false},
		{"back then gone again", []eventlog.Event{back(4100), {Mono: ms(4200), Node: "n2", Kind: eventlog.KindState, Term: 2, Role: "pre-candidate"}, back(5200)}, "1.2s", false},
	} {
		ev := append(slices.Clone(base), tc.more...)
		r := analyse(s, ev, ms(1000), ms(8000), faults, nil, stats)
		if len(r.Checks) != 1 || r.Checks[0].Got != tc.got || r.Checks[0].OK != tc.pass || r.Pass != tc.pass {
			t.Errorf("%s: checks %+v, pass %v; want got %s, pass %v", tc.name, r.Checks, r.Pass, tc.got, tc.pass)
		}
	}
	// Agreeing at the heal already: 0.
	if r := analyse(s, slices.Clone(base[:4]), ms(1000), ms(8000), faults, nil, stats); !r.Pass || r.Checks[0].Got != "0s" {
		t.Errorf("agreeing through the drop: %+v", r.Checks)
	}
}
