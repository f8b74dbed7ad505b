//go:build linux

package chaos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/raftelect/raftelect/checker"
	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/internal/proccluster"
)

// BenchOptions say what `raftelect bench` measures and how often. A zero
// count or duration skips that phase.
type BenchOptions struct {
	Binary string // the raftelect executable to run as nodes; required
	Dir    string // output directory; created; a temporary one if empty
	Nodes  int    // default 3

	HeartbeatInterval time.Duration // default 100ms
	ElectionTimeout   time.Duration // default 1s

	ColdStarts int // fresh clusters, all nodes started at once
	Kills      int // kill -9 of the leader
	Isolations int // the leader's namespace cut off both ways
	Terms      int // SIGTERM of the leader
	Rejoins    int // kill -9 of a follower, started again
	AsymHeals  int // drop leader -> follower, healed
	// AsymDrop is how long each of those drops lasts; default three
	// election timeouts. TCP's retransmission backoff makes the wait after
	// the heal depend on it (docs/benchmarks.md, "Agreement after an
	// asymmetric drop heals").
	AsymDrop time.Duration
	// AsymDropArriving drops those packets as they arrive at the follower
	// (netns.DropArriving: the leader's stack learns nothing, as when a
	// network loses them) instead of on the leader's way out
	// (netns.DropBetween: its sends fail on its host).
	AsymDropArriving bool
	Rolling          bool

	Idle    time.Duration // idle CPU, RSS and traffic window
	Soak    time.Duration // goroutines and heap over each of the two soaks
	Profile time.Duration // CPU profile length; 0: no profiles

	// FastFailover sets fast_failover_on_refusal on every node: a refused
	// connection to the leader is taken as proof that it is gone
	// (docs/safety.md). Off, a killed leader's followers wait out their
	// election timeout, as for a silent one.
	FastFailover bool

	// NodeEnv is added to the nodes' environment (KEY=VALUE each), to
	// compare runtime settings such as GOMAXPROCS or GOGC on one build.
	NodeEnv []string

	Progress io.Writer
}

// bench carries one bench run over one long-lived cluster.
type bench struct {
	o     BenchOptions
	c     *cluster
	t     *tailer
	ev    []eventlog.Event // every event polled since the tailer was made
	res   *BenchResult
	start time.Time
}

func (b *bench) logf(format string, args ...any) { progress(b.o.Progress, b.start, format, args...) }

func (b *bench) fail(format string, args ...any) {
	err := fmt.Sprintf(format, args...)
	b.res.Errors = append(b.res.Errors, err)
	b.logf("ERROR %s", err)
}

// Bench measures failover, rejoin, agreement and idle cost on real
// processes in network namespaces, writes bench.json, bench.txt,
// failover.svg and profiles into the directory, and returns the figures.
// An error means the bench could not run; a repetition that could not be
// measured is recorded in BenchResult.Errors and the bench goes on.
func Bench(ctx context.Context, o BenchOptions) (*BenchResult, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if o.Binary == "" {
		return nil, errors.New("chaos: BenchOptions.Binary: the raftelect executable is required")
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes < 3 {
		return nil, fmt.Errorf("chaos: bench needs at least 3 nodes, not %d", o.Nodes)
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 100 * time.Millisecond
	}
	if o.ElectionTimeout == 0 {
		o.ElectionTimeout = time.Second
	}
	if o.AsymDrop == 0 {
		o.AsymDrop = 3 * o.ElectionTimeout
	}
	if o.AsymDrop < 0 {
		return nil, fmt.Errorf("chaos: BenchOptions.AsymDrop %v: the drop must last a positive time", o.AsymDrop)
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "raftelect-bench-")
		if err != nil {
			return nil, err
		}
		o.Dir = d
	}
	clusterDir := filepath.Join(o.Dir, "cluster")
	if err := os.MkdirAll(clusterDir, 0o755); err != nil {
		return nil, err
	}
	bin, err := filepath.Abs(o.Binary)
	if err != nil {
		return nil, err
	}
	b := &bench{o: o, start: time.Now(), res: &BenchResult{
		Nodes: o.Nodes, Heartbeat: Millis(o.HeartbeatInterval), ElectionTimeout: Millis(o.ElectionTimeout),
		CPUs: runtime.NumCPU(), Kernel: kernel(), GoVersion: runtime.Version(), Dir: o.Dir,
		FastFailover: o.FastFailover,
		Violations:   []string{}, Errors: []string{}, Profiles: []Profile{}, Soaks: []Soak{},
	}}
	var nodeConfig []NodeConfig
	if o.FastFailover {
		nodeConfig = make([]NodeConfig, o.Nodes)
		for i := range nodeConfig {
			nodeConfig[i].FastFailoverOnRefusal = true
		}
	}
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b.c, err = newCluster(setup, clusterConfig{
		nodes: o.Nodes, binary: bin, dir: clusterDir,
		heartbeat: o.HeartbeatInterval, electionTimeout: o.ElectionTimeout,
		pprof: true, env: o.NodeEnv, nodeConfig: nodeConfig,
	})
	if err != nil {
		return nil, err
	}
	defer b.c.Close()
	ff := ""
	if o.FastFailover {
		ff = ", fast_failover_on_refusal"
	}
	b.logf("%d nodes in network namespaces, heartbeat %v, election timeout %v%s; files in %s", o.Nodes, o.HeartbeatInterval, o.ElectionTimeout, ff, o.Dir)

	if err := b.run(ctx); err != nil {
		return nil, err
	}
	b.res.Took = Millis(time.Since(b.start))
	b.res.judge()
	return b.res, b.res.WriteFiles(o.Dir)
}

