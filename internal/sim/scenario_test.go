package sim

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/internal/core"
)

// Stability: faults that must not cost the leader its lease, nor the
// cluster an election. Wall-clock tests in election/ cannot claim this: on
// a loaded machine a process starved for an election timeout rightly loses
// its leader (a follower that has not heard its leader for its whole
// promise campaigns; a lease not renewed in time ends). Here time is
// simulated, so the claim is exact. Each scenario runs on many seeds, each
// drawing its own latencies (up to a heartbeat), loss (up to 30 %, as
// retransmission delay), duplication and clock rates (9.4 % apart at
// most); the scenario fixes only its fault, placed at a fixed time.

var scenarioSeeds = flag.Int("sim.scenario.seeds", 100, "seeds each stability scenario runs on")

const (
	faultAt          = 4 * time.Second  // the fault begins, once a lease is held
	faultBy          = 10 * time.Second // a healthy cluster has a lease holder by then
	scenarioDuration = 25 * time.Second // the run ends
)

// stability is one scenario: what the network is, which fault is placed on
// the lease holder at faultAt (or as soon after as there is one), and what
// must hold from then on.
type stability struct {
	name  string
	nodes int // 3 or 5: only seeds that draw this cluster size (0: either)
	// network, if set, fixes the network's latency and loss.
	network func(s *sim)
	// fault is applied with the lease holder and the others; it returns
	// the followers that must stay followers throughout and the heal,
	// which comes after lasts (0: the fault lasts to the end).
	fault func(s *sim, leader int, others []int) (quiet []int, heal func())
	lasts time.Duration
	// rejoin: by the end, every node follows the leader (after a heal).
	rejoin bool
	// felt: the fault cuts a node off from the leader, which must then
	// campaign at least once (pre-vote): the fault was in effect.
	felt bool
}

// stabilityRun is one seed's run of a scenario.
type stabilityRun struct {
	s       *sim
	res     Result
	skipped bool          // the seed drew the other cluster size
	leader  int           // the lease holder when the fault began (-1: none by faultBy)
	from    time.Duration // when the fault began
	term    uint64
	quiet   map[string]bool
}

func runStability(t *testing.T, sc stability, seed uint64, opts Options) stabilityRun {
	r := stabilityRun{leader: -1, quiet: map[string]bool{}}
	opts.Duration = scenarioDuration
	opts.plan = func(s *sim) {
		r.s = s
		if sc.nodes != 0 && len(s.nodes) != sc.nodes {
			r.skipped = true
			s.q = s.q[:0] // nothing runs
			return
		}
		if sc.network != nil {
			sc.network(s)
		}
		var begin func()
		begin = func() {
			r.leader = s.leaseHolder()
			if r.leader < 0 {
				if s.now < faultBy {
					s.at(s.now+Tick, begin)
				}
				return
			}
			r.from = s.now
			r.term = s.nodes[r.leader].core.Status().GetTerm()
			var others []int
			for i := range s.nodes {
				if i != r.leader {
					others = append(others, i)
				}
			}
			quiet, heal := sc.fault(s, r.leader, others)
			for _, q := range quiet {
				r.quiet[s.nodes[q].name] = true
			}
			s.trace("scenario %s: leader %s term=%d", sc.name, s.nodes[r.leader].name, r.term)
			if heal != nil && sc.lasts > 0 {
				s.at(s.now+sc.lasts, heal)
			}
		}
		s.at(faultAt, begin)
	}
	r.res = run(t, seed, opts)
	return r
}

