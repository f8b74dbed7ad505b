//go:build linux

package chaos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/raftelect/raftelect/chaos/netns"
	"github.com/raftelect/raftelect/eventlog"
)

// Options are the parts of a run that are not the scenario.
type Options struct {
	// Binary is the raftelect executable to run as nodes. Required.
	Binary string
	// Dir receives configs, certificates, event logs, stderr of every
	// node, and the outputs (result.json, timeline.svg). Created if
	// missing; a temporary directory if empty.
	Dir string
	// Nodes overrides the scenario's cluster size when non-zero.
	Nodes int
	// HeartbeatInterval and ElectionTimeout: default 100ms and 1s, the
	// the test timings of docs/chaos.md (heartbeat 100 ms, election timeout 1 s).
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	// SyncSend starts the nodes with unsafe_sync_send: the reference
	// system's synchronous sends, for the repro.
	SyncSend bool
	// Progress receives a line per fault and per leadership change while
	// the run goes; nil prints nothing.
	Progress io.Writer
}

// Available reports whether runs can work here (root, ip, nft, netdev
// egress hook); its error says what is missing.
func Available() error { return netns.Available() }

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// Run runs one scenario on a fresh cluster and returns its result. An error
// means the run itself could not be carried out (no root, a node that did
// not start, no leader at all); a scenario that ran and broke an
// expectation returns a Result whose Pass is false.
func Run(ctx context.Context, s *Scenario, o Options) (*Result, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if o.Binary == "" {
		return nil, errors.New("chaos: Options.Binary: the raftelect executable is required")
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 100 * time.Millisecond
	}
	if o.ElectionTimeout == 0 {
		o.ElectionTimeout = time.Second
	}
	n := s.Nodes
	if o.Nodes > 0 {
		n = o.Nodes
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	nodeConfig, err := s.nodeConfigs(n)
	if err != nil {
		return nil, err
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "raftelect-chaos-"+s.Name+"-")
		if err != nil {
			return nil, err
		}
		o.Dir = d
	} else if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	bin, err := filepath.Abs(o.Binary)
	if err != nil {
		return nil, err
	}
	r := &runner{s: s, o: o, out: o.Progress}
	if r.out == nil {
		r.out = io.Discard
	}
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r.c, err = newCluster(setup, clusterConfig{
		nodes: n, binary: bin, dir: o.Dir,
		heartbeat: o.HeartbeatInterval, electionTimeout: o.ElectionTimeout,
		syncSend: o.SyncSend, proxy: s.usesProxy(), nodeConfig: nodeConfig,
	})
	if err != nil {
		return nil, err
	}
	defer r.c.Close()
	return r.run(ctx)
}

// runner carries one run.
type runner struct {
	s   *Scenario
	o   Options
	c   *cluster
	t   *tailer
	sp  *statusPoller
	out io.Writer

	t0 int64 // observation start (CLOCK_MONOTONIC ns)

	mu       sync.Mutex
	faults   []FaultWindow
	bindings map[string]string // role -> node name, first resolution wins
	errs     []error
	changes  []MembershipChange
	// changeDone[i] is closed when membership change i (an add or remove
	// fault) finished; prevChange[i] is the change before it, or -1.
	changeDone map[int]chan struct{}
	prevChange map[int]int
	// exits watches removed nodes until they stop by themselves.
	exits sync.WaitGroup
}

