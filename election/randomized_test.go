package election_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftelect/raftelect/checker"
	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/eventlog"
	tc "github.com/raftelect/raftelect/internal/testcluster"
)

var (
	seedFlag      = flag.Uint64("seed", 0, "seed of TestRandomFaultSchedules (0: from the time)")
	replayFlag    = flag.String("replay", "", "run only schedule CLUSTER/INDEX of TestRandomFaultSchedules (with -seed), a few times")
	schedulesFlag = flag.Int("schedules", 25, "schedules per cluster of TestRandomFaultSchedules (two clusters; -short: 10)")
)

// faultKind is one kind of fault a schedule injects.
type faultKind int

const (
	faultIsolate  faultKind = iota // cut a node off both ways
	faultLink                      // drop one direction of one link
	faultSlow                      // delay everything into a node
	faultStop                      // stop a node gracefully, start it later
	faultCrash                     // silence a node, stop it, start it later
	faultTransfer                  // the lease holder transfers leadership
	faultKinds
)

var faultNames = [...]string{"isolate", "link", "slow", "stop", "crash", "transfer"}

// fault is one step of a schedule: at At into the window, apply Kind to
// node Node (-1: whoever holds the lease then), until At+For.
type fault struct {
	At, For time.Duration
	Kind    faultKind
	Node    int
	Peer    int           // the other end, for a link
	Delay   time.Duration // for slow
}

func (f fault) String() string {
	who := "leader"
	if f.Node >= 0 {
		who = fmt.Sprintf("n%d", f.Node+1)
	}
	s := fmt.Sprintf("%v+%v %s %s", f.At, f.For, faultNames[f.Kind], who)
	switch f.Kind {
	case faultLink:
		s += fmt.Sprintf("->n%d", f.Peer+1)
	case faultSlow:
		s += fmt.Sprintf(" %v", f.Delay)
	}
	return s
}

// schedule is a short window of overlapping faults.
type schedule struct {
	Window time.Duration
	Faults []fault
}

func (s schedule) String() string {
	parts := make([]string, len(s.Faults))
	for i, f := range s.Faults {
		parts[i] = f.String()
	}
	return fmt.Sprintf("window %v: %s", s.Window, strings.Join(parts, "; "))
}

// genSchedule draws a schedule for a cluster of n nodes. Faults aim at the
// lease holder more often than not: that is where the lease is at stake.
func genSchedule(r *rand.Rand, n int) schedule {
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+r.IntN(hi-lo+1)) * time.Millisecond }
	s := schedule{Window: ms(1000, 2000)}
	stopped := false
	for range 1 + r.IntN(3) {
		f := fault{Kind: faultKind(r.IntN(int(faultKinds))), Node: -1, Peer: -1}
		if (f.Kind == faultStop || f.Kind == faultCrash) && stopped {
			f.Kind = faultIsolate // one node down at a time keeps a majority
		}
		if f.Kind == faultStop || f.Kind == faultCrash {
			stopped = true
		}
		if f.Kind != faultTransfer && r.IntN(3) == 0 {
			f.Node = r.IntN(n)
		}
		if f.Kind == faultLink {
			f.Peer = r.IntN(n)
			if f.Node >= 0 && f.Peer == f.Node {
				f.Peer = (f.Peer + 1) % n
			}
		}
		if f.Kind == faultSlow {
			f.Delay = ms(20, 450)
		}
		f.At = ms(0, int(s.Window/time.Millisecond)*2/3)
		f.For = ms(200, 1500)
		s.Faults = append(s.Faults, f)
	}
	return s
}

// scheduleRand is the generator of one schedule, so that any schedule can
// be replayed alone from the seed and its place.
func scheduleRand(seed uint64, cluster, index int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(cluster)<<32|uint64(index)))
}

// faultRunner applies a schedule to a running cluster.
type faultRunner struct {
	c       *tc.Cluster
	mu      sync.Mutex
	stopped map[int]bool
}

// resolve picks the node a fault aims at: its own, or the lease holder (or
// any running node if there is none).
func (fr *faultRunner) resolve(node int, r *rand.Rand) int {
	if node >= 0 {
		return node
	}
	if l := holderOtherThan(fr.c, -1); l >= 0 {
		return l
	}
	return r.IntN(len(fr.c.Nodes))
}

func (fr *faultRunner) link(from, to int, on bool) {
	if from != to {
		fr.c.Nodes[to].Hooks.BlockFrom(fr.c.Nodes[from].Name, on)
	}
}

// run applies s, waits out its window and heals everything; errors of
// Transfer are expected (there may be no leader) and ignored.
func (fr *faultRunner) run(s schedule, r *rand.Rand) {
	c := fr.c
	start := time.Now()
	var wg sync.WaitGroup
	for _, f := range s.Faults {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(start.Add(f.At)))
			fr.mu.Lock()
			node := fr.resolve(f.Node, r)
			fr.mu.Unlock()
			heal := func() {}
			switch f.Kind {
			case faultIsolate:
				isolate(c, node, true)
				heal = func() { isolate(c, node, false) }
			case faultLink:
				peer := f.Peer
				if peer < 0 || peer == node {
					peer = (node + 1) % len(c.Nodes)
				}
				fr.link(node, peer, true)
				heal = func() { fr.link(node, peer, false) }
			case faultSlow:
				c.Nodes[node].Hooks.SetInboundDelay(f.Delay)
				heal = func() { c.Nodes[node].Hooks.SetInboundDelay(0) }
			case faultStop, faultCrash:
				fr.mu.Lock()
				if fr.stopped[node] || len(fr.stopped) > 0 {
					fr.mu.Unlock()
					return
				}
				fr.stopped[node] = true
				// The cluster's node table is not safe for concurrent
				// use: hold the lock while the node stops.
				if f.Kind == faultCrash {
					isolate(c, node, true)
				}
				c.StopNode(node)
				if f.Kind == faultCrash {
					isolate(c, node, false)
				}
				fr.mu.Unlock()
			case faultTransfer:
				fr.mu.Lock()
				var e *election.Elector
				if l := holderOtherThan(c, -1); l >= 0 {
					e = c.Nodes[l].Elector
				}
				fr.mu.Unlock()
				if e != nil {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					_ = e.Transfer(ctx, "")
					cancel()
				}
			}
			time.Sleep(time.Until(start.Add(f.At + f.For)))
			heal()
		}()
	}
	wg.Wait()
	time.Sleep(time.Until(start.Add(s.Window)))
	fr.reset()
}