func (b *bench) run(ctx context.Context) error {
	et := b.o.ElectionTimeout
	// Cold starts; the last one leaves the cluster running for the rest,
	// whose event logs the checker reads at the end.
	var cold []time.Duration
	for k := range max(b.o.ColdStarts, 1) {
		d, err := b.coldStart(ctx, k)
		if err != nil {
			return err
		}
		if k < b.o.ColdStarts {
			cold = append(cold, d)
			b.logf("cold start %d/%d: a lease after %v", k+1, b.o.ColdStarts, d.Round(time.Millisecond))
		}
	}
	b.res.ColdStart = newDist(cold)
	if _, _, err := b.settle(ctx, 2*et); err != nil {
		return err
	}
	phases := []struct {
		name string
		on   bool
		f    func(context.Context) error
	}{
		{"idle", b.o.Idle > 0, b.idle},
		{"kill", b.o.Kills > 0, b.kills},
		{"term", b.o.Terms > 0, b.terms},
		{"isolate", b.o.Isolations > 0, b.isolations},
		{"rejoin", b.o.Rejoins > 0, b.rejoins},
		{"asym", b.o.AsymHeals > 0, b.asymHeals},
		{"rolling", b.o.Rolling, b.rolling},
		{"soak", b.o.Soak > 0 || b.o.Profile > 0, b.soaks},
	}
	for _, p := range phases {
		if !p.on {
			continue
		}
		if err := p.f(ctx); err != nil {
			return fmt.Errorf("bench %s: %w", p.name, err)
		}
	}
	b.poll()
	ev := slices.Clone(b.ev)
	now := eventlog.Now()
	for _, p := range b.c.nodes {
		ev = append(ev, eventlog.Event{Mono: now, Node: p.name, Kind: eventlog.KindStop})
	}
	slices.SortStableFunc(ev, func(x, y eventlog.Event) int { return cmp.Compare(x.Mono, y.Mono) })
	for _, v := range checker.Check(ev, checker.Options{}).Violations {
		b.res.Violations = append(b.res.Violations, v.String())
	}
	return nil
}

// poll reads new events into b.ev.
func (b *bench) poll() { b.ev = append(b.ev, b.t.poll()...) }

// waitEvent polls until an event after mono satisfies match, for at most
// limit.
func (b *bench) waitEvent(ctx context.Context, mono int64, limit time.Duration, match func(eventlog.Event) bool) (eventlog.Event, error) {
	deadline := time.Now().Add(limit)
	seen := 0
	for {
		b.poll()
		for _, e := range b.ev[seen:] {
			if e.Mono > mono && match(e) {
				return e, nil
			}
		}
		seen = len(b.ev)
		if time.Now().After(deadline) {
			return eventlog.Event{}, fmt.Errorf("nothing within %v", limit)
		}
		if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return eventlog.Event{}, err
		}
	}
}