func (r *runner) logf(format string, args ...any) {
	at := ""
	if r.t0 != 0 {
		at = fmt.Sprintf("%+7.1fs ", time.Duration(eventlog.Now()-r.t0).Seconds())
	} else {
		at = "  setup  "
	}
	fmt.Fprintf(r.out, "[%s] %s%s\n", r.s.Name, at, fmt.Sprintf(format, args...))
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	c := r.c
	var files []string
	for _, p := range c.nodes {
		files = append(files, p.events)
	}
	r.t = newTailer(files)
	r.bindings = map[string]string{}
	var err error
	if r.sp, err = newStatusPoller(c); err != nil {
		return nil, err
	}
	defer r.sp.close()

	mode := ""
	if r.o.SyncSend {
		mode = ", unsafe synchronous sends"
	}
	if c.cfg.proxy {
		mode += ", peers through latency proxies"
	}
	r.logf("%d nodes in network namespaces, heartbeat %v, election timeout %v%s; files in %s",
		len(c.nodes), r.o.HeartbeatInterval, r.o.ElectionTimeout, mode, r.o.Dir)
	// The nodes started now are a brand-new cluster: bootstrap them, so the
	// run does not wait out the vote guard of nodes without state. Nodes
	// that start later join as new nodes do, guard and all.
	started, quiet := 0, time.Duration(0)
	for i, p := range c.nodes {
		if len(r.s.Start) > 0 && !slices.Contains(r.s.Start, p.name) {
			continue
		}
		if err := c.bootstrap(ctx, i); err != nil {
			return nil, err
		}
		if err := c.start(i); err != nil {
			return nil, err
		}
		started++
		quiet = max(quiet, 2*c.electionTimeout(i))
	}
	// Settle: every started node alive in one term with one leader (or
	// just alive, with settle: alive), for two of their longest election
	// timeouts in a row, so the run starts from a quiet cluster.
	settleBy := time.Now().Add(30*time.Second + quiet)
	var quietSince time.Time
	for {
		r.t.poll()
		settled := r.t.agreed(started)
		if r.s.Settle == SettleAlive {
			settled = r.t.alive(started)
		}
		if settled {
			if quietSince.IsZero() {
				quietSince = time.Now()
			}
			if time.Since(quietSince) >= quiet {
				break
			}
		} else {
			quietSince = time.Time{}
		}
		for i, p := range c.nodes {
			if e := c.running(i); e != nil && e.Exited() {
				return nil, fmt.Errorf("chaos: %s exited before the cluster settled; its stderr:\n%s", p.name, c.stderrTail(i, 10))
			}
		}
		if time.Now().After(settleBy) {
			return nil, fmt.Errorf("chaos: the cluster did not settle (%s) within %v; stderr of %s:\n%s", cmp.Or(r.s.Settle, SettleLeader), 30*time.Second+quiet, c.nodes[0].name, c.stderrTail(0, 10))
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
	c.sampleAll()
	cpuAtStart := make([]time.Duration, len(c.nodes))
	logAtStart := make([]int64, len(c.nodes))
	for i := range c.nodes {
		cpuAtStart[i] = c.cpuTime(i)
		logAtStart[i] = c.pc.LogSize(i)
	}
	leader, term := r.t.leader()
	r.t0 = eventlog.Now()
	r.logf("start: leader %s, term %d; observing for %v", leader, term, r.s.Duration.D())

	obsCtx, stopObs := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.observe(obsCtx) })
	r.changeDone, r.prevChange = map[int]chan struct{}{}, map[int]int{}
	prev := -1
	for i, f := range r.s.Schedule {
		if f.Kind == FaultAdd || f.Kind == FaultRemove {
			r.changeDone[i], r.prevChange[i] = make(chan struct{}), prev
			prev = i
		}
	}
	var faultWG sync.WaitGroup
	for i, f := range r.s.Schedule {
		faultWG.Go(func() { r.inject(obsCtx, i, f) })
	}
	runErr := sleepCtx(ctx, r.s.Duration.D())
	end := eventlog.Now()
	stopObs()
	faultWG.Wait()
	r.exits.Wait()
	wg.Wait()
	r.checkFinalMembers(ctx)

	c.sampleAll()
	stats := c.nodeStats(r.t0, end, cpuAtStart)
	for i := range stats {
		stats[i].LogBytes, stats[i].LogLines = c.pc.LogSince(i, logAtStart[i])
	}
	r.sp.mu.Lock()
	for i := range stats {
		stats[i].MaxQueueDepth, stats[i].Drops = r.sp.maxQueue[i], r.sp.drops[i]
	}
	r.sp.mu.Unlock()
	_ = c.nw.HealAll()
	r.t.poll()
	if runErr != nil {
		_ = c.killAll()
		return nil, runErr
	}

	res := analyse(r.s, r.t.events(), r.t0, end, r.faults, r.bindings, stats)
	r.mu.Lock()
	res.measureChanges(r.s, r.changes)
	r.mu.Unlock()
	res.Dir, res.SyncSend, res.Heartbeat, res.ElectionTimeout = r.o.Dir, r.o.SyncSend, Millis(r.o.HeartbeatInterval), Millis(r.o.ElectionTimeout)
	for i, p := range c.nodes {
		if i < len(c.cfg.nodeConfig) {
			if d := c.cfg.nodeConfig[i].String(); d != "" {
				res.Config = append(res.Config, p.name+": "+d)
			}
		}
	}
	if !res.Pass {
		// A failed run is worth its nodes' goroutine stacks: SIGQUIT makes
		// the Go runtime write them to stderr (nN.stderr.log) and exit.
		c.dumpStacks(2 * time.Second)
	}
	killErr := c.killAll()
	r.mu.Lock()
	for _, e := range r.errs {
		res.Errors = append(res.Errors, e.Error())
	}
	r.mu.Unlock()
	if killErr != nil {
		res.Errors = append(res.Errors, killErr.Error())
	}
	res.Pass = res.Pass && len(res.Errors) == 0
	if err := res.WriteFiles(r.o.Dir); err != nil {
		return res, err
	}
	r.logf("done: %s", res.OneLine())
	return res, nil
}