// problems lists what went wrong from the fault on: a broken promise (the
// checker), no lease holder by faultBy, any node in another term
// or following another leader, the leader leaving its role or its lease
// ending (other than with the run), a new lease, a quiet follower
// campaigning, and, for a scenario that heals, a node not following the
// leader at the end.
func (r stabilityRun) problems(sc stability) []string {
	out := append([]string(nil), r.res.Violations...)
	if r.leader < 0 {
		return append(out, fmt.Sprintf("no lease holder %v after the start of a healthy cluster", faultBy))
	}
	leader := r.s.nodes[r.leader].name
	for _, e := range r.s.events {
		at := time.Duration(e.Mono)
		if at < r.from {
			continue
		}
		switch e.Kind {
		case eventlog.KindState:
			if e.Term != r.term {
				out = append(out, fmt.Sprintf("at %v %s moved to term %d (was %d)", at, e.Node, e.Term, r.term))
			}
			if e.Leader != "" && e.Leader != leader {
				out = append(out, fmt.Sprintf("at %v %s follows %s", at, e.Node, e.Leader))
			}
			if e.Node == leader && e.Role != "leader" {
				out = append(out, fmt.Sprintf("at %v leader %s became %s", at, leader, e.Role))
			}
			if r.quiet[e.Node] && e.Role != "follower" {
				out = append(out, fmt.Sprintf("at %v healthy follower %s became %s", at, e.Node, e.Role))
			}
		case eventlog.KindLeaseEnd:
			if at < scenarioDuration {
				out = append(out, fmt.Sprintf("at %v %s's lease %d ended", at, e.Node, e.Token))
			}
		case eventlog.KindLeaseStart:
			out = append(out, fmt.Sprintf("at %v %s started lease %d", at, e.Node, e.Token))
		}
	}
	if sc.felt {
		campaigned := false
		for _, e := range r.s.events {
			if time.Duration(e.Mono) >= r.from && e.Kind == eventlog.KindState && e.Role == "pre-candidate" {
				campaigned = true
			}
		}
		if !campaigned {
			out = append(out, "nobody cut off from the leader campaigned: the fault was not in effect")
		}
	}
	if sc.rejoin {
		for _, nd := range r.s.nodes {
			if lead := nd.core.Status().Lead; lead != r.s.nodes[r.leader].id {
				out = append(out, fmt.Sprintf("at the end %s follows %q, not %s", nd.name, r.s.names[lead], leader))
			}
		}
	}
	return out
}

// fewLosses caps the loss drawn for the seed at 5 %: for scenarios whose
// lease rests on the links to the followers the fault spares (one of two,
// or two of four), each of which it then needs. With 30 % loss (each loss
// a 200 ms retransmission, and a send past the half-election-timeout
// deadline given up) those links alone sometimes carry no acknowledgement
// for the lease's 810 ms, and the lease rightly lapses for a moment
// (seeds 222, 1062, 1318, 1478 and 1509 of 2,000 showed it, with the same
// leader and token before and after); the healthy scenario, whose lease
// rests on either of two links, keeps it at 30 %.
func fewLosses(s *sim) { s.loss = min(s.loss, 0.05) }

// oneWay drops every packet from a to b (b hears nothing from a, a's
// connection to b times out).
func oneWay(a, b int) func(s *sim) func() {
	return func(s *sim) func() {
		s.links[a][b].drop = true
		s.trace("fault: %s -> %s dropped", s.nodes[a].name, s.nodes[b].name)
		return func() { s.links[a][b].drop = false }
	}
}

var stabilityScenarios = []stability{
	{
		// election/: TestHealthyCluster_StaysSafeAndLed, and
		// TestCARotation_WithoutRestart: a rotation changes credentials for
		// new handshakes only, so the cluster's connections, and this
		// claim, are those of a healthy cluster.
		name: "healthy",
		fault: func(s *sim, l int, others []int) ([]int, func()) {
			return others, nil
		},
	},
	{
		// election/: TestAsymmetricSilentDrop_StaysSafeAndLed.
		name:    "leader->first-follower dropped",
		network: fewLosses,
		fault: func(s *sim, l int, o []int) ([]int, func()) {
			return []int{o[1]}, oneWay(l, o[0])(s)
		},
		lasts: 15 * time.Second, rejoin: true, felt: true,
	},
	{
		name:    "leader->second-follower dropped",
		network: fewLosses,
		fault: func(s *sim, l int, o []int) ([]int, func()) {
			return []int{o[0]}, oneWay(l, o[1])(s)
		},
		lasts: 15 * time.Second, rejoin: true, felt: true,
	},
	{
		name:    "first-follower->leader dropped",
		network: fewLosses,
		fault: func(s *sim, l int, o []int) ([]int, func()) {
			return []int{o[1]}, oneWay(o[0], l)(s)
		},
		lasts: 15 * time.Second, rejoin: true,
	},
	{
		// election/: TestFiveNodes_SilentDropsToTwoFollowers_StaySafeAndLed.
		name: "5 nodes, leader->two followers dropped", nodes: 5,
		network: fewLosses,
		fault: func(s *sim, l int, o []int) ([]int, func()) {
			heal0, heal1 := oneWay(l, o[0])(s), oneWay(l, o[1])(s)
			return o[2:], func() { heal0(); heal1() }
		},
		lasts: 15 * time.Second, rejoin: true, felt: true,
	},
	{
		// election/: TestCutOffFollower_Rejoins. The cut-off node may
		// pre-campaign; with PreVote its term never rises, so nobody
		// changes term or leader, and it follows the leader again once
		// healed.
		name:    "follower cut off for 5 election timeouts, then healed",
		network: fewLosses,
		fault: func(s *sim, l int, o []int) ([]int, func()) {
			s.setDrop(o[0], true)
			s.trace("fault: %s cut off", s.nodes[o[0]].name)
			return o[1:], func() { s.setDrop(o[0], false); s.trace("heal: %s", s.nodes[o[0]].name) }
		},
		lasts: 5 * ElectionTimeout, rejoin: true, felt: true,
	},
	{
		// election/: TestSlowLinks_RoundTripAboveHeartbeat_StaySafeAndLed. Every one-way
		// delay is 80 ms: a round trip of 160 ms, above the heartbeat
		// interval; deadlines must not mistake slowness for death.
		name: "round trip above the heartbeat interval",
		network: func(s *sim) {
			s.minLat, s.maxLat, s.loss = 80*time.Millisecond, 80*time.Millisecond, 0
		},
		fault: func(s *sim, l int, others []int) ([]int, func()) {
			return others, nil
		},
	},
}

