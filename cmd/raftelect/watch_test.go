package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

func nodeAt(name, role, leader string, term uint64, lease bool) nodeReport {
	return nodeReport{Name: name, OK: true, Role: role, Leader: leader, Term: term, HoldsLease: lease}
}

// TestWatchDiffReportsEveryChangeOnce: between two polls, a node that stops
// answering, a role change, a lease taken and a new agreed leader are each
// one event; an unchanged poll is none.
func TestWatchDiffReportsEveryChangeOnce(t *testing.T) {
	w := &watcher{interval: time.Second}
	t0 := time.Now()
	before := summarize([]nodeReport{
		nodeAt("n1", "leader", "n1", 4, true), nodeAt("n2", "follower", "n1", 4, false), nodeAt("n3", "follower", "n1", 4, false),
	})
	if ev := w.diff(t0, before); len(ev) != 0 {
		t.Fatalf("first poll: %v, want no events", ev)
	}
	if ev := w.diff(t0.Add(time.Second), before); len(ev) != 0 {
		t.Fatalf("unchanged poll: %v, want no events", ev)
	}
	down := nodeReport{Name: "n1", ErrorClass: "unavailable", Error: "connection refused"}
	leaderless := summarize([]nodeReport{down, nodeAt("n2", "candidate", "", 5, false), nodeAt("n3", "follower", "", 5, false)})
	ev := w.diff(t0.Add(2*time.Second), leaderless)
	want := []string{"down n1", "role n2", "no-leader "}
	if got := kinds(ev); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("leader lost: %v, want %v", ev, want)
	}
	elected := summarize([]nodeReport{down, nodeAt("n2", "leader", "n2", 5, true), nodeAt("n3", "follower", "n2", 5, false)})
	ev = w.diff(t0.Add(3*time.Second), elected)
	want = []string{"role n2", "lease n2", "leader n2"}
	if got := kinds(ev); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("new leader: %v, want %v", ev, want)
	}
	last := ev[len(ev)-1].Detail
	if !strings.Contains(last, "n2 leads in term 5 (was n1, term 4); no agreed leader for 1s") {
		t.Errorf("leader event: %q", last)
	}
}

func kinds(ev []watchEvent) []string {
	var out []string
	for _, e := range ev {
		out = append(out, e.Kind+" "+e.Node)
	}
	return out
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestStatusWatchShowsFailoverAsEvents: `status --watch` on a live cluster
// reports a kill -9 of the leader as it happens, the old leader not
// answering and the new leader (text), every line of -o json is one object
// of type event or status, and SIGINT ends the watch with exit 0.
func TestStatusWatchShowsFailoverAsEvents(t *testing.T) {
	c := startCluster(t)
	rep := c.agreedLeader(t, 30*time.Second)
	start := func(args ...string) (*exec.Cmd, *lockedBuffer, chan int) {
		cmd := exec.Command(binary, append([]string{"status", "--watch", "--config", c.nodes[0].cfg, "--interval", "100ms", "--timeout", "500ms"}, args...)...)
		out := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan int, 1)
		go func() { _ = cmd.Wait(); done <- cmd.ProcessState.ExitCode() }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
		return cmd, out, done
	}
	text, textOut, textDone := start()
	js, jsOut, jsDone := start("-o", "json")
	eventually(t, 10*time.Second, "both watches print the first poll", func() error {
		if !strings.Contains(textOut.String(), "peer columns:") || !strings.Contains(jsOut.String(), `"type":"status"`) {
			return fmt.Errorf("text %q json %q", textOut.String(), jsOut.String())
		}
		return nil
	})
	old := c.node(rep.Leader)
	old.kill()
	var next string
	eventually(t, 20*time.Second, "the watch reports the new leader", func() error {
		for _, line := range strings.Split(textOut.String(), "\n") {
			if f := strings.Fields(line); len(f) > 3 && f[1] == "leader" && f[3] == "leads" && f[2] != rep.Leader {
				next = f[2]
				return nil
			}
		}
		return fmt.Errorf("%s", textOut.String())
	})
	out := textOut.String()
	t.Logf("status --watch during a kill -9 of %s:\n%s", rep.Leader, out)
	// How the dead node's connection ends is a race the kernel settles: a
	// poll in flight at the kill, or data unread in the killed process's
	// socket, makes it a reset (or an EOF) of the open connection; a poll
	// after the client noticed makes it a refused redial. Each is a node
	// that does not answer, class unavailable.
	down := regexp.MustCompile(`down +` + rep.Leader + ` does not answer: unavailable \((connect: connection refused|read: connection reset by peer|error reading from server: EOF)\)`)
	if !down.MatchString(out) {
		t.Errorf("watch output lacks a line matching %q", down)
	}
	for _, want := range []string{
		fmt.Sprintf("leader    %s leads in term", next),
		fmt.Sprintf("(was %s, term %d)", rep.Leader, rep.Term),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("watch output lacks %q", want)
		}
	}
	eventually(t, 10*time.Second, "the json watch reports the new leader", func() error {
		if !strings.Contains(jsOut.String(), fmt.Sprintf(`"event":"leader","node":%q`, next)) {
			return fmt.Errorf("%s", jsOut.String())
		}
		return nil
	})
	for _, cmd := range []*exec.Cmd{text, js} {
		_ = cmd.Process.Signal(syscall.SIGINT)
	}
	for name, done := range map[string]chan int{"text": textDone, "json": jsDone} {
		select {
		case code := <-done:
			done <- code // for the cleanup
			if code != 0 {
				t.Errorf("%s watch: exit %d after SIGINT, want 0", name, code)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s watch did not stop on SIGINT", name)
		}
	}
	sc := bufio.NewScanner(strings.NewReader(jsOut.String()))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		var obj struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil || (obj.Type != "event" && obj.Type != "status") {
			t.Errorf("json line %d is not an event or status object: %v %q", n, err, sc.Text())
		}
		n++
	}
	if n < 3 {
		t.Errorf("json stream: %d objects, want the first status, events and a status after them", n)
	}
}