// observe tails the event logs, prints leadership changes, and samples
// Status, CPU and RSS until ctx ends.
func (r *runner) observe(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	prevRole := map[string]string{}
	for n, v := range r.t.nodes {
		prevRole[n] = v.role
	}
	lastStatus, lastRes, lastSummary := time.Time{}, time.Time{}, time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, e := range r.t.poll() {
			if e.Mono < r.t0 {
				continue
			}
			switch e.Kind {
			case eventlog.KindState:
				was := prevRole[e.Node]
				prevRole[e.Node] = e.Role
				switch {
				case e.Role == was:
				case e.Role == roleLeader:
					r.logf("ELECTED %s leads term %d", e.Node, e.Term)
				case was == roleLeader:
					r.logf("STEP-DOWN %s is now %s (term %d)", e.Node, e.Role, e.Term)
				case e.Role == "pre-candidate" || e.Role == "candidate":
					r.logf("%s campaigns: %s in term %d", e.Node, e.Role, e.Term)
				}
			case eventlog.KindCrash, eventlog.KindStop:
				if prevRole[e.Node] == roleLeader {
					r.logf("STEP-DOWN %s (leader) %s", e.Node, e.Kind)
				}
				prevRole[e.Node] = ""
			case eventlog.KindStart:
				r.logf("%s started (term %d)", e.Node, e.Term)
				prevRole[e.Node] = ""
			}
		}
		now := time.Now()
		if now.Sub(lastStatus) >= 250*time.Millisecond {
			lastStatus = now
			r.sp.poll(ctx, 200*time.Millisecond)
		}
		if now.Sub(lastRes) >= 500*time.Millisecond {
			lastRes = now
			r.c.sampleAll()
		}
		if now.Sub(lastSummary) >= 10*time.Second {
			lastSummary = now
			l, t := r.t.leader()
			if l == "" {
				l = "none"
			}
			r.logf("leader %s, term %d", l, t)
		}
	}
}

