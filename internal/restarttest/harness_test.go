package restarttest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/checker"
	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/internal/testport"
)

// Test timings: heartbeat 100 ms, election timeout 1 s.
const (
	heartbeat       = 100 * time.Millisecond
	electionTimeout = time.Second
)

// testnodeBin is the node binary, built once for the whole package.
var testnodeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "raftelect-testnode-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testnodeBin = filepath.Join(dir, "testnode")
	build := exec.Command("go", "build", "-o", testnodeBin, "github.com/raftelect/raftelect/internal/testnode")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build testnode:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is one testnode process slot: its files persist across restarts.
type node struct {
	name    string
	addr    string
	dataDir string // "" keeps raft state in memory
	events  string // event log file
	stderr  string // the process's stderr, appended across restarts

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// cluster is a set of testnode processes on loopback with mutual TLS.
type cluster struct {
	t      testing.TB
	dir    string
	tlsDir string
	peers  string
	nodes  []*node
}

// newCluster prepares n nodes named n1..nN, each with a bbolt data directory
// when durable. Every process it starts is killed in t.Cleanup.
func newCluster(t testing.TB, n int, durable bool) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir()}
	c.tlsDir = filepath.Join(c.dir, "tls")
	ca, err := certs.NewCA("raftelect restart test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var peers []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		nd := &node{
			name:   name,
			addr:   freeAddr(t),
			events: filepath.Join(c.dir, name+".events"),
			stderr: filepath.Join(c.dir, name+".stderr"),
		}
		if durable {
			nd.dataDir = filepath.Join(c.dir, name+".data")
		}
		if _, err := ca.WriteNode(c.tlsDir, name, []string{"127.0.0.1"}, time.Hour); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, name+"="+nd.addr)
		c.nodes = append(c.nodes, nd)
	}
	c.peers = strings.Join(peers, ",")
	t.Cleanup(c.killAll)
	t.Cleanup(c.dumpOnFailure)
	return c
}

// freeAddr returns a loopback address with a port nobody listens on now,
// reused across restarts of the same node; from below the ephemeral range,
// so no redial to a dead node can take it (see internal/testport).
func freeAddr(t testing.TB) string {
	addr, err := testport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// start starts node i's process and returns the monotonic time just before.
func (c *cluster) start(i int) int64 {
	c.t.Helper()
	nd := c.nodes[i]
	if nd.cmd != nil {
		c.t.Fatalf("%s is already running", nd.name)
	}
	errf, err := os.OpenFile(nd.stderr, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer errf.Close()
	cmd := exec.Command(testnodeBin,
		"--name", nd.name, "--peers", c.peers,
		"--data-dir", nd.dataDir, "--event-log", nd.events, "--tls-dir", c.tlsDir,
		"--heartbeat", heartbeat.String(), "--election", electionTimeout.String(), "-v")
	cmd.Stderr = errf
	at := eventlog.Now()
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", nd.name, err)
	}
	nd.cmd, nd.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(nd.done)
	return at
}

// startAll starts every node that is not running.
func (c *cluster) startAll() {
	for i, nd := range c.nodes {
		if nd.cmd == nil {
			c.start(i)
		}
	}
}

// kill sends SIGKILL to node i's process, waits for it to die and appends
// the crash event the node cannot write itself. The crash is stamped after
// the process is gone, so every event the node wrote comes before it.
func (c *cluster) kill(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	if nd.cmd == nil {
		return
	}
	if err := nd.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.t.Fatalf("kill %s (pid %d): %v", nd.name, nd.cmd.Process.Pid, err)
	}
	select {
	case <-nd.done:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("%s (pid %d) did not die within 10s of SIGKILL", nd.name, nd.cmd.Process.Pid)
	}
	nd.cmd, nd.done = nil, nil
	c.appendCrash(nd)
}

// killAll kills every running node at once, then records the crashes.
func (c *cluster) killAll() {
	var killed []*node
	for _, nd := range c.nodes {
		if nd.cmd != nil {
			_ = nd.cmd.Process.Signal(syscall.SIGKILL)
			killed = append(killed, nd)
		}
	}
	for _, nd := range killed {
		select {
		case <-nd.done:
		case <-time.After(10 * time.Second):
			c.t.Errorf("%s (pid %d) did not die within 10s of SIGKILL", nd.name, nd.cmd.Process.Pid)
			continue
		}
		nd.cmd, nd.done = nil, nil
		c.appendCrash(nd)
	}
}