// startWatch runs `status --watch` with args against c until the test ends.
func startWatch(t *testing.T, c *cluster, args ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"status", "--watch", "--config", c.nodes[0].cfg}, args...)...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	return cmd, out
}

// waitLine waits until out has a line containing every one of want, after
// the first from lines, and returns its index.
func waitLine(t *testing.T, out *lockedBuffer, from int, limit time.Duration, want ...string) int {
	t.Helper()
	at := -1
	eventually(t, limit, fmt.Sprintf("a watch line with %q", want), func() error {
		lines := strings.Split(out.String(), "\n")
		for i := from; i < len(lines); i++ {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(lines[i], w)
			}
			if ok {
				at = i
				return nil
			}
		}
		return fmt.Errorf("%s", out.String())
	})
	return at
}

// TestStatusWatchFollowsTransferHungNodeAndRestart: `status --watch` on
// live streams reports a `raftelect transfer` (the old leader's lease
// ending, the new leader) as it happens; a node that stops answering
// without closing its connection (SIGSTOP) as down with class timeout
// within the update interval plus the timeout, and up again after SIGCONT;
// a node killed and restarted as down (connection refused) and up again:
// the watch reconnects by itself.
func TestStatusWatchFollowsTransferHungNodeAndRestart(t *testing.T) {
	c := startCluster(t)
	rep := c.agreedLeader(t, 30*time.Second)
	_, out := startWatch(t, c, "--interval", "200ms", "--timeout", "500ms")
	waitLine(t, out, 0, 10*time.Second, "peer columns:")

	var to string
	for _, n := range rep.Nodes {
		if n.Name != rep.Leader {
			to = n.Name
			break
		}
	}
	if r := raftelect(t, "transfer", "--config", c.nodes[0].cfg, "--to", to); r.code != 0 {
		t.Fatalf("transfer --to %s: exit %d: %s", to, r.code, r.stderr)
	}
	i := waitLine(t, out, 0, 10*time.Second, "leader    "+to+" leads in term", fmt.Sprintf("(was %s, term %d)", rep.Leader, rep.Term))
	t.Logf("status --watch during `raftelect transfer --to %s`:\n%s", to, out.String())
	if j := waitLine(t, out, 0, time.Second, "lease     "+rep.Leader+" no longer holds the lease"); j > i {
		t.Errorf("the old lease's end (line %d) is reported after the new leader (line %d)", j, i)
	}

	// A follower that hangs: its connection stays open, it says nothing.
	var hung *proc
	for _, p := range c.nodes {
		if p.name != to {
			hung = p
			break
		}
	}
	hung.signal(syscall.SIGSTOP)
	t.Cleanup(func() { hung.signal(syscall.SIGCONT) })
	stopped := time.Now()
	i = waitLine(t, out, i, 10*time.Second, "down      "+hung.name+" does not answer: timeout")
	t.Logf("%s hung (SIGSTOP): reported down after %v (interval 200ms + timeout 500ms)", hung.name, time.Since(stopped).Round(time.Millisecond))
	hung.signal(syscall.SIGCONT)
	i = waitLine(t, out, i, 10*time.Second, "up        "+hung.name+" answers")

	// A follower killed and started again: the watch sees it go and come
	// back without being restarted itself.
	hung.kill()
	<-hung.done // its exit recorded before start makes a new one
	i = waitLine(t, out, i, 10*time.Second, "down      "+hung.name+" does not answer: unavailable")
	hung.start(t)
	waitLine(t, out, i, 20*time.Second, "up        "+hung.name+" answers")
	t.Logf("status --watch through a hang and a restart of %s:\n%s", hung.name, out.String())
}

// TestWatchScreenFits80x24: the terminal view of --watch is at most 24
// lines of at most 80 characters with no newline after the last, whatever
// the table's width and however many events there were; the newest event
// is on screen.
func TestWatchScreenFits80x24(t *testing.T) {
	rep := summarize([]nodeReport{nodeAt("n1", "leader", "n1", 4, true), nodeAt("n2", "follower", "n1", 4, false), nodeAt("n3", "follower", "n1", 4, false)})
	rep.Nodes[0].Address = "a-very-long-host-name.example.com:7000"
	var recent []string
	for i := range 40 {
		recent = append(recent, fmt.Sprintf("event %d %s", i, strings.Repeat("x", 100)))
	}
	var out strings.Builder
	screen := watchScreen(&out, time.Now(), rep, recent)
	screen = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]").ReplaceAllString(screen, "")
	lines := strings.Split(screen, "\n")
	if len(lines) != 24 {
		t.Errorf("%d lines, want 24", len(lines))
	}
	for i, l := range lines {
		if n := utf8.RuneCountInString(l); n > 80 {
			t.Errorf("line %d: %d characters", i+1, n)
		}
	}
	if !strings.HasPrefix(lines[len(lines)-1], "event 39 ") {
		t.Errorf("last line %q, want the newest event", lines[len(lines)-1])
	}
}