// inject waits for fault f's start, applies it, and undoes it when it ends.
func (r *runner) inject(ctx context.Context, idx int, f Fault) {
	if sleepCtx(ctx, time.Until(r.monoToTime(r.t0+int64(f.At)))) != nil {
		return
	}
	if done, ok := r.changeDone[idx]; ok {
		defer close(done)
		if p := r.prevChange[idx]; p >= 0 {
			select {
			case <-r.changeDone[p]:
			case <-ctx.Done():
				return
			}
		}
	}
	var jointLeader string
	if f.Params.When == WhenJoint {
		i, err := r.awaitJointLeader(ctx, r.monoToTime(r.t0+int64(r.s.Duration)))
		if err != nil {
			if ctx.Err() == nil {
				r.fail(fmt.Errorf("fault %d (%s when %s): %w", idx, f.Kind, f.Params.When, err))
			}
			return
		}
		jointLeader = r.c.nodes[i].name
	}
	r.c.markRSS() // the first fault marks; later calls keep that mark
	w := FaultWindow{Index: idx, Kind: f.Kind, Start: eventlog.Now(), Roles: map[string]string{}}
	leader, _ := r.t.leader()
	if jointLeader != "" {
		leader = jointLeader
	}
	w.LeaderAtStart = leader
	all := r.roleMap(leader)
	resolve := func(role string) ([]int, error) {
		nodes, err := r.resolve(role, leader)
		if err == nil && role != "all" && len(nodes) == 1 {
			w.Roles[role] = r.c.nodes[nodes[0]].name
		}
		return nodes, err
	}
	undo, desc, err := r.apply(ctx, f, resolve)
	w.Desc = desc
	if err != nil {
		r.fail(fmt.Errorf("fault %d (%s): %w", idx, f.Kind, err))
		w.End = eventlog.Now()
		r.addFault(w, all)
		return
	}
	if jointLeader != "" {
		// The kill counts only if it landed before the leader left the
		// joint configuration: its log, final now, says.
		i := slices.IndexFunc(r.c.nodes, func(p *proc) bool { return p.name == jointLeader })
		left, err := leftJoint(r.c, i)
		switch {
		case err != nil:
			r.fail(fmt.Errorf("fault %d: %s: %w", idx, jointLeader, err))
		case left:
			r.fail(fmt.Errorf("fault %d: the kill missed the joint configuration: %s had left it before it died", idx, jointLeader))
		default:
			desc += ", in the joint configuration"
		}
		w.Desc = desc
	}
	r.logf("FAULT %d on: %s", idx, desc)
	if f.Kind == FaultRestart || f.Kind == FaultStart || f.Kind == FaultAdd || f.Kind == FaultRemove {
		undo = nil // done at once; the change stays
	} else if f.Kind != FaultKill && f.Kind != FaultTerm {
		// A network fault or SIGSTOP lasts its duration, or to the end.
		d := f.Duration.D()
		if d == 0 {
			d = r.s.Duration.D() - f.At.D()
		}
		_ = sleepCtx(ctx, time.Until(r.monoToTime(w.Start+int64(d))))
	} else {
		_ = sleepCtx(ctx, f.Params.RestartAfter.D())
		if f.Params.RestartAfter == 0 {
			undo = nil // stays down
		}
	}
	w.End = eventlog.Now()
	if f.Kind == FaultUDPDrop {
		// What the drop met, read before undo removes its counters: a
		// drop that met nothing would prove nothing.
		w.Desc += "; UDP packets dropped: " + r.udpDropped()
	}
	if undo != nil {
		if err := undo(); err != nil {
			r.fail(fmt.Errorf("fault %d (%s) undo: %w", idx, f.Kind, err))
		}
		r.logf("FAULT %d off: %s", idx, desc)
	}
	r.addFault(w, all)
}

// udpDropped says how many UDP packets each node's DropUDP dropped.
func (r *runner) udpDropped() string {
	var parts []string
	for i, p := range r.c.nodes {
		n, err := r.c.nw.UDPDropped(i)
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s unknown (%v)", p.name, err))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d", p.name, n))
	}
	return strings.Join(parts, ", ")
}

func (r *runner) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
	r.logf("ERROR %v", err)
}

// roleMap names every role while leader leads.
func (r *runner) roleMap(leader string) map[string]string {
	m := map[string]string{}
	if leader == "" {
		return m
	}
	m[roleLeader] = leader
	k := 0
	for _, p := range r.c.nodes {
		if p.name != leader {
			k++
			m[fmt.Sprintf("follower-%d", k)] = p.name
		}
	}
	return m
}

// addFault records a fault that ended; the roles at its start bind the
// roles that expectations name, unless an earlier fault bound them.
func (r *runner) addFault(w FaultWindow, roles map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for role, name := range roles {
		if _, ok := r.bindings[role]; !ok {
			r.bindings[role] = name
		}
	}
	r.faults = append(r.faults, w)
	slices.SortFunc(r.faults, func(a, b FaultWindow) int { return a.Index - b.Index })
}

// resolve turns a role into node indexes: "leader", "follower-K" (the
// K-th non-leader in name order), a node name, or "all".
func (r *runner) resolve(role, leader string) ([]int, error) {
	switch {
	case role == "all":
		var all []int
		for i := range r.c.nodes {
			all = append(all, i)
		}
		return all, nil
	case role == roleLeader:
		for i, p := range r.c.nodes {
			if p.name == leader {
				return []int{i}, nil
			}
		}
		return nil, errors.New("no leader to target right now")
	case strings.HasPrefix(role, "follower-"):
		var k int
		if _, err := fmt.Sscanf(role, "follower-%d", &k); err != nil || k < 1 {
			return nil, fmt.Errorf("role %q: want follower-1, follower-2, ...", role)
		}
		for i, p := range r.c.nodes {
			if p.name == leader {
				continue
			}
			if k--; k == 0 {
				return []int{i}, nil
			}
		}
		return nil, fmt.Errorf("role %q: not that many followers", role)
	}
	for i, p := range r.c.nodes {
		if p.name == role {
			return []int{i}, nil
		}
	}
	return nil, fmt.Errorf("target %q is neither a role (leader, follower-N, all) nor a node name", role)
}

