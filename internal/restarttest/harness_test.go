package restarttest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftelect/raftelect/checker"
	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/internal/proccluster"
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
	bin, remove, err := proccluster.Build("github.com/raftelect/raftelect/internal/testnode", "testnode")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testnodeBin = bin
	code := m.Run()
	remove()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// cluster is a proccluster of testnode processes on loopback with mutual
// TLS, and what the tests read back from their event logs.
type cluster struct {
	t     testing.TB
	pc    *proccluster.Cluster
	nodes []*proccluster.Node
}

// newCluster prepares n nodes named n1..nN, each with a bbolt data directory
// when durable (otherwise raft state in memory). Every process it starts is
// killed in t.Cleanup.
func newCluster(t testing.TB, n int, durable bool) *cluster {
	t.Helper()
	pc, err := proccluster.New(proccluster.Options{
		Nodes: n, Dir: t.TempDir(),
		Args: func(nd *proccluster.Node) []string { return []string{testnodeBin, "--config", nd.Config} },
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, pc: pc, nodes: pc.Nodes()}
	t.Cleanup(func() {
		c.killAll()
		if err := pc.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(c.dumpOnFailure)
	if _, err := pc.WriteCerts(time.Hour, func(*proccluster.Node) []string { return []string{"127.0.0.1"} }); err != nil {
		t.Fatal(err)
	}
	var peers []config.Peer
	for _, nd := range c.nodes {
		// Reused across restarts of the node; from below the ephemeral
		// range, so no redial to a dead node can take it (internal/testport).
		addr, err := testport.Addr()
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, config.Peer{Name: nd.Name, Address: addr})
	}
	for _, nd := range c.nodes {
		cfg := &config.Node{
			Name: nd.Name, Peers: peers, TLS: nd.TLS, EventLog: nd.Events,
			HeartbeatInterval: config.Duration(heartbeat), ElectionTimeout: config.Duration(electionTimeout),
		}
		if durable {
			cfg.DataDir = nd.DataDir
		}
		if err := pc.WriteConfig(nd, cfg); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// start starts node i's process and returns the monotonic time just before.
func (c *cluster) start(i int) int64 {
	c.t.Helper()
	at := eventlog.Now()
	if _, err := c.pc.Start(i); err != nil {
		c.t.Fatal(err)
	}
	return at
}

// startAll starts every node that is not running.
func (c *cluster) startAll() {
	for i := range c.nodes {
		if !c.pc.Running(i) {
			c.start(i)
		}
	}
}

// kill sends SIGKILL to node i's process, waits for it to die and appends
// the crash event the node cannot write itself. The crash is stamped after
// the process is gone, so every event the node wrote comes before it.
func (c *cluster) kill(i int) {
	c.t.Helper()
	if !c.pc.Running(i) {
		return
	}
	if err := c.pc.Kill(i); err != nil {
		c.t.Fatal(err)
	}
	if err := c.pc.AppendCrash(i); err != nil {
		c.t.Fatal(err)
	}
}

// killAll kills every running node at once, then records the crashes.
func (c *cluster) killAll() {
	var killed []int
	for i := range c.nodes {
		if c.pc.Running(i) {
			killed = append(killed, i)
		}
	}
	if err := c.pc.KillAll(); err != nil {
		c.t.Error(err)
	}
	for _, i := range killed {
		if err := c.pc.AppendCrash(i); err != nil {
			c.t.Error(err)
		}
	}
}

// wipe empties node i's data directory: the node loses its raft state.
func (c *cluster) wipe(i int) {
	c.t.Helper()
	if c.pc.Running(i) {
		c.t.Fatalf("wipe %s while it runs", c.nodes[i].Name)
	}
	if err := os.RemoveAll(c.nodes[i].DataDir); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) running() int {
	n := 0
	for i := range c.nodes {
		if c.pc.Running(i) {
			n++
		}
	}
	return n
}

// readEvents reads node i's event log; a missing file is an empty log.
func (c *cluster) readEvents(i int) []eventlog.Event {
	c.t.Helper()
	ev, err := eventlog.ReadFile(c.nodes[i].Events)
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
	if !c.pc.Running(i) {
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
		if !c.pc.Running(i) {
			continue
		}
		e, ok := c.current(i)
		if !ok || e.Leader == "" || (lead != "" && e.Leader != lead) {
			return -1
		}
		lead = e.Leader
	}
	for i, nd := range c.nodes {
		if nd.Name == lead {
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
	l := -1
	err := proccluster.Poll(context.Background(), within, 5*time.Millisecond, "a leader agreed by the running nodes", func() error {
		if l = c.agreedLeader(); l < 0 {
			return fmt.Errorf("%d nodes running, no agreed leader", c.running())
		}
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return l
}

// waitKnowsLeader polls node i's event log until an event at or after mono
// names a leader, and returns that event's time.
func (c *cluster) waitKnowsLeader(i int, mono int64, within time.Duration) int64 {
	c.t.Helper()
	var at int64
	err := proccluster.Poll(context.Background(), within, time.Millisecond, c.nodes[i].Name+" to know a leader after its start", func() error {
		for _, e := range c.readEvents(i) {
			if e.Mono >= mono && e.Leader != "" && (e.Kind == eventlog.KindState || e.Kind == eventlog.KindStart) {
				at = e.Mono
				return nil
			}
		}
		return errors.New("no event names a leader")
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return at
}

// firstStarts returns, per node, the time of its first start event.
func (c *cluster) firstStarts() map[string]int64 {
	out := map[string]int64{}
	for i, nd := range c.nodes {
		for _, e := range c.readEvents(i) {
			if e.Kind == eventlog.KindStart {
				out[nd.Name] = e.Mono
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
		paths = append(paths, nd.Events)
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
	for i, nd := range c.nodes {
		c.t.Logf("--- %s stderr (last 30 lines; event log %s)\n%s", nd.Name, nd.Events, c.pc.Tail(i, 30))
	}
	keep, err := os.MkdirTemp("", "raftelect-restart-events-")
	if err != nil {
		return
	}
	for _, nd := range c.nodes {
		if b, err := os.ReadFile(nd.Events); err == nil {
			_ = os.WriteFile(filepath.Join(keep, filepath.Base(nd.Events)), b, 0o644)
		}
	}
	c.t.Logf("event logs of the failed test kept in %s", keep)
}