// settle waits until every node is alive in one term with one leader that
// holds its lease, continuously for hold; at most 30 s.
func (b *bench) settle(ctx context.Context, hold time.Duration) (leader int, term uint64, err error) {
	deadline := time.Now().Add(30 * time.Second)
	var since time.Time
	for {
		b.poll()
		name, t := b.t.leader()
		if b.t.agreed(len(b.c.nodes)) && b.holdsLease(name) {
			if since.IsZero() {
				since = time.Now()
			}
			if time.Since(since) >= hold {
				return b.index(name), t, nil
			}
		} else {
			since = time.Time{}
		}
		if time.Now().After(deadline) {
			return -1, 0, fmt.Errorf("the cluster did not settle on one leader with a lease within 30s (stderr of n1: %s)", b.c.stderrTail(0, 5))
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return -1, 0, err
		}
	}
}

// holdsLease reports whether node's last lease event is a lease_start.
func (b *bench) holdsLease(node string) bool {
	for i := len(b.ev) - 1; i >= 0; i-- {
		e := b.ev[i]
		if e.Node != node {
			continue
		}
		switch e.Kind {
		case eventlog.KindLeaseStart:
			return true
		case eventlog.KindLeaseEnd, eventlog.KindStop, eventlog.KindCrash, eventlog.KindStart:
			return false
		}
	}
	return false
}

func (b *bench) index(name string) int {
	for i, p := range b.c.nodes {
		if p.name == name {
			return i
		}
	}
	return -1
}

// coldStart kills every node, moves the event logs aside, empties the data
// directories, bootstraps them as a brand-new cluster's (`raftelect
// bootstrap`, as docs/operations.md tells operators to) and starts all
// nodes at once; it returns the time from the first exec to the first
// lease.
func (b *bench) coldStart(ctx context.Context, k int) (time.Duration, error) {
	if err := b.c.killAll(); err != nil {
		return 0, err
	}
	var files []string
	for _, p := range b.c.nodes {
		if _, err := os.Stat(p.events); err == nil {
			if err := os.Rename(p.events, fmt.Sprintf("%s.cold%d", p.events, k)); err != nil {
				return 0, err
			}
		}
		if err := os.RemoveAll(filepath.Join(b.c.cfg.dir, p.name+".data")); err != nil {
			return 0, err
		}
		files = append(files, p.events)
	}
	for i := range b.c.nodes {
		if err := b.c.bootstrap(ctx, i); err != nil {
			return 0, err
		}
	}
	b.t, b.ev = newTailer(files), nil
	t0 := eventlog.Now()
	for i := range b.c.nodes {
		if err := b.c.start(i); err != nil {
			return 0, err
		}
	}
	e, err := b.waitEvent(ctx, t0, 30*time.Second, func(e eventlog.Event) bool { return e.Kind == eventlog.KindLeaseStart })
	if err != nil {
		return 0, fmt.Errorf("cold start %d: no lease: %w (stderr of n1: %s)", k+1, err, b.c.stderrTail(0, 5))
	}
	return time.Duration(e.Mono - t0), nil
}

// leaderFailover applies act to the settled leader and measures the time
// from just before it to another node's lease. undo restores the node.
func (b *bench) leaderFailover(ctx context.Context, what string, reps int, act, undo func(i int) error) ([]time.Duration, error) {
	var out []time.Duration
	for k := range reps {
		li, _, err := b.settle(ctx, b.o.ElectionTimeout)
		if err != nil {
			return out, err
		}
		old := b.c.nodes[li].name
		t0 := eventlog.Now()
		if err := act(li); err != nil {
			return out, err
		}
		e, werr := b.waitEvent(ctx, t0, 10*time.Second, func(e eventlog.Event) bool {
			return e.Kind == eventlog.KindLeaseStart && e.Node != old
		})
		if err := undo(li); err != nil {
			return out, err
		}
		if werr != nil {
			b.fail("%s %d/%d of %s: no new lease: %v", what, k+1, reps, old, werr)
			continue
		}
		d := time.Duration(e.Mono - t0)
		out = append(out, d)
		b.logf("%s %d/%d: %s -> %s holds the lease after %v", what, k+1, reps, old, e.Node, d.Round(time.Millisecond))
	}
	return out, nil
}