func (c *cluster) appendCrash(nd *node) {
	w, err := eventlog.Create(nd.events)
	if err != nil {
		c.t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(eventlog.Event{Mono: eventlog.Now(), Node: nd.name, Kind: eventlog.KindCrash}); err != nil {
		c.t.Fatal(err)
	}
}

// wipe empties node i's data directory: the node loses its raft state.
func (c *cluster) wipe(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	if nd.cmd != nil {
		c.t.Fatalf("wipe %s while it runs", nd.name)
	}
	if err := os.RemoveAll(nd.dataDir); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) running() int {
	n := 0
	for _, nd := range c.nodes {
		if nd.cmd != nil {
			n++
		}
	}
	return n
}

// readEvents reads node i's event log; a missing file is an empty log.
func (c *cluster) readEvents(i int) []eventlog.Event {
	c.t.Helper()
	ev, err := eventlog.ReadFile(c.nodes[i].events)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return ev
}

// current is what node i last logged since its latest start: its view of
// the cluster. ok is false if the node is down or has logged nothing yet.
func (c *cluster) current(i int) (e eventlog.Event, ok bool) {
	if c.nodes[i].cmd == nil {
		return e, false
	}
	ev := c.readEvents(i)
	if len(ev) == 0 {
		return e, false
	}
	last := ev[len(ev)-1]
	if last.Kind == eventlog.KindCrash || last.Kind == eventlog.KindStop {
		return e, false // the current process has not logged its start yet
	}
	return last, true
}

// agreedLeader returns the index of the node every running node names as
// leader, provided that node says it leads, or -1.
func (c *cluster) agreedLeader() int {
	lead := ""
	for i := range c.nodes {
		if c.nodes[i].cmd == nil {
			continue
		}
		e, ok := c.current(i)
		if !ok || e.Leader == "" || (lead != "" && e.Leader != lead) {
			return -1
		}
		lead = e.Leader
	}
	for i, nd := range c.nodes {
		if nd.name == lead {
			if e, ok := c.current(i); ok && e.Role == "leader" {
				return i
			}
		}
	}
	return -1
}

// waitLeader polls the event logs until every running node agrees on a
// leader, and returns its index.
func (c *cluster) waitLeader(within time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if l := c.agreedLeader(); l >= 0 {
			return l
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("no leader agreed by the %d running nodes within %v", c.running(), within)
	return -1
}

// waitKnowsLeader polls node i's event log until an event at or after mono
// names a leader, and returns that event's time.
func (c *cluster) waitKnowsLeader(i int, mono int64, within time.Duration) int64 {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, e := range c.readEvents(i) {
			if e.Mono >= mono && e.Leader != "" && (e.Kind == eventlog.KindState || e.Kind == eventlog.KindStart) {
				return e.Mono
			}
		}
		time.Sleep(time.Millisecond)
	}
	c.t.Fatalf("%s knew no leader within %v of its start", c.nodes[i].name, within)
	return 0
}

// firstStarts returns, per node, the time of its first start event.
func (c *cluster) firstStarts() map[string]int64 {
	out := map[string]int64{}
	for i, nd := range c.nodes {
		for _, e := range c.readEvents(i) {
			if e.Kind == eventlog.KindStart {
				out[nd.name] = e.Mono
				break
			}
		}
	}
	return out
}

// check runs the checker over every node's event log.
func (c *cluster) check(opts checker.Options) checker.Report {
	c.t.Helper()
	var paths []string
	for _, nd := range c.nodes {
		paths = append(paths, nd.events)
	}
	r, err := checker.CheckFiles(paths, opts)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// dumpOnFailure logs the tail of every node's stderr when the test failed.
func (c *cluster) dumpOnFailure() {
	if !c.t.Failed() {
		return
	}
	for _, nd := range c.nodes {
		b, _ := os.ReadFile(nd.stderr)
		lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		c.t.Logf("--- %s stderr (last %d lines; event log %s)\n%s", nd.name, len(lines), nd.events, bytes.Join(lines, []byte("\n")))
	}
	keep, err := os.MkdirTemp("", "raftelect-restart-events-")
	if err != nil {
		return
	}
	for _, nd := range c.nodes {
		if b, err := os.ReadFile(nd.events); err == nil {
			_ = os.WriteFile(filepath.Join(keep, filepath.Base(nd.events)), b, 0o644)
		}
	}
	c.t.Logf("event logs of the failed test kept in %s", keep)
}
