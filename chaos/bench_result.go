package chaos

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Bench output files, in the bench directory.
const (
	BenchResultFile  = "bench.json"
	BenchSummaryFile = "bench.txt"
	BenchPlotFile    = "failover.svg"
)

// Dist is a set of timings and its order statistics.
type Dist struct {
	N       int      `json:"n"`
	Min     Millis   `json:"min_ms"`
	P50     Millis   `json:"p50_ms"`
	P90     Millis   `json:"p90_ms"`
	Max     Millis   `json:"max_ms"`
	Samples []Millis `json:"samples_ms"`
}

// newDist summarises samples; p50 and p90 are nearest-rank percentiles.
func newDist(samples []time.Duration) Dist {
	d := Dist{N: len(samples), Samples: []Millis{}}
	if len(samples) == 0 {
		return d
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := func(p float64) time.Duration { return s[int(math.Ceil(p*float64(len(s))))-1] }
	d.Min, d.P50, d.P90, d.Max = Millis(s[0]), Millis(rank(0.5)), Millis(rank(0.9)), Millis(s[len(s)-1])
	for _, v := range samples {
		d.Samples = append(d.Samples, Millis(v))
	}
	return d
}

func (d Dist) String() string {
	if d.N == 0 {
		return "-"
	}
	if d.N == 1 {
		return fmt.Sprintf("%v (1 run)", d.P50)
	}
	return fmt.Sprintf("p50 %v, p90 %v, max %v (n=%d)", d.P50, d.P90, d.Max, d.N)
}

// IdleNode is one node's cost over the idle window.
type IdleNode struct {
	Name string `json:"name"`
	Role string `json:"role"` // leader or follower, at the window's start
	// CPUMsPerSec is CPU time (user+system) per second of wall time;
	// CPUPercent is the same in percent of one core.
	CPUMsPerSec float64 `json:"cpu_ms_per_s"`
	CPUPercent  float64 `json:"cpu_percent"`
	// OnCPUMsPerSec is the same from the scheduler's nanosecond counts
	// (every thread's schedstat), and WakeupsPerSec how many times per
	// second one of the node's threads was put on a CPU.
	OnCPUMsPerSec float64 `json:"on_cpu_ms_per_s"`
	WakeupsPerSec float64 `json:"wakeups_per_s"`
	RSSMB         float64 `json:"rss_mb"` // mean of the samples
	RSSMaxMB      float64 `json:"rss_max_mb"`
	// RSS counts the binary's file pages, which every node on a host
	// shares; AnonMB is the node's own memory (RssAnon: heap, stacks,
	// runtime) and PssMB its proportional share of everything, both at
	// the window's end.
	AnonMB float64 `json:"anon_mb"`
	PssMB  float64 `json:"pss_mb"`
	// TxBytesPerSec and RxBytesPerSec: the node's eth0 counters (all its
	// peer traffic, TCP/IP and TLS included) over the window.
	TxBytesPerSec float64 `json:"tx_bytes_per_s"`
	RxBytesPerSec float64 `json:"rx_bytes_per_s"`
}

// Idle is the cost of a healthy, quiet cluster.
type Idle struct {
	Window Millis `json:"window_ms"`
	// LoadStart and LoadEnd are the host's 1-minute load average at the
	// window's start and end (-1: unknown): other work on the host
	// changes the CPU figures.
	LoadStart float64    `json:"load_start"`
	LoadEnd   float64    `json:"load_end"`
	Nodes     []IdleNode `json:"nodes"`
}

// SoakNode is one node's runtime figures at the start and end of a soak.
type SoakNode struct {
	Name             string  `json:"name"`
	Role             string  `json:"role"`
	GoroutinesStart  int     `json:"goroutines_start"`
	GoroutinesEnd    int     `json:"goroutines_end"`
	HeapInuseStartMB float64 `json:"heap_inuse_start_mb"`
	HeapInuseEndMB   float64 `json:"heap_inuse_end_mb"`
	// HeapLive*: bytes of live objects after a forced collection
	// (heap_alloc then): what a leak would grow. Heap in use also counts
	// free slots in partly used spans.
	HeapLiveStartMB float64 `json:"heap_live_start_mb"`
	HeapLiveEndMB   float64 `json:"heap_live_end_mb"`
	RSSStartMB      float64 `json:"rss_start_mb"`
	RSSEndMB        float64 `json:"rss_end_mb"`
}

// Soak is a long run in one condition: idle, or with one follower hung.
type Soak struct {
	Condition string     `json:"condition"` // idle | hung-peer
	Hung      string     `json:"hung,omitempty"`
	Duration  Millis     `json:"duration_ms"`
	Elections int        `json:"elections"` // terms won during the soak
	Nodes     []SoakNode `json:"nodes"`
}

// Profile is one pprof profile saved in the bench directory.
type Profile struct {
	File      string `json:"file"`
	Node      string `json:"node"`
	Role      string `json:"role"`
	Kind      string `json:"kind"` // cpu | heap | goroutine
	Condition string `json:"condition"`
}

// Rolling is a rolling restart of every node, one after another.
type Rolling struct {
	Restarts   int    `json:"restarts"`
	Window     Millis `json:"window_ms"`
	Leaderless Millis `json:"leaderless_ms"` // no node held the lease
	Elections  int    `json:"elections"`
}

// Target is one of the project's targets (docs/benchmarks.md) against this run.
type Target struct {
	Figure    string `json:"figure"`
	Measured  string `json:"measured"`
	Target    string `json:"target"`
	Reference string `json:"reference"`
	Holds     bool   `json:"holds"`
}

// BenchResult is everything `raftelect bench` measured.
type BenchResult struct {
	Nodes           int    `json:"nodes"`
	Heartbeat       Millis `json:"heartbeat_ms"`
	ElectionTimeout Millis `json:"election_timeout_ms"`
	CPUs            int    `json:"cpus"`
	Kernel          string `json:"kernel"`
	GoVersion       string `json:"go_version"`
	Dir             string `json:"dir"`
	Took            Millis `json:"took_ms"`
	// FastFailover: the nodes ran with fast_failover_on_refusal.
	FastFailover bool `json:"fast_failover_on_refusal"`

	// ColdStart: all nodes started at once on empty, bootstrapped data
	// directories, from the first exec to the first lease.
	ColdStart Dist `json:"cold_start"`
	// FailoverKill: kill -9 of the leader to another node's lease.
	FailoverKill Dist `json:"failover_kill"`
	// FailoverIsolate: the leader's namespace cut off both ways (silence)
	// to another node's lease; IsolateOldLeaseEnd: to the end of the old
	// leader's lease; IsolateOverlap: the longest time both held one.
	FailoverIsolate    Dist   `json:"failover_isolate"`
	IsolateOldLeaseEnd Dist   `json:"isolate_old_lease_end"`
	IsolateOverlap     Millis `json:"isolate_max_overlap_ms"`
	// FailoverTerm: SIGTERM of the leader to another node's lease.
	FailoverTerm Dist    `json:"failover_term"`
	Rolling      Rolling `json:"rolling_restart"`
	// Rejoin: a killed follower started again, from its exec to a state
	// event naming the leader; RejoinFromLoad from its start event (state
	// loaded, process ready) instead.
	Rejoin         Dist `json:"rejoin"`
	RejoinFromLoad Dist `json:"rejoin_from_load"`
	// AsymHeal: a silent drop leader -> one follower healed, to every
	// node agreeing on leader and term (and staying so); AsymDrop: how
	// long each drop lasted; AsymDropArriving: dropped as they arrived at
	// the follower, not on the leader's way out.
	AsymHeal         Dist      `json:"asym_heal"`
	AsymDrop         Millis    `json:"asym_drop_ms,omitempty"`
	AsymDropArriving bool      `json:"asym_drop_arriving,omitempty"`
	Idle             Idle      `json:"idle"`
	Soaks            []Soak    `json:"soaks"`
	Profiles         []Profile `json:"profiles"`
	Targets          []Target  `json:"targets"`
	// Violations are the checker's rules broken in the event logs of the
	// fault phases; Errors are repetitions that could not be measured.
	Violations []string `json:"violations"`
	Errors     []string `json:"errors"`
}

// judge fills Targets from the project's targets (docs/benchmarks.md).
func (r *BenchResult) judge() {
	et, hb := time.Duration(r.ElectionTimeout), time.Duration(r.Heartbeat)
	r.Targets = nil
	add := func(fig, measured, target, ref string, holds bool) {
		r.Targets = append(r.Targets, Target{fig, measured, target, ref, holds})
	}
	d := func(m Millis) time.Duration { return time.Duration(m) }
	// A leader that is cut off (or killed, without the refusal fast path)
	// is replaced after the followers' election timeout: p50 1.2 x, max
	// 1.6 x it (issue 15's 1.2 s and 1.6 s at 1 s).
	silentP50, silentMax := et*12/10, et*16/10
	if r.ColdStart.N > 0 {
		lim := et * 13 / 10
		add("new cluster (bootstrapped): start to first lease", r.ColdStart.String(), fmt.Sprintf("p50 <= %v", lim),
			"p50 2.4 s, max 3.4 s without a bootstrap", d(r.ColdStart.P50) <= lim)
	}
	if r.FailoverKill.N > 0 {
		if r.FastFailover {
			lim := et / 5
			add("failover, leader process killed (fast_failover_on_refusal)", r.FailoverKill.String(), fmt.Sprintf("p50 <= %v", lim),
				"p50 1.1-1.3 s, max 1.6-1.9 s; hashicorp p50 2.2 s", d(r.FailoverKill.P50) <= lim)
		} else {
			add("failover, leader process killed (no refusal fast path: an election timeout)", r.FailoverKill.String(),
				fmt.Sprintf("p50 <= %v, max <= %v", silentP50, silentMax),
				"p50 1.1-1.3 s, max 1.6-1.9 s; hashicorp p50 2.2 s", d(r.FailoverKill.P50) <= silentP50 && d(r.FailoverKill.Max) <= silentMax)
		}
	}
	if r.FailoverIsolate.N > 0 {
		add("failover, leader host silently gone", r.FailoverIsolate.String(), fmt.Sprintf("p50 <= %v, max <= %v", silentP50, silentMax),
			"same as a crash", d(r.FailoverIsolate.P50) <= silentP50 && d(r.FailoverIsolate.Max) <= silentMax)
	}
	if r.FailoverTerm.N > 0 {
		add("failover, leader stopped gracefully", r.FailoverTerm.String(), fmt.Sprintf("<= %v (3 heartbeats)", 3*hb),
			"same as a crash", d(r.FailoverTerm.Max) <= 3*hb)
	}
	if r.IsolateOldLeaseEnd.N > 0 {
		add("old leader stops acting after it is cut off", r.IsolateOldLeaseEnd.String(), fmt.Sprintf("<= %v", et),
			"p50 1.4-1.5 s, max 1.8 s; hashicorp 0.49 s", d(r.IsolateOldLeaseEnd.Max) <= et)
		add("overlap of two acting leaders (leader cut off)", fmt.Sprintf("max %v over %d", r.IsolateOverlap, r.FailoverIsolate.N), "0 ms in every run",
			"22-756 ms in 4-5 runs of 5", r.IsolateOverlap == 0)
	}
	if r.Rolling.Restarts > 0 {
		// Each hand-over (an election in the window) may cost up to the
		// graceful-stop target.
		lim := 3 * hb * time.Duration(max(r.Rolling.Elections, 1))
		add("leaderless time over a rolling restart", fmt.Sprintf("%v over %d restarts, %d hand-overs", r.Rolling.Leaderless, r.Rolling.Restarts, r.Rolling.Elections),
			fmt.Sprintf("<= %v (3 heartbeats per hand-over)", lim), "an election timeout per leader restart",
			d(r.Rolling.Leaderless) <= lim)
	}
	if r.Rejoin.N > 0 {
		add("a restarted node rejoins", r.Rejoin.String(), "<= 100ms", "~0.7 s; hashicorp 26-60 ms", d(r.Rejoin.P50) <= 100*time.Millisecond)
	}
	if r.AsymHeal.N > 0 {
		add("agreement again after an asymmetric drop heals", r.AsymHeal.String(), "<= 500ms", "0.3-4.4 s; hashicorp 0.6-0.7 s", d(r.AsymHeal.Max) <= 500*time.Millisecond)
	}
	if len(r.Idle.Nodes) > 0 {
		// Issue 15's targets: leader 0.3 %, followers 0.2 % of a core;
		// 12 MB resident; 250 bytes per heartbeat round trip on a link.
		var parts []string
		cpuOK, rssOK := true, true
		var rss []string
		var hbBytes []float64
		for _, n := range r.Idle.Nodes {
			cpu := n.IdleCPUPercent()
			parts = append(parts, fmt.Sprintf("%s %s %.2f%%", n.Name, n.Role, cpu))
			rss = append(rss, fmt.Sprintf("%s %.1f MB (anon %.1f, pss %.1f)", n.Name, n.RSSMaxMB, n.AnonMB, n.PssMB))
			lim := 0.2
			if n.Role == "leader" {
				lim = 0.3
			} else {
				hbBytes = append(hbBytes, n.BytesPerHeartbeat(hb))
			}
			cpuOK = cpuOK && cpu <= lim
			rssOK = rssOK && n.RSSMaxMB <= 12
		}
		add("idle CPU per node", strings.Join(parts, ", "), "leader <= 0.3 %, followers <= 0.2 %", "1.3-2.0 %; hashicorp leader 1.5 %, followers 0.4 %", cpuOK)
		add("idle RSS per node (max)", strings.Join(rss, ", "), "<= 12 MB", "20-33 MB; hashicorp 9-12 MB", rssOK)
		if len(hbBytes) > 0 {
			var s []string
			bytesOK := true
			for _, v := range hbBytes {
				s = append(s, fmt.Sprintf("%.0f B", v))
				bytesOK = bytesOK && v <= 250
			}
			add("bytes per heartbeat round trip on a link (a follower's eth0 in+out per heartbeat)", strings.Join(s, ", "), "<= 250 B", "~770 B (unary calls)", bytesOK)
		}
	}
	for _, s := range r.Soaks {
		var parts []string
		ok := true
		for _, n := range s.Nodes {
			parts = append(parts, fmt.Sprintf("%s %d->%d goroutines, live heap %.2f->%.2f MB", n.Name, n.GoroutinesStart, n.GoroutinesEnd, n.HeapLiveStartMB, n.HeapLiveEndMB))
			// Goroutines must not rise at all; the live heap may move by
			// what is in flight when it is read (buffers, a message).
			ok = ok && n.GoroutinesEnd <= n.GoroutinesStart && n.HeapLiveEndMB <= n.HeapLiveStartMB+0.25
		}
		add(fmt.Sprintf("no growth over %v %s", s.Duration, s.Condition), strings.Join(parts, "; "), "no growth in goroutines or heap", "-", ok)
	}
}

// IdleCPUPercent is the node's CPU in percent of one core: from the
// scheduler's nanosecond counts where the host has them, else from
// utime+stime, which count in 10 ms ticks and are coarse over short windows.
func (n IdleNode) IdleCPUPercent() float64 {
	if n.OnCPUMsPerSec > 0 {
		return n.OnCPUMsPerSec / 10
	}
	return n.CPUPercent
}

// BytesPerHeartbeat is a follower's traffic, both directions, per
// heartbeat interval: in an idle cluster a follower talks to the leader
// only, so this is one link's heartbeat round trip with its TCP, TLS,
// HTTP/2 and gRPC framing (and whatever else the link carries, such as
// keepalives, spread over it).
func (n IdleNode) BytesPerHeartbeat(hb time.Duration) float64 {
	return (n.TxBytesPerSec + n.RxBytesPerSec) * hb.Seconds()
}

// Table is the measured figures against the targets, for the screen.
func (r *BenchResult) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "== raftelect bench: %d nodes, heartbeat %v, election timeout %v, %d CPUs, %s, %s; took %v\n",
		r.Nodes, r.Heartbeat, r.ElectionTimeout, r.CPUs, r.Kernel, r.GoVersion, time.Duration(r.Took).Round(time.Second))
	row := func(k, v string) { fmt.Fprintf(&b, "   %-44s %s\n", k, v) }
	row("cold start (bootstrapped) to a lease", r.ColdStart.String())
	kill := "failover, kill -9 of the leader"
	if r.FastFailover {
		kill += " (fast)"
	}
	row(kill, r.FailoverKill.String())
	row("failover, leader isolated (silence)", r.FailoverIsolate.String())
	row("  its lease ended after", r.IsolateOldLeaseEnd.String())
	if r.FailoverIsolate.N > 0 {
		row("  max lease overlap", r.IsolateOverlap.String())
	}
	row("failover, SIGTERM of the leader", r.FailoverTerm.String())
	rolling := "-"
	if r.Rolling.Restarts > 0 {
		rolling = fmt.Sprintf("%v over %d restarts in %v, %d elections", r.Rolling.Leaderless, r.Rolling.Restarts, r.Rolling.Window, r.Rolling.Elections)
	}
	row("rolling restart, leaderless time", rolling)
	row("restarted follower knows the leader (exec)", r.Rejoin.String())
	row("  (from its start event)", r.RejoinFromLoad.String())
	heal := "agreement after an asymmetric drop heals"
	if r.AsymHeal.N > 0 {
		heal = fmt.Sprintf("agreement after a %v asymmetric drop heals", r.AsymDrop)
		if r.AsymDropArriving {
			heal += " (dropped arriving)"
		}
	}
	row(heal, r.AsymHeal.String())
	if len(r.Idle.Nodes) > 0 {
		fmt.Fprintf(&b, "   idle over %v (load average %.2f at the start, %.2f at the end):\n", r.Idle.Window, r.Idle.LoadStart, r.Idle.LoadEnd)
		fmt.Fprintf(&b, "   %-4s %-8s %9s %6s %9s %9s %8s %8s %8s %8s %10s %10s\n", "node", "role", "cpu ms/s", "cpu%", "oncpu ms/s", "wakeups/s", "rss MB", "max MB", "anon MB", "pss MB", "tx B/s", "rx B/s")
		for _, n := range r.Idle.Nodes {
			fmt.Fprintf(&b, "   %-4s %-8s %9.2f %6.2f %10.3f %9.1f %8.1f %8.1f %8.1f %8.1f %10.0f %10.0f\n", n.Name, n.Role, n.CPUMsPerSec, n.CPUPercent, n.OnCPUMsPerSec, n.WakeupsPerSec, n.RSSMB, n.RSSMaxMB, n.AnonMB, n.PssMB, n.TxBytesPerSec, n.RxBytesPerSec)
		}
	}
	for _, s := range r.Soaks {
		hung := ""
		if s.Hung != "" {
			hung = ", " + s.Hung + " stopped"
		}
		fmt.Fprintf(&b, "   soak %s over %v%s, elections %d:\n", s.Condition, s.Duration, hung, s.Elections)
		for _, n := range s.Nodes {
			fmt.Fprintf(&b, "   %-4s %-8s goroutines %4d -> %4d   live heap %5.2f -> %5.2f MB   heap in use %5.2f -> %5.2f MB   rss %5.1f -> %5.1f MB\n",
				n.Name, n.Role, n.GoroutinesStart, n.GoroutinesEnd, n.HeapLiveStartMB, n.HeapLiveEndMB, n.HeapInuseStartMB, n.HeapInuseEndMB, n.RSSStartMB, n.RSSEndMB)
		}
	}
	b.WriteString("   targets (docs/benchmarks.md):\n")
	for _, t := range r.Targets {
		mark := "ok  "
		if !t.Holds {
			mark = "MISS"
		}
		fmt.Fprintf(&b, "   %s %s: %s (target %s)\n", mark, t.Figure, t.Measured, t.Target)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "   FAIL checker: %s\n", v)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "   error: %s\n", e)
	}
	if r.Dir != "" {
		fmt.Fprintf(&b, "   files: %s (%s, %s, %s, profiles/)\n", r.Dir, BenchResultFile, BenchSummaryFile, BenchPlotFile)
	}
	return b.String()
}