// apply injects f and returns how to undo it and a description.
func (r *runner) apply(ctx context.Context, f Fault, resolve func(string) ([]int, error)) (undo func() error, desc string, err error) {
	c := r.c
	name := func(i int) string { return c.nodes[i].name }
	names := func(is []int) string {
		var s []string
		for _, i := range is {
			s = append(s, name(i))
		}
		return strings.Join(s, ",")
	}
	pair := func() ([]int, []int, error) {
		from, err := resolve(defaultAll(f.From))
		if err != nil {
			return nil, nil, err
		}
		to, err := resolve(defaultAll(f.To))
		return from, to, err
	}
	// onTarget applies fn to each node the target names, stopping at the
	// first error.
	onTarget := func(fn func(int) error) ([]int, error) {
		t, err := resolve(f.Target)
		if err != nil {
			return nil, err
		}
		for _, i := range t {
			if err := fn(i); err != nil {
				return nil, err
			}
		}
		return t, nil
	}
	// undoOn undoes with fn on every node, whatever fails.
	undoOn := func(nodes []int, fn func(int) error) func() error {
		return func() error {
			var errs []error
			for _, i := range nodes {
				errs = append(errs, fn(i))
			}
			return errors.Join(errs...)
		}
	}
	healAll := func(nodes []int) func() error { return undoOn(nodes, c.nw.Heal) }
	switch f.Kind {
	case FaultDrop:
		from, to, err := pair()
		if err != nil {
			return nil, "", err
		}
		for _, a := range from {
			for _, b := range to {
				if a != b {
					if err := c.nw.DropBetween(a, b); err != nil {
						return nil, "", err
					}
				}
			}
		}
		return healAll(from), fmt.Sprintf("silently drop %s -> %s", names(from), names(to)), nil
	case FaultIsolate:
		t, err := onTarget(c.nw.Isolate)
		if err != nil {
			return nil, "", err
		}
		return healAll(t), fmt.Sprintf("isolate %s (%s) both ways", names(t), f.Target), nil
	case FaultLoss:
		from, to, err := pair()
		if err != nil {
			return nil, "", err
		}
		// The rules live at the senders (on their way out) or at the
		// receivers (as packets arrive), each naming the other ends.
		lose, at, others, where := c.nw.Loss, from, to, ""
		if f.Params.Arriving {
			lose, at, others, where = c.nw.LossArriving, to, from, " as it arrives"
		}
		for _, a := range at {
			peers := slices.DeleteFunc(slices.Clone(others), func(b int) bool { return b == a })
			if len(peers) == 0 {
				continue
			}
			if err := lose(a, f.Params.Percent, peers...); err != nil {
				return nil, "", err
			}
		}
		return healAll(at), fmt.Sprintf("%d%% random loss %s -> %s%s", f.Params.Percent, names(from), names(to), where), nil
	case FaultFlap:
		var on func() error
		var nodes []int
		if f.Target != "" {
			t, err := resolve(f.Target)
			if err != nil {
				return nil, "", err
			}
			nodes, desc = t, fmt.Sprintf("flap isolation of %s every %v", names(t), f.Params.Period.D())
			on = func() error {
				for _, i := range t {
					if err := c.nw.Isolate(i); err != nil {
						return err
					}
				}
				return nil
			}
		} else {
			from, to, err := pair()
			if err != nil {
				return nil, "", err
			}
			nodes, desc = from, fmt.Sprintf("flap drop %s -> %s every %v", names(from), names(to), f.Params.Period.D())
			on = func() error {
				for _, a := range from {
					for _, b := range to {
						if a != b {
							if err := c.nw.DropBetween(a, b); err != nil {
								return err
							}
						}
					}
				}
				return nil
			}
		}
		d := f.Duration.D()
		if d == 0 {
			d = r.s.Duration.D() - f.At.D()
		}
		fctx, cancel := context.WithTimeout(ctx, d)
		done := make(chan error, 1)
		go func() { done <- c.nw.Flap(fctx, on, healAll(nodes), f.Params.Period.D()) }()
		return func() error { cancel(); return <-done }, desc, nil
	case FaultKill, FaultTerm:
		t, err := resolve(f.Target)
		if err != nil {
			return nil, "", err
		}
		i := t[0]
		if f.Kind == FaultKill {
			err, desc = c.kill(i), fmt.Sprintf("kill -9 %s (%s)", name(i), f.Target)
		} else {
			err, desc = c.terminate(i, 10*time.Second), fmt.Sprintf("SIGTERM %s (%s)", name(i), f.Target)
		}
		if f.Params.RestartAfter > 0 {
			desc += fmt.Sprintf(", restart after %v", f.Params.RestartAfter.D())
		}
		return func() error { return c.start(i) }, desc, err
	case FaultReject:
		how := netns.RejectKind(cmp.Or(f.Params.Reject, string(netns.RejectTCPReset)))
		t, err := onTarget(func(i int) error { return c.nw.Reject(i, peerPort, how) })
		if err != nil {
			return nil, "", err
		}
		return healAll(t), fmt.Sprintf("%s's peer port %d answers with %s (%s)", names(t), peerPort, how, f.Target), nil
	case FaultUDPDrop:
		t, err := onTarget(c.nw.DropUDP)
		if err != nil {
			return nil, "", err
		}
		return undoOn(t, c.nw.AllowUDP), fmt.Sprintf("drop every UDP packet in and out of %s (%s), TCP passes", names(t), f.Target), nil
	case FaultRestart, FaultStart:
		t, err := resolve(f.Target)
		if err != nil {
			return nil, "", err
		}
		i := t[0]
		if f.Kind == FaultRestart {
			desc = fmt.Sprintf("restart %s (%s)", name(i), f.Target)
			if err := c.terminate(i, 10*time.Second); err != nil {
				return nil, desc, err
			}
		} else {
			desc = fmt.Sprintf("start %s", name(i))
			if c.running(i) != nil {
				return nil, desc, fmt.Errorf("%s is already running", name(i))
			}
		}
		if f.Config != nil {
			if err := r.checkNodeConfig(name(i), *f.Config); err != nil {
				return nil, desc, err
			}
			if err := c.reconfigure(i, *f.Config); err != nil {
				return nil, desc, err
			}
			desc += " with " + f.Config.String()
		}
		return nil, desc, c.start(i)
	case FaultAdd, FaultRemove:
		t, err := resolve(f.Target)
		if err != nil {
			return nil, "", err
		}
		if f.Config != nil {
			if err := r.checkNodeConfig(name(t[0]), *f.Config); err != nil {
				return nil, "", err
			}
		}
		// replaces may name a role an earlier fault bound (the follower it
		// killed): that node, not whoever has the role now.
		replaces := f.Params.Replaces
		r.mu.Lock()
		bound, ok := r.bindings[replaces]
		r.mu.Unlock()
		if ok {
			replaces = bound
		} else if replaces != "" {
			is, err := resolve(replaces)
			if err != nil {
				return nil, "", err
			}
			replaces = name(is[0])
		}
		desc, err := r.changeMembers(ctx, f.Kind, t[0], replaces, f.Config)
		return nil, desc, err
	case FaultStop:
		t, err := resolve(f.Target)
		if err != nil {
			return nil, "", err
		}
		i := t[0]
		if err := c.signalStop(i, true); err != nil {
			return nil, "", err
		}
		return func() error { return c.signalStop(i, false) }, fmt.Sprintf("SIGSTOP %s (%s)", name(i), f.Target), nil
	case FaultLatency:
		if c.links == nil {
			return nil, "", errors.New("latency needs the proxies (proxy: true)")
		}
		from, to, err := pair()
		if err != nil {
			return nil, "", err
		}
		d := linkDelay{latency: f.Params.Latency.D(), jitter: f.Params.Jitter.D()}
		for _, a := range from {
			for _, b := range to {
				if a != b {
					c.links.set(a, b, d)
				}
			}
		}
		return func() error {
				for _, a := range from {
					for _, b := range to {
						if a != b {
							c.links.set(a, b, linkDelay{})
						}
					}
				}
				return nil
			}, fmt.Sprintf("latency %v ± %v %s -> %s", d.latency, d.jitter, names(from), names(to)),
			nil
	}
	return nil, "", fmt.Errorf("unknown fault %q", f.Kind)
}

func defaultAll(role string) string {
	if role == "" {
		return "all"
	}
	return role
}

// checkNodeConfig reports a peer list that names a node the cluster does
// not have, or leaves out the node itself.
func (r *runner) checkNodeConfig(node string, o NodeConfig) error {
	return checkNodeConfig(node, o, len(r.c.nodes))
}

// monoToTime converts a CLOCK_MONOTONIC reading to a time.Time for timers.
func (r *runner) monoToTime(mono int64) time.Time {
	return time.Now().Add(time.Duration(mono - eventlog.Now()))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