func (b *bench) kills(ctx context.Context) error {
	d, err := b.leaderFailover(ctx, "kill -9", b.o.Kills, b.c.kill, b.c.start)
	b.res.FailoverKill = newDist(d)
	return err
}

func (b *bench) terms(ctx context.Context) error {
	d, err := b.leaderFailover(ctx, "SIGTERM", b.o.Terms,
		func(i int) error { return b.c.terminate(i, 10*time.Second) }, b.c.start)
	b.res.FailoverTerm = newDist(d)
	return err
}

func (b *bench) isolations(ctx context.Context) error {
	var leaseEnds []time.Duration
	var overlap time.Duration
	var t0 int64
	d, err := b.leaderFailover(ctx, "isolate", b.o.Isolations,
		func(i int) error { t0 = eventlog.Now(); return b.c.nw.Isolate(i) },
		func(i int) error {
			// Before healing: the old leader's lease must have ended
			// (expected within an election timeout; wait up to 5).
			old := b.c.nodes[i].name
			end, err := b.waitEvent(ctx, t0, 5*b.o.ElectionTimeout, func(e eventlog.Event) bool {
				return e.Node == old && (e.Kind == eventlog.KindLeaseEnd || e.Kind == eventlog.KindState && e.Role != roleLeader)
			})
			if err == nil {
				leaseEnds = append(leaseEnds, time.Duration(end.Mono-t0))
				for _, e := range b.ev {
					if e.Mono > t0 && e.Node != old && e.Kind == eventlog.KindLeaseStart && e.Mono < end.Mono {
						overlap = max(overlap, time.Duration(end.Mono-e.Mono))
					}
				}
			} else {
				b.fail("isolate: %s's lease did not end: %v", old, err)
			}
			return b.c.nw.Heal(i)
		})
	b.res.FailoverIsolate, b.res.IsolateOldLeaseEnd, b.res.IsolateOverlap = newDist(d), newDist(leaseEnds), Millis(overlap)
	return err
}

// rejoins kills a follower, waits a heartbeat timeout's worth, starts it
// again and measures until it names the leader.
func (b *bench) rejoins(ctx context.Context) error {
	var fromExec, fromLoad []time.Duration
	for k := range b.o.Rejoins {
		li, _, err := b.settle(ctx, b.o.ElectionTimeout)
		if err != nil {
			return err
		}
		fi := (li + 1 + k%(len(b.c.nodes)-1)) % len(b.c.nodes)
		name := b.c.nodes[fi].name
		if err := b.c.kill(fi); err != nil {
			return err
		}
		if err := sleepCtx(ctx, 2*b.o.HeartbeatInterval); err != nil {
			return err
		}
		t0 := eventlog.Now()
		if err := b.c.start(fi); err != nil {
			return err
		}
		e, err := b.waitEvent(ctx, t0, 10*time.Second, func(e eventlog.Event) bool {
			return e.Node == name && e.Kind == eventlog.KindState && e.Leader != ""
		})
		if err != nil {
			b.fail("rejoin %d/%d of %s: never named a leader: %v", k+1, b.o.Rejoins, name, err)
			continue
		}
		fromExec = append(fromExec, time.Duration(e.Mono-t0))
		var loaded int64
		for _, s := range b.ev {
			if s.Node == name && s.Kind == eventlog.KindStart && s.Mono > t0 {
				loaded = s.Mono
				fromLoad = append(fromLoad, time.Duration(e.Mono-s.Mono))
				break
			}
		}
		b.logf("rejoin %d/%d: %s named leader %s %v after exec (%v after its start event)", k+1, b.o.Rejoins, name, e.Leader,
			time.Duration(e.Mono-t0).Round(time.Millisecond), time.Duration(e.Mono-loaded).Round(time.Millisecond))
	}
	b.res.Rejoin, b.res.RejoinFromLoad = newDist(fromExec), newDist(fromLoad)
	return nil
}

// view is what a node last said: alive, term and leader.
type view struct {
	alive  bool
	term   uint64
	leader string
}

// views replays every event up to now.
func (b *bench) views() map[string]*view {
	m := map[string]*view{}
	for _, e := range b.ev {
		applyView(m, e)
	}
	return m
}