// Each stability scenario holds on every seed: the leader keeps its lease
// and nobody changes term or leader. A failure prints the seed's trace from
// the fault on.
func TestSimulator_StableUnderFaultsThatSpareAQuorum(t *testing.T) {
	for _, sc := range stabilityScenarios {
		t.Run(sc.name, func(t *testing.T) {
			ran := 0
			for seed := uint64(1); ran < *scenarioSeeds; seed++ {
				r := runStability(t, sc, seed, Options{})
				if r.skipped {
					continue
				}
				ran++
				if p := r.problems(sc); len(p) > 0 {
					t.Errorf("seed %d (%d nodes, latency %v-%v, loss %.2f, dup %.2f):\n  %s", seed, len(r.s.nodes), r.s.minLat, r.s.maxLat, r.s.loss, r.s.dup, strings.Join(p, "\n  "))
					logTrace(t, sc, seed, Options{})
					return
				}
			}
			t.Logf("%d seeds: the leader kept its lease, no term or leader change", ran)
		})
	}
}

// logTrace runs seed again with its trace and logs 400 steps from an
// election timeout before the fault (the same seed replays the same run).
func logTrace(t *testing.T, sc stability, seed uint64, opts Options) {
	var lines []string
	opts.Trace = func(l string) { lines = append(lines, l) }
	r := runStability(t, sc, seed, opts)
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 {
			if at, err := time.ParseDuration(f[0]); err == nil && at >= r.from-ElectionTimeout {
				lines = lines[i:]
				break
			}
		}
	}
	lines = lines[:min(len(lines), 400)]
	t.Logf("trace of seed %d:\n%s", seed, strings.Join(lines, "\n"))
}

// The scenarios catch what they guard against: each bug put back below
// makes a scenario fail on some seed within the first 100.
func TestSimulator_StabilityScenariosCatchBugs(t *testing.T) {
	byName := map[string]stability{}
	for _, sc := range stabilityScenarios {
		byName[sc.name] = sc
	}
	for _, tc := range []struct {
		bug      string
		scenario string
		opts     Options
		want     string
	}{
		// A lease of two heartbeats: one late or lost acknowledgement
		// and the leader loses it in a healthy cluster.
		{"a lease of two heartbeats", "healthy", Options{Bugs: core.Bugs{LeaseLength: 2 * Tick}}, "ended"},
		// Sends that wait for a silent peer (the reference system's bug,
		// which chaos's TestReproFailsWithSyncSendAndPassesWithout shows
		// on real processes): the leader stalls on the dropped link and
		// the healthy follower campaigns.
		{"synchronous sends", "leader->first-follower dropped", Options{SyncSends: true}, "healthy follower"},
	} {
		t.Run(tc.bug, func(t *testing.T) {
			sc := byName[tc.scenario]
			for seed := uint64(1); seed <= 100; seed++ {
				r := runStability(t, sc, seed, tc.opts)
				if r.skipped {
					continue
				}
				if p := r.problems(sc); len(p) > 0 {
					if !strings.Contains(strings.Join(p, "\n"), tc.want) {
						t.Fatalf("seed %d shows another problem than %q: %v", seed, tc.want, p)
					}
					t.Logf("%q caught at seed %d: %s", tc.scenario, seed, p[0])
					return
				}
			}
			t.Fatalf("scenario %q did not catch %s in 100 seeds", tc.scenario, tc.bug)
		})
	}
}