// reset heals every fault and starts stopped nodes again.
func (fr *faultRunner) reset() {
	c := fr.c
	for i, n := range c.Nodes {
		n.Hooks.BlockIngress(false)
		n.Hooks.SetInboundDelay(0)
		for _, m := range c.Nodes {
			n.Hooks.BlockFrom(m.Name, false)
		}
		if !c.Running(i) {
			c.StartNode(i, nil)
		}
	}
	clear(fr.stopped)
}

// settle waits (without failing) for a lease holder, so that the next
// schedule starts from a led cluster when the last one allows it.
func settle(c *tc.Cluster, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && holderOtherThan(c, -1) < 0 {
		time.Sleep(20 * time.Millisecond)
	}
}

// check runs the checker; nodes without durable state restart from term 0
// by design (see checkLostState).
func check(c *tc.Cluster, durable bool) checker.Report {
	if durable {
		return checker.Check(c.Events(), checker.Options{})
	}
	return checkLostState(c)
}

// Random schedules of faults (isolation, one-way link drops, slow links,
// graceful and crash-like stops, transfers) on real gRPC clusters, many per
// cluster, two clusters at once: at most one lease holder at any instant,
// tokens increasing, leases inside their terms, in every schedule. Bounded
// (-schedules per cluster) and safety only: the wall clock decides the
// timing, so a seed regenerates a run's faults (-seed, -replay) but not the
// run. The simulator is where schedules replay byte for byte and run by the
// hundred thousand (internal/sim: TestSimulator_NoScheduleBreaksAPromise,
// TestReplay); this test keeps the real transport, TLS and timers in the
// loop. A failure names the seed and the schedule.
func TestRandomFaultSchedules_NoLeaseOverlap(t *testing.T) {
	t.Parallel()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d: the faults of any schedule again with -args -seed=%d -replay=CLUSTER/INDEX", seed, seed)
	type plan struct {
		size, schedules int
		durable         bool
	}
	plans := []plan{{3, *schedulesFlag, false}, {5, *schedulesFlag, true}}
	if testing.Short() {
		plans = []plan{{3, 10, false}, {5, 10, true}}
	}
	only, onlyIndex := -1, -1
	if *replayFlag != "" {
		if _, err := fmt.Sscanf(*replayFlag, "%d/%d", &only, &onlyIndex); err != nil {
			t.Fatalf("-replay %q: want CLUSTER/INDEX: %v", *replayFlag, err)
		}
	}
	replay := func(cluster, index int) string {
		return fmt.Sprintf("the same faults again (not the same timing) with: go test ./election -run TestRandomFaultSchedules -args -seed=%d -replay=%d/%d", seed, cluster, index)
	}

	var mu sync.Mutex
	var failures []string
	total, leases := 0, 0
	clusters := make([]*tc.Cluster, len(plans))
	for ci, p := range plans {
		if only >= 0 && ci != only {
			continue
		}
		c := tc.New(t, p.size)
		c.Durable = p.durable
		t.Cleanup(c.DumpEvents)
		c.Start()
		clusters[ci] = c
	}
	var wg sync.WaitGroup
	for ci, p := range plans {
		c := clusters[ci]
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fr := &faultRunner{c: c, stopped: map[int]bool{}}
			settle(c, 10*time.Second)
			runs := 0
			for i := range p.schedules {
				if onlyIndex >= 0 && i != onlyIndex {
					continue
				}
				reps := 1
				if onlyIndex >= 0 {
					reps = 5
				}
				for run := range reps {
					r := scheduleRand(seed, ci, i)
					s := genSchedule(r, p.size)
					since := eventlog.Now()
					fr.run(s, r)
					settle(c, 3*tc.ElectionTimeout)
					runs++
					rep := check(c, p.durable)
					if !rep.OK() {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("seed %d cluster %d (%d nodes) schedule %d (run %d) began at mono %d\n  %s\n%s  %s",
							seed, ci, p.size, i, run, since, s, rep.Summary(), replay(ci, i)))
						mu.Unlock()
						return
					}
				}
			}
			c.StopAll()
			rep := check(c, p.durable)
			mu.Lock()
			total += runs
			leases += rep.Leases
			if !rep.OK() {
				failures = append(failures, fmt.Sprintf("seed %d cluster %d after stop:\n%s", seed, ci, rep.Summary()))
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("lease violations under random faults:\n%s", strings.Join(failures, "\n"))
	}
	used := 0
	for _, c := range clusters {
		if c != nil {
			used++
		}
	}
	t.Logf("seed %d: %d schedules on %d clusters, %d leases, 0 violations", seed, total, used, leases)
}