func applyView(m map[string]*view, e eventlog.Event) {
	v := m[e.Node]
	if v == nil {
		v = &view{}
		m[e.Node] = v
	}
	switch e.Kind {
	case eventlog.KindStart:
		*v = view{alive: true, term: e.Term}
	case eventlog.KindStop, eventlog.KindCrash:
		*v = view{}
	case eventlog.KindState:
		*v = view{alive: true, term: e.Term, leader: e.Leader}
	}
}

func agree(m map[string]*view, n int) bool {
	if len(m) < n {
		return false
	}
	var first *view
	for _, v := range m {
		if !v.alive || v.leader == "" {
			return false
		}
		if first == nil {
			first = v
		} else if v.term != first.term || v.leader != first.leader {
			return false
		}
	}
	return true
}

// asymHeals drops every packet leader -> follower for AsymDrop (three
// election timeouts unless given), heals, and measures until every node
// agrees on leader and term, and keeps agreeing for an election timeout.
func (b *bench) asymHeals(ctx context.Context) error {
	var out []time.Duration
	et := b.o.ElectionTimeout
	for k := range b.o.AsymHeals {
		li, _, err := b.settle(ctx, et)
		if err != nil {
			return err
		}
		fi := (li + 1) % len(b.c.nodes)
		drop, healed, where := b.c.nw.DropBetween, li, "on the leader's way out"
		if b.o.AsymDropArriving {
			drop, healed, where = b.c.nw.DropArriving, fi, "as they arrive at the follower"
		}
		if err := drop(li, fi); err != nil {
			return err
		}
		b.logf("asym heal %d/%d: dropping %s -> %s %s for %v", k+1, b.o.AsymHeals, b.c.nodes[li].name, b.c.nodes[fi].name, where, b.o.AsymDrop)
		if err := sleepCtx(ctx, b.o.AsymDrop); err != nil {
			_ = b.c.nw.Heal(healed)
			return err
		}
		b.poll()
		m := b.views()
		agreedAtHeal := agree(m, len(b.c.nodes))
		heal := eventlog.Now()
		if err := b.c.nw.Heal(healed); err != nil {
			return err
		}
		var since int64 = -1
		if agreedAtHeal {
			since = heal
		}
		deadline := time.Now().Add(15 * time.Second)
		seen := len(b.ev)
		for {
			b.poll()
			for _, e := range b.ev[seen:] {
				applyView(m, e)
				switch ok := agree(m, len(b.c.nodes)); {
				case ok && since < 0:
					since = max(e.Mono, heal)
				case !ok:
					since = -1
				}
			}
			seen = len(b.ev)
			if since >= 0 && time.Duration(eventlog.Now()-since) >= et {
				break
			}
			if time.Now().After(deadline) {
				break
			}
			if err := sleepCtx(ctx, 5*time.Millisecond); err != nil {
				return err
			}
		}
		if since < 0 {
			b.fail("asym heal %d/%d: no agreement within 15s of the heal", k+1, b.o.AsymHeals)
			continue
		}
		d := time.Duration(since - heal)
		out = append(out, d)
		b.logf("asym heal %d/%d: drop %s -> %s for %v; all agree %v after the heal (agreed at the heal: %v)", k+1, b.o.AsymHeals,
			b.c.nodes[li].name, b.c.nodes[fi].name, b.o.AsymDrop, d.Round(time.Millisecond), agreedAtHeal)
	}
	b.res.AsymHeal = newDist(out)
	b.res.AsymDrop = Millis(b.o.AsymDrop)
	b.res.AsymDropArriving = b.o.AsymDropArriving
	return nil
}