// WriteFiles writes bench.json, bench.txt and failover.svg into dir.
func (r *BenchResult) WriteFiles(dir string) error {
	return writeOutputs(dir, r, BenchResultFile, BenchSummaryFile, r.Table(), BenchPlotFile, r.FailoverSVG())
}

// FailoverSVG plots every failover sample, one row per kind, on a log time
// axis, with p50 and max marked and the target drawn as a red line.
func (r *BenchResult) FailoverSVG() string {
	et, hb := time.Duration(r.ElectionTimeout), time.Duration(r.Heartbeat)
	rows := []struct {
		name    string
		d       Dist
		targets []time.Duration
	}{
		{"kill -9", r.FailoverKill, []time.Duration{et / 5}},
		{"isolated", r.FailoverIsolate, []time.Duration{et * 135 / 100, 2 * et}},
		{"SIGTERM", r.FailoverTerm, []time.Duration{3 * hb}},
		{"cold start", r.ColdStart, nil},
		{"rejoin", r.Rejoin, []time.Duration{100 * time.Millisecond}},
		{"asym heal", r.AsymHeal, []time.Duration{500 * time.Millisecond}},
	}
	const (
		left, right, top = 100.0, 30.0, 50.0
		lane, width      = 50.0, 900.0
	)
	// Axis from 1 ms to the next power of ten above everything.
	hi := 1.0
	for _, row := range rows {
		for _, s := range row.d.Samples {
			hi = max(hi, float64(s)/1e6)
		}
		for _, t := range row.targets {
			hi = max(hi, float64(t)/1e6)
		}
	}
	decades := math.Ceil(math.Log10(hi))
	x := func(ms float64) float64 {
		return left + (width-left-right)*math.Log10(max(ms, 1))/decades
	}
	height := top + float64(len(rows))*lane + 60
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", left,
		html.EscapeString(fmt.Sprintf("raftelect bench: %d nodes, heartbeat %v, election timeout %v (log time axis)", r.Nodes, r.Heartbeat, r.ElectionTimeout)))
	for i, row := range rows {
		y := top + float64(i)*lane + lane/2
		fmt.Fprintf(&b, `<text x="10" y="%.1f">%s</text>`+"\n", y+4, html.EscapeString(row.name))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, width-right, y, y)
		for _, t := range row.targets {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#c73e1d" stroke-width="2"><title>target %v</title></line>`+"\n",
				x(float64(t)/1e6), x(float64(t)/1e6), y-lane/2+6, y+lane/2-6, t)
		}
		for k, s := range row.d.Samples {
			jitter := float64(k%5-2) * 4 // spread equal values vertically
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="#2e86ab" fill-opacity="0.6"><title>%v</title></circle>`+"\n",
				x(float64(s)/1e6), y+jitter, s)
		}
		if row.d.N > 0 {
			p50 := x(float64(row.d.P50) / 1e6)
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="black" stroke-width="2"><title>p50 %v</title></line>`+"\n", p50, p50, y-14, y+14, row.d.P50)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10">p50 %v, max %v</text>`+"\n", p50+4, y-14, row.d.P50, row.d.Max)
		}
	}
	axis := top + float64(len(rows))*lane
	fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#555"/>`+"\n", left, width-right, axis, axis)
	for d := 0.0; d <= decades; d++ {
		for _, m := range []float64{1, 2, 5} {
			ms := m * math.Pow(10, d)
			if ms > math.Pow(10, decades) {
				break
			}
			px := x(ms)
			label := fmt.Sprint(time.Duration(ms * 1e6))
			if m != 1 {
				label = ""
			}
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#555"/><text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n",
				px, px, axis, axis+5, px, axis+18, label)
		}
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" fill="#555">blue dot: one run; black line: p50; red line: target (docs/benchmarks.md)</text>`+"\n", left, axis+40)
	b.WriteString("</svg>\n")
	return b.String()
}

// progress writes a timestamped line.
func progress(w io.Writer, start time.Time, format string, args ...any) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "[bench %6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}
