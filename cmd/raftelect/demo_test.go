//go:build unix

package main

// Tests of `raftelect demo` against the built binary (see TestMain in
// e2e_test.go): driven without a terminal, it prints plain lines.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// demoRun is a running `raftelect demo` whose stdout is collected line by
// line.
type demoRun struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   strings.Builder
	done  chan struct{}
	code  int
}

func startDemo(t *testing.T, ctx context.Context, args ...string) *demoRun {
	t.Helper()
	d := &demoRun{done: make(chan struct{})}
	d.cmd = exec.CommandContext(ctx, binary, append([]string{"demo"}, args...)...)
	d.cmd.Stderr = os.Stderr
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if d.stdin, err = d.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.mu.Lock()
			d.out.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
		_ = d.cmd.Wait()
		d.code = d.cmd.ProcessState.ExitCode()
		close(d.done)
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("demo output:\n%s", d.output())
		}
	})
	return d
}

func (d *demoRun) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

func (d *demoRun) waitFor(t *testing.T, limit time.Duration, re *regexp.Regexp) []string {
	t.Helper()
	var m []string
	eventually(t, limit, "demo prints "+re.String(), func() error {
		if m = re.FindStringSubmatch(d.output()); m == nil {
			return errors.New("not yet")
		}
		return nil
	})
	return m
}

func (d *demoRun) wait(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(limit):
		t.Fatalf("demo did not exit within %v", limit)
	}
}

var (
	demoPidRe     = regexp.MustCompile(`pid (\d+)`)
	demoDirRe     = regexp.MustCompile(`(?m)^state, configs and node logs in (\S+) `)
	demoFailRe    = regexp.MustCompile(`failover (\S+): (n\d) holds the lease \(term (\d+)\), (n\d) was killed`)
	demoSummaryRe = regexp.MustCompile(`(?m)^summary: (\d+) failover\(s\) .*: min (\S+), median (\S+), max (\S+)$`)
)

// checkDemoCleanedUp: every node process the demo started is gone, and so
// is its temporary directory.
func checkDemoCleanedUp(t *testing.T, out string) {
	t.Helper()
	pids := map[int]bool{}
	for _, m := range demoPidRe.FindAllStringSubmatch(out, -1) {
		pid, _ := strconv.Atoi(m[1])
		pids[pid] = true
	}
	if len(pids) < 3 {
		t.Errorf("want at least 3 node pids in the output, got %v", pids)
	}
	for pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("node process %d still exists after the demo exited (kill -0: %v)", pid, err)
		}
	}
	m := demoDirRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatal("the demo did not name its temporary directory")
	}
	if _, err := os.Stat(m[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory %s left behind (stat: %v)", m[1], err)
	}
	if !strings.Contains(out, "removed "+m[1]+"\n") {
		t.Errorf("the demo did not report removing %s", m[1])
	}
}

// TestDemoFailsOverOnScheduleReportsTimeAndCleansUp is the CI form of the
// README's first command: non-interactive, one failover on a schedule.
func TestDemoFailsOverOnScheduleReportsTimeAndCleansUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := startDemo(t, ctx, "--failovers", "1", "--kill-every", "3s", "--duration", "90s")
	d.wait(t, 100*time.Second)
	out := d.output()
	t.Logf("demo output:\n%s", out)
	if d.code != 0 {
		t.Fatalf("demo exit code %d, want 0", d.code)
	}
	f := demoFailRe.FindStringSubmatch(out)
	if f == nil {
		t.Fatal("no failover line")
	}
	if took, err := time.ParseDuration(f[1]); err != nil || took <= 0 || took > 10*time.Second {
		t.Errorf("failover time %q: %v", f[1], err)
	}
	if f[2] == f[4] {
		t.Errorf("the killed node %s is reported as the new leader", f[4])
	}
	s := demoSummaryRe.FindStringSubmatch(out)
	if s == nil || s[1] != "1" || s[2] != f[1] || s[3] != f[1] || s[4] != f[1] {
		t.Errorf("summary %q does not match the one failover %s", s, f[1])
	}
	checkDemoCleanedUp(t, out)
}

// TestDemoKeyKillsLeaderAndSignalStopsEverything drives the demo as a user
// would: k<Enter> kills the leader, then SIGINT (Ctrl-C) stops it all.
func TestDemoKeyKillsLeaderAndSignalStopsEverything(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := startDemo(t, ctx)
	d.waitFor(t, 30*time.Second, regexp.MustCompile(`holds the lease \(term \d+\)`))
	if _, err := io.WriteString(d.stdin, "k\n"); err != nil {
		t.Fatal(err)
	}
	d.waitFor(t, 30*time.Second, demoFailRe)
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	d.wait(t, 30*time.Second)
	out := d.output()
	t.Logf("demo output:\n%s", out)
	if d.code != 0 {
		t.Errorf("demo exit code %d after SIGINT, want 0", d.code)
	}
	if !strings.Contains(out, "interrupt: stopping") {
		t.Errorf("no sign of the interrupt in the output")
	}
	if s := demoSummaryRe.FindStringSubmatch(out); s == nil || s[1] != "1" {
		t.Errorf("summary: %q, want 1 failover", s)
	}
	checkDemoCleanedUp(t, out)
}