// rolling restarts every node in turn with SIGTERM, waiting until the
// cluster settles between restarts, and sums the time nobody held the
// lease.
func (b *bench) rolling(ctx context.Context) error {
	if _, _, err := b.settle(ctx, b.o.ElectionTimeout); err != nil {
		return err
	}
	t0 := eventlog.Now()
	for i, p := range b.c.nodes {
		if err := b.c.terminate(i, 10*time.Second); err != nil {
			b.fail("rolling restart of %s: %v", p.name, err)
		}
		if err := b.c.start(i); err != nil {
			return err
		}
		if _, _, err := b.settle(ctx, 2*b.o.HeartbeatInterval); err != nil {
			return err
		}
		b.logf("rolling restart: %s restarted", p.name)
	}
	end := eventlog.Now()
	b.poll()
	var ev []eventlog.Event
	for _, e := range b.ev {
		if e.Mono <= end {
			ev = append(ev, e)
		}
	}
	for _, p := range b.c.nodes {
		ev = append(ev, eventlog.Event{Mono: end, Node: p.name, Kind: eventlog.KindStop})
	}
	slices.SortStableFunc(ev, func(x, y eventlog.Event) int { return cmp.Compare(x.Mono, y.Mono) })
	elections := 0
	for _, e := range ev {
		if e.Mono > t0 && e.Kind == eventlog.KindState && e.Role == roleLeader {
			elections++
		}
	}
	b.res.Rolling = Rolling{Restarts: len(b.c.nodes), Window: Millis(end - t0),
		Leaderless: Millis(leaderless(checker.Timeline(ev), t0, end)), Elections: elections}
	b.logf("rolling restart: %v leaderless over %v, %d elections", b.res.Rolling.Leaderless, b.res.Rolling.Window, elections)
	return nil
}

// idle measures CPU, RSS and eth0 traffic of a settled cluster without
// touching it (no Status polls, no HTTP: only /proc).
func (b *bench) idle(ctx context.Context) error {
	li, _, err := b.settle(ctx, 2*b.o.ElectionTimeout)
	if err != nil {
		return err
	}
	b.logf("idle: measuring CPU, RSS and traffic for %v (leader %s)", b.o.Idle, b.c.nodes[li].name)
	n := len(b.c.nodes)
	pids := make([]int, n)
	cpu0 := make([]time.Duration, n)
	sched0 := make([]threadTimes, n)
	net0 := make([][2]uint64, n)
	for i := range b.c.nodes {
		e := b.c.running(i)
		if e == nil {
			return fmt.Errorf("%s is not running", b.c.nodes[i].name)
		}
		pids[i] = e.Pid
		u, err := proccluster.ReadUsage(e.Pid)
		if err != nil {
			return err
		}
		cpu0[i] = u.CPU
		if sched0[i], err = readThreadTimes(e.Pid); err != nil {
			return err
		}
		if net0[i][0], net0[i][1], err = proccluster.NetDev(e.Pid, "eth0"); err != nil {
			return err
		}
	}
	load0 := loadAverage()
	t0, mono0 := time.Now(), eventlog.Now()
	rssSum, rssMax := make([]uint64, n), make([]uint64, n)
	samples := 0
	lastLog := t0
	for time.Since(t0) < b.o.Idle {
		if err := sleepCtx(ctx, min(time.Second, b.o.Idle-time.Since(t0))); err != nil {
			return err
		}
		samples++
		for i, pid := range pids {
			u, err := proccluster.ReadUsage(pid)
			if err != nil {
				return fmt.Errorf("%s died while idle: %w", b.c.nodes[i].name, err)
			}
			rssSum[i] += u.RSS
			rssMax[i] = max(rssMax[i], u.RSS)
		}
		if time.Since(lastLog) >= 15*time.Second {
			lastLog = time.Now()
			b.logf("idle: %v of %v", time.Since(t0).Round(time.Second), b.o.Idle)
		}
	}
	secs := time.Since(t0).Seconds()
	b.res.Idle = Idle{Window: Millis(time.Since(t0)), LoadStart: load0, LoadEnd: loadAverage()}
	for i, pid := range pids {
		u, err := proccluster.ReadUsage(pid)
		if err != nil {
			return err
		}
		var net1 [2]uint64
		if net1[0], net1[1], err = proccluster.NetDev(pid, "eth0"); err != nil {
			return err
		}
		sched, err := readThreadTimes(pid)
		if err != nil {
			return err
		}
		anon, pss := u.RSSAnon, u.PSS
		ms := float64((u.CPU - cpu0[i]).Microseconds()) / 1000 / secs
		role := "follower"
		if i == li {
			role = roleLeader
		}
		b.res.Idle.Nodes = append(b.res.Idle.Nodes, IdleNode{
			Name: b.c.nodes[i].name, Role: role, CPUMsPerSec: ms, CPUPercent: ms / 10,
			OnCPUMsPerSec: float64((sched.onCPU - sched0[i].onCPU).Microseconds()) / 1000 / secs,
			WakeupsPerSec: float64(sched.wakeups-sched0[i].wakeups) / secs,
			RSSMB:         mb(rssSum[i] / uint64(max(samples, 1))), RSSMaxMB: mb(rssMax[i]), AnonMB: mb(anon), PssMB: mb(pss),
			RxBytesPerSec: float64(net1[0]-net0[i][0]) / secs, TxBytesPerSec: float64(net1[1]-net0[i][1]) / secs,
		})
	}
	b.poll()
	for _, e := range b.ev {
		if e.Kind == eventlog.KindState && e.Mono > mono0 && e.Role == roleLeader {
			b.fail("idle: %s won an election during the idle window; figures include it", e.Node)
		}
	}
	return nil
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "linux"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

// httpClient talks to node i's HTTP address from inside its namespace.
func (b *bench) httpClient(i int, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return b.c.dialIn(ctx, i, addr)
		},
	}}
}

