// Package testcluster runs in-process raftelect clusters on loopback with
// mutual TLS, for tests. Each node records its event log in memory so tests
// can check what every node did, with the same checker the chaos harness
// uses.
package testcluster

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/checker"
	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/internal/nodeopts"
	"github.com/raftelect/raftelect/internal/testport"
	"github.com/raftelect/raftelect/storage"
	"github.com/raftelect/raftelect/transport"
)

// Test timings: heartbeat 100 ms, election timeout 1 s.
const (
	Heartbeat       = 100 * time.Millisecond
	ElectionTimeout = time.Second
)

// Node is one member of a test cluster.
type Node struct {
	Name    string
	Addr    string
	Hooks   *transport.FaultHooks
	Elector *election.Elector
	Certs   certs.Files // its CA, certificate and key files

	c      *Cluster
	cfg    election.Config
	dir    string
	store  *storage.Bolt
	cancel context.CancelFunc
	done   chan error
}

// DataDir is where the node keeps its bbolt store when the cluster is
// Durable.
func (n *Node) DataDir() string { return n.dir }

// Cluster is a set of nodes running in this process.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
	// Tweak, if set, adjusts every node's configuration before it starts.
	Tweak func(*election.Config)
	// Durable gives every node a bbolt store in its own data directory,
	// kept across restarts; otherwise nodes keep their state in memory.
	Durable bool

	// CA signed every node's certificate.
	CA *certs.CA

	mu     sync.Mutex
	events bytes.Buffer // every node's event log, interleaved
	log    *eventlog.Writer
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// New prepares (but does not start) n nodes named n1..nN with certificates
// from a fresh CA and addresses on loopback.
func New(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	c.log = eventlog.NewWriter(lockedWriter{&c.mu, &c.events})
	dir := t.TempDir()
	ca, err := certs.NewCA("raftelect test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.CA = ca
	var peers []election.PeerConfig
	var listeners []net.Listener
	for i := 1; i <= n; i++ {
		// Below the ephemeral range: restarted nodes listen on the same
		// address again (see internal/testport).
		addr, err := testport.Addr()
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, lis)
		name := fmt.Sprintf("n%d", i)
		peers = append(peers, election.PeerConfig{Name: name, Address: lis.Addr().String()})
	}
	for i, p := range peers {
		f, err := ca.WriteNode(filepath.Join(dir, p.Name), p.Name, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		node := &Node{Name: p.Name, Addr: p.Address, Hooks: &transport.FaultHooks{}, c: c, dir: filepath.Join(dir, p.Name, "data"), Certs: f}
		node.cfg = election.Config{
			Name:              p.Name,
			Peers:             peers,
			HeartbeatInterval: Heartbeat,
			ElectionTimeout:   ElectionTimeout,
			TLS:               election.TLSConfig{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key},
			EventLog:          c.log,
		}
		*nodeopts.Of(&node.cfg) = nodeopts.Options{Listener: listeners[i], FaultHooks: node.Hooks}
		c.Nodes = append(c.Nodes, node)
	}
	t.Cleanup(c.StopAll)
	return c
}

// Config returns a copy of node i's configuration.
func (c *Cluster) Config(i int) election.Config { return c.Nodes[i].cfg }

// SetConfig replaces node i's configuration for its next start.
func (c *Cluster) SetConfig(i int, cfg election.Config) { c.Nodes[i].cfg = cfg }

// Start starts every node.
func (c *Cluster) Start() {
	for i := range c.Nodes {
		c.StartNode(i, nil)
	}
}

// StartNode starts node i; setup, if non-nil, runs on its Elector first
// (to register leader work).
func (c *Cluster) StartNode(i int, setup func(*election.Elector)) {
	c.t.Helper()
	n := c.Nodes[i]
	if n.done != nil {
		c.t.Fatalf("%s already running", n.Name)
	}
	cfg := n.cfg
	if opts := nodeopts.Of(&cfg); opts.Listener == nil {
		lis, err := net.Listen("tcp", n.Addr)
		if err != nil {
			c.t.Fatalf("restart %s: %v", n.Name, err)
		}
		opts.Listener = lis
	}
	nodeopts.Of(&n.cfg).Listener = nil // a listener serves one run
	if c.Tweak != nil {
		c.Tweak(&cfg)
	}
	if c.Durable {
		st, err := storage.OpenBolt(n.dir, storage.BoltOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		n.store, cfg.Storage = st, st
	}
	e, err := election.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	if setup != nil {
		setup(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.Elector, n.cancel, n.done = e, cancel, make(chan error, 1)
	go func() { n.done <- e.Run(ctx) }()
}

// StopNode stops node i (gracefully: a leader transfers first) and waits.
func (c *Cluster) StopNode(i int) {
	c.t.Helper()
	n := c.Nodes[i]
	if n.done == nil {
		return
	}
	n.cancel()
	select {
	case err := <-n.done:
		if err != nil {
			c.t.Errorf("%s stopped with error: %v", n.Name, err)
		}
	case <-time.After(30 * time.Second):
		c.t.Fatalf("%s did not stop within 30s", n.Name)
	}
	n.done = nil
	if n.store != nil {
		n.store.Close()
		n.store = nil
	}
}

// StopAll stops every running node.
func (c *Cluster) StopAll() {
	for i := range c.Nodes {
		c.StopNode(i)
	}
}

// Running reports whether node i runs.
func (c *Cluster) Running(i int) bool { return c.Nodes[i].done != nil }

// Leader returns the index of the node that holds the lease, or -1. If two
// do, the test fails at once.
func (c *Cluster) Leader() int {
	c.t.Helper()
	idx := -1
	for i, n := range c.Nodes {
		if n.done != nil && n.Elector.IsLeader() {
			if idx >= 0 {
				c.t.Fatalf("two nodes hold the lease: %s and %s", c.Nodes[idx].Name, n.Name)
			}
			idx = i
		}
	}
	return idx
}

// WaitLeader waits until one running node holds the lease and every other
// running node in want (nil: all) knows it as leader; it returns the index.
func (c *Cluster) WaitLeader(within time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if l := c.Leader(); l >= 0 {
			agreed := true
			for _, n := range c.Nodes {
				if n.done != nil && n.Elector.Leader().Name != c.Nodes[l].Name {
					agreed = false
				}
			}
			if agreed {
				return l
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no agreed leader within %v", within)
	return -1
}

// WaitFor polls cond every 10ms until it holds or the limit passes.
func (c *Cluster) WaitFor(within time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("timed out after %v waiting for %s", within, what)
}

// Events returns every event logged so far by every node.
func (c *Cluster) Events() []eventlog.Event {
	c.mu.Lock()
	data := append([]byte(nil), c.events.Bytes()...)
	c.mu.Unlock()
	ev, err := eventlog.Read(bytes.NewReader(data))
	if err != nil {
		c.t.Fatal(err)
	}
	return ev
}

// EventsSince returns the events at or after mono.
func (c *Cluster) EventsSince(mono int64) []eventlog.Event {
	var out []eventlog.Event
	for _, e := range c.Events() {
		if e.Mono >= mono {
			out = append(out, e)
		}
	}
	return out
}

// Check runs the safety checker over every event so far and fails the test
// on any violation.
func (c *Cluster) Check() checker.Report {
	c.t.Helper()
	r := checker.Check(c.Events(), checker.Options{})
	if !r.OK() {
		c.t.Errorf("checker found violations:\n%s", r.Summary())
	}
	return r
}

// DumpEvents writes the event log to a file in the test's output directory
// when the test failed, for a post-mortem.
func (c *Cluster) DumpEvents() {
	if !c.t.Failed() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := os.CreateTemp("", "raftelect-events-*.jsonl")
	if err != nil {
		return
	}
	defer f.Close()
	f.Write(c.events.Bytes())
	c.t.Logf("event log of the failed test: %s", f.Name())
}

// AddSpare prepares (but does not start) one more node, n<N+1>, that joins
// the running cluster (Config.Join): its peers are the cluster's and itself.
// Returns its index.
func (c *Cluster) AddSpare() int {
	c.t.Helper()
	addr, err := testport.Addr()
	if err != nil {
		c.t.Fatal(err)
	}
	name := fmt.Sprintf("n%d", len(c.Nodes)+1)
	dir := filepath.Join(filepath.Dir(c.Nodes[0].dir), "..", name)
	f, err := c.CA.WriteNode(dir, name, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	peers := append([]election.PeerConfig(nil), c.Nodes[0].cfg.Peers...)
	peers = append(peers, election.PeerConfig{Name: name, Address: addr})
	node := &Node{Name: name, Addr: addr, Hooks: &transport.FaultHooks{}, c: c, dir: filepath.Join(dir, "data"), Certs: f}
	node.cfg = c.Nodes[0].cfg
	node.cfg.Name, node.cfg.Peers, node.cfg.Join = name, peers, true
	node.cfg.TLS = election.TLSConfig{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}
	*nodeopts.Of(&node.cfg) = nodeopts.Options{FaultHooks: node.Hooks}
	c.Nodes = append(c.Nodes, node)
	return len(c.Nodes) - 1
}

// WaitExit waits for node i's Run to return by itself and returns its error.
func (c *Cluster) WaitExit(i int, within time.Duration) error {
	c.t.Helper()
	n := c.Nodes[i]
	if n.done == nil {
		c.t.Fatalf("%s is not running", n.Name)
	}
	select {
	case err := <-n.done:
		n.done = nil
		n.cancel()
		if n.store != nil {
			n.store.Close()
			n.store = nil
		}
		return err
	case <-time.After(within):
		c.t.Fatalf("%s did not stop by itself within %v", n.Name, within)
		return nil
	}
}