func TestDurationStats(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var ds []time.Duration
		for _, x := range v {
			ds = append(ds, time.Duration(x)*time.Millisecond)
		}
		return ds
	}
	for _, tt := range []struct {
		in           []time.Duration
		min, med, mx time.Duration
	}{
		{ms(5), ms(5)[0], ms(5)[0], ms(5)[0]},
		{ms(30, 10, 20), ms(10)[0], ms(20)[0], ms(30)[0]},
		{ms(40, 10, 20, 30), ms(10)[0], ms(25)[0], ms(40)[0]},
	} {
		mn, med, mx := durationStats(tt.in)
		if mn != tt.min || med != tt.med || mx != tt.mx {
			t.Errorf("durationStats(%v) = %v %v %v, want %v %v %v", tt.in, mn, med, mx, tt.min, tt.med, tt.mx)
		}
	}
}

// TestDemoViewFits80x24: the live view is at most 24 lines of at most 80
// characters, with no newline after the last (so the terminal never
// scrolls), and keeps its title, leader line and table header on top
// however many and however long the events are.
func TestDemoViewFits80x24(t *testing.T) {
	var out strings.Builder
	d := &demo{o: demoOptions{heartbeat: 100 * time.Millisecond, electionTimeout: time.Second},
		out: &out, tty: true, begin: time.Now(), lc: &localCluster{dir: "/tmp/raftelect-demo-" + strings.Repeat("x", 60)},
		leader: "n2", term: 7}
	for _, name := range []string{"n1", "n2", "n3"} {
		d.procs = append(d.procs, &demoProc{localNode: &localNode{name: name}})
	}
	for i := range 30 {
		d.event(fmt.Sprintf("event %d: %s", i, strings.Repeat("long ", 30)))
	}
	d.event("n1 exited by itself; the end of its log:\n    a\n    b\n    c")
	d.draw()
	screen := regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]").ReplaceAllString(out.String(), "")
	lines := strings.Split(screen, "\n")
	if len(lines) != 24 {
		t.Errorf("%d lines, want 24 (no newline after the last)", len(lines))
	}
	for i, l := range lines {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("line %d has %d characters: %q", i+1, n, l)
		}
	}
	if !strings.HasPrefix(lines[0], "raftelect demo:") || !strings.HasPrefix(lines[1], "leader: n2   term: 7") ||
		!strings.HasPrefix(lines[3], "NODE") || !strings.HasPrefix(lines[len(lines)-1], "k<Enter>") {
		t.Errorf("title, leader line, table header or key line not in place:\n%s", screen)
	}
	if !strings.Contains(screen, "    c") {
		t.Errorf("the newest event's last line is not shown:\n%s", screen)
	}
}

// TestDemoKillsOnlyASettledCluster: a scheduled kill waits until every node
// runs, answers and follows the lease holder in its term, the leader
// reaches every peer, and no node is within the two election timeouts a
// stateless start refuses votes for.
func TestDemoKillsOnlyASettledCluster(t *testing.T) {
	d := &demo{o: demoOptions{electionTimeout: time.Second}, leader: "n1", term: 5}
	long := time.Now().Add(-time.Minute)
	for _, name := range []string{"n1", "n2", "n3"} {
		d.procs = append(d.procs, &demoProc{localNode: &localNode{name: name}, running: true, up: true, started: long, starts: 2})
	}
	follow := func(name, leader string, term uint64) nodeReport {
		return nodeReport{Name: name, OK: true, Leader: leader, Term: term,
			Peers: []peerReport{{Name: "n2", Reachable: true}, {Name: "n3", Reachable: true}}}
	}
	d.last = statusReport{Nodes: []nodeReport{follow("n1", "n1", 5), follow("n2", "n1", 5), follow("n3", "n1", 5)}}
	if why := d.unsettled(); why != "" || !d.canKill() {
		t.Fatalf("settled cluster: %q", why)
	}
	for _, tt := range []struct {
		name  string
		spoil func()
		undo  func()
	}{
		{"a restarted node that follows no leader yet",
			func() { d.last.Nodes[2] = follow("n3", "", 5) }, func() { d.last.Nodes[2] = follow("n3", "n1", 5) }},
		{"a node in an older term",
			func() { d.last.Nodes[1] = follow("n2", "n1", 4) }, func() { d.last.Nodes[1] = follow("n2", "n1", 5) }},
		{"a peer the leader does not reach",
			func() { d.last.Nodes[0].Peers[1].Reachable = false }, func() { d.last.Nodes[0].Peers[1].Reachable = true }},
		{"a node down",
			func() { d.procs[1].up = false }, func() { d.procs[1].up = true }},
		{"a first start a moment ago",
			func() { d.procs[2].starts, d.procs[2].started = 1, time.Now() }, func() { d.procs[2].starts, d.procs[2].started = 2, long }},
		{"a failover under way",
			func() { d.pending = &failover{} }, func() { d.pending = nil }},
	} {
		tt.spoil()
		if d.canKill() {
			t.Errorf("%s: the demo would kill now", tt.name)
		}
		tt.undo()
		if !d.canKill() {
			t.Fatalf("%s: not settled after undoing it: %q", tt.name, d.unsettled())
		}
	}
}