func (b *bench) get(ctx context.Context, i int, path string, timeout time.Duration) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, path), nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.httpClient(i, timeout).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s on %s: %s", path, b.c.nodes[i].name, resp.Status)
	}
	return body, err
}

// runtimeSample reads goroutines (from /debug/pprof/goroutine?debug=1),
// heap in use and live heap just after a forced collection
// (go_memstats_heap_inuse_bytes and go_memstats_heap_alloc_bytes on
// /metrics) and RSS.
func (b *bench) runtimeSample(ctx context.Context, i int) (goroutines int, heapMB, liveMB, rssMB float64, err error) {
	g, err := b.get(ctx, i, "/debug/pprof/goroutine?debug=1", 5*time.Second)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	line, _, _ := strings.Cut(string(g), "\n")
	if _, err := fmt.Sscanf(line, "goroutine profile: total %d", &goroutines); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("goroutine profile of %s: %q", b.c.nodes[i].name, line)
	}
	// The heap in use between two collections swings by up to GOGC's
	// worth; after a forced one (the heap profile's gc=1) it is the live
	// heap, which is what growth is about.
	if _, err := b.get(ctx, i, "/debug/pprof/heap?gc=1", 5*time.Second); err != nil {
		return 0, 0, 0, 0, err
	}
	m, err := b.get(ctx, i, "/metrics", 5*time.Second)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	heap, live := -1.0, -1.0
	for l := range strings.SplitSeq(string(m), "\n") {
		if v, ok := strings.CutPrefix(l, "go_memstats_heap_inuse_bytes "); ok {
			heap, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
		if v, ok := strings.CutPrefix(l, "go_memstats_heap_alloc_bytes "); ok {
			live, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if heap < 0 || live < 0 {
		return 0, 0, 0, 0, fmt.Errorf("/metrics of %s: no go_memstats_heap_inuse_bytes or go_memstats_heap_alloc_bytes", b.c.nodes[i].name)
	}
	if u, err := b.c.pc.Usage(i); err == nil {
		rssMB = mb(u.RSS)
	}
	return goroutines, heap / (1 << 20), live / (1 << 20), rssMB, nil
}

// soaks runs the cluster idle, then with one follower SIGSTOPped, each for
// Soak, sampling goroutines and heap at the start and end, and takes CPU
// and heap profiles of the leader and a running follower at the end of
// each.
func (b *bench) soaks(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(b.o.Dir, "profiles"), 0o755); err != nil {
		return err
	}
	for _, cond := range []string{"idle", "hung-peer"} {
		li, _, err := b.settle(ctx, b.o.ElectionTimeout)
		if err != nil {
			return err
		}
		s := Soak{Condition: cond, Duration: Millis(b.o.Soak)}
		hung := -1
		if cond == "hung-peer" {
			hung = (li + 1) % len(b.c.nodes)
			s.Hung = b.c.nodes[hung].name
			if err := b.c.signalStop(hung, true); err != nil {
				return err
			}
			// Let the leader's sender to it reach its steady state
			// (deadlines, keepalive, backoff) before the first sample.
			if err := sleepCtx(ctx, 3*b.o.ElectionTimeout); err != nil {
				return err
			}
		}
		var watch []int
		for i := range b.c.nodes {
			if i != hung {
				watch = append(watch, i)
			}
		}
		role := func(i int) string {
			if i == li {
				return roleLeader
			}
			return "follower"
		}
		t0 := eventlog.Now()
		for _, i := range watch {
			// The first scrape makes what the HTTP, pprof and metrics
			// handlers keep (buffers, encoders); sample after it, so it
			// does not read as growth.
			if _, _, _, _, err := b.runtimeSample(ctx, i); err != nil {
				return err
			}
			g, h, l, r, err := b.runtimeSample(ctx, i)
			if err != nil {
				return err
			}
			s.Nodes = append(s.Nodes, SoakNode{Name: b.c.nodes[i].name, Role: role(i), GoroutinesStart: g, HeapInuseStartMB: h, HeapLiveStartMB: l, RSSStartMB: r})
		}
		b.logf("soak %s: %v, sampling goroutines and heap of %d nodes at start and end", cond, b.o.Soak, len(watch))
		began := time.Now()
		for time.Since(began) < b.o.Soak {
			if err := sleepCtx(ctx, min(30*time.Second, b.o.Soak-time.Since(began))); err != nil {
				return err
			}
			l, _ := b.t.leader()
			b.poll()
			b.logf("soak %s: %v of %v, leader %s", cond, time.Since(began).Round(time.Second), b.o.Soak, l)
		}
		for k, i := range watch {
			g, h, l, r, err := b.runtimeSample(ctx, i)
			if err != nil {
				return err
			}
			s.Nodes[k].GoroutinesEnd, s.Nodes[k].HeapInuseEndMB, s.Nodes[k].HeapLiveEndMB, s.Nodes[k].RSSEndMB = g, h, l, r
		}
		if b.o.Profile > 0 {
			// The leader and the first running follower, in parallel.
			fi := watch[0]
			if fi == li {
				fi = watch[1]
			}
			type got struct {
				p   []Profile
				err error
			}
			ch := make(chan got, 2)
			for _, i := range []int{li, fi} {
				go func() { p, err := b.profiles(ctx, i, role(i), cond); ch <- got{p, err} }()
			}
			for range 2 {
				g := <-ch
				b.res.Profiles = append(b.res.Profiles, g.p...)
				if g.err != nil {
					b.fail("profiles (%s): %v", cond, g.err)
				}
			}
		}
		if hung >= 0 {
			if err := b.c.signalStop(hung, false); err != nil {
				return err
			}
		}
		b.poll()
		for _, e := range b.ev {
			if e.Mono > t0 && e.Kind == eventlog.KindState && e.Role == roleLeader {
				s.Elections++
			}
		}
		b.res.Soaks = append(b.res.Soaks, s)
		for _, n := range s.Nodes {
			b.logf("soak %s: %s %s goroutines %d -> %d, live heap %.2f -> %.2f MB, heap in use %.2f -> %.2f MB", cond, n.Name, n.Role, n.GoroutinesStart, n.GoroutinesEnd, n.HeapLiveStartMB, n.HeapLiveEndMB, n.HeapInuseStartMB, n.HeapInuseEndMB)
		}
	}
	return nil
}

// profiles saves a CPU profile of Profile's length, then heap and
// goroutine profiles, of node i.
func (b *bench) profiles(ctx context.Context, i int, role, cond string) ([]Profile, error) {
	name := b.c.nodes[i].name
	secs := int(max(b.o.Profile.Seconds(), 1))
	var out []Profile
	for _, p := range []struct{ kind, path string }{
		{"cpu", fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)},
		{"heap", "/debug/pprof/heap"},
		{"goroutine", "/debug/pprof/goroutine"},
	} {
		body, err := b.get(ctx, i, p.path, time.Duration(secs)*time.Second+15*time.Second)
		if err != nil {
			return out, err
		}
		file := filepath.Join("profiles", fmt.Sprintf("%s-%s-%s.%s.pprof", cond, role, name, p.kind))
		if err := os.WriteFile(filepath.Join(b.o.Dir, file), body, 0o644); err != nil {
			return out, err
		}
		out = append(out, Profile{File: file, Node: name, Role: role, Kind: p.kind, Condition: cond})
	}
	b.logf("profiles of %s (%s, %s) saved", name, role, cond)
	return out, nil
}
