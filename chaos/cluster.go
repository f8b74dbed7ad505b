//go:build linux

package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/chaos/netns"
	"github.com/raftelect/raftelect/eventlog"
)

// Ports inside every node's namespace. Each node has its own namespace, so
// all use the same numbers.
const (
	peerPort      = 7000
	httpPort      = 9100
	proxyPortBase = 8000 // + peer index: this node's proxy towards that peer
)

// clusterConfig is what a cluster is built from.
type clusterConfig struct {
	nodes             int
	binary            string
	dir               string
	heartbeat         time.Duration
	electionTimeout   time.Duration
	syncSend          bool
	proxy             bool
	extraConfigFields map[string]any
	// nodeConfig, when set, holds each node's overrides (by index) of the
	// timings and the peer list.
	nodeConfig []NodeConfig
}

// cluster is real `raftelect run` processes, one per namespace of a
// netns.Network, with mutual TLS from a fresh development CA.
type cluster struct {
	cfg    clusterConfig
	nw     *netns.Network
	nodes  []*proc
	links  *linkTable // nil without proxies
	tlsDir string
	proxy  []*proxy

	// starts carries cmd.Start calls to one goroutine locked to its OS
	// thread for the cluster's life. netns.Command sets Pdeathsig, which
	// the kernel ties to the thread that forked the child, not to the
	// process; and netns.Do ends the threads it runs on. A node started
	// from an arbitrary goroutine could be SIGKILLed, silently, the
	// moment a later Do retired the thread it was forked from.
	starts  chan func()
	stopped chan struct{}
}

// proc is one node slot. Its files survive restarts of its process.
type proc struct {
	index  int
	name   string
	ip     netip.Addr
	config string // YAML config file
	events string // event log
	stderr string // the process's stderr, appended across restarts

	mu      sync.Mutex
	conf    NodeConfig // overrides in its config file now
	cmd     *process
	stopped bool // SIGSTOPped and not yet continued
	// cpuTicks sums utime+stime of earlier processes of this slot.
	cpuTicks uint64
	// lastTicks is the latest reading of the current process.
	lastTicks uint64
	rss       rssSamples
}

// process is one started process of a slot.
type process struct {
	pid  int
	proc *os.Process
	done chan struct{} // closed once waited for
}

// exited reports whether the process has ended and been waited for.
func (e *process) exited() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

func nodeName(i int) string { return fmt.Sprintf("n%d", i+1) }

// newCluster builds the network, the certificates and the configs; it
// starts no process. Close undoes everything.
func newCluster(ctx context.Context, cc clusterConfig) (_ *cluster, err error) {
	nw, err := netns.New(ctx, cc.nodes)
	if err != nil {
		return nil, err
	}
	c := &cluster{cfg: cc, nw: nw, tlsDir: filepath.Join(cc.dir, "tls"), starts: make(chan func()), stopped: make(chan struct{})}
	go c.starter()
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	ca, err := certs.NewCA("raftelect chaos CA", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	tlsDir := c.tlsDir
	for _, n := range nw.Nodes() {
		p := &proc{
			index:  n.Index,
			name:   nodeName(n.Index),
			ip:     n.IP,
			config: filepath.Join(cc.dir, nodeName(n.Index)+".yaml"),
			events: filepath.Join(cc.dir, nodeName(n.Index)+".events.jsonl"),
			stderr: filepath.Join(cc.dir, nodeName(n.Index)+".stderr.log"),
		}
		if n.Index < len(cc.nodeConfig) {
			p.conf = cc.nodeConfig[n.Index]
		}
		if _, err := ca.WriteNode(tlsDir, p.name, []string{n.IP.String(), "127.0.0.1"}, 24*time.Hour); err != nil {
			return nil, fmt.Errorf("chaos: certificates: %w", err)
		}
		c.nodes = append(c.nodes, p)
	}
	if cc.proxy {
		if err := c.startProxies(); err != nil {
			return nil, err
		}
	}
	for _, p := range c.nodes {
		if err := c.writeConfig(p); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// peerAddr is where node from reaches node to: straight at its namespace
// IP, or at from's local proxy towards to. With proxies a node lists itself
// at its proxy port too, though it has no proxy towards itself (it listens
// at listen_address and never dials itself): every node's peer list must
// be the same, addresses included, or the nodes refuse each other as
// members of different clusters.
func (c *cluster) peerAddr(from, to int) string {
	if c.cfg.proxy {
		return fmt.Sprintf("127.0.0.1:%d", proxyPortBase+to)
	}
	return netip.AddrPortFrom(c.nodes[to].ip, peerPort).String()
}

// writeConfig writes node p's YAML config from the cluster's settings and
// p's overrides. The caller holds p.mu or owns p alone.
func (c *cluster) writeConfig(p *proc) error {
	type peer struct {
		Name    string `yaml:"name"`
		Address string `yaml:"address"`
	}
	var peers []peer
	for _, q := range c.nodes {
		if p.conf.Peers == nil || slices.Contains(p.conf.Peers, q.name) {
			peers = append(peers, peer{Name: q.name, Address: c.peerAddr(p.index, q.index)})
		}
	}
	heartbeat, electionTimeout := c.cfg.heartbeat, c.cfg.electionTimeout
	if p.conf.HeartbeatInterval != 0 {
		heartbeat = p.conf.HeartbeatInterval.D()
	}
	if p.conf.ElectionTimeout != 0 {
		electionTimeout = p.conf.ElectionTimeout.D()
	}
	tlsDir := c.tlsDir
	doc := map[string]any{
		"name":               p.name,
		"peers":              peers,
		"listen_address":     netip.AddrPortFrom(p.ip, peerPort).String(),
		"heartbeat_interval": heartbeat.String(),
		"election_timeout":   electionTimeout.String(),
		"tls": map[string]string{
			"ca_file":   filepath.Join(tlsDir, "ca.crt"),
			"cert_file": filepath.Join(tlsDir, p.name+".crt"),
			"key_file":  filepath.Join(tlsDir, p.name+".key"),
		},
		"data_dir":     filepath.Join(c.cfg.dir, p.name+".data"),
		"event_log":    p.events,
		"http_address": fmt.Sprintf("127.0.0.1:%d", httpPort),
	}
	if c.cfg.syncSend {
		doc["unsafe_sync_send"] = true
	}
	if p.conf.FastFailoverOnRefusal {
		doc["fast_failover_on_refusal"] = true
	}
	if tr := map[string]string{}; p.conf.KeepaliveTime != 0 || p.conf.KeepaliveTimeout != 0 {
		if p.conf.KeepaliveTime != 0 {
			tr["keepalive_time"] = p.conf.KeepaliveTime.String()
		}
		if p.conf.KeepaliveTimeout != 0 {
			tr["keepalive_timeout"] = p.conf.KeepaliveTimeout.String()
		}
		doc["transport"] = tr
	}
	for k, v := range c.cfg.extraConfigFields {
		doc[k] = v
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(p.config, b, 0o644)
}

// reconfigure applies o over node i's overrides and rewrites its config
// file; the process reads it at its next start.
func (c *cluster) reconfigure(i int, o NodeConfig) error {
	p := c.nodes[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conf = p.conf.merge(o)
	return c.writeConfig(p)
}

// electionTimeout is node i's election timeout as its config file says.
func (c *cluster) electionTimeout(i int) time.Duration {
	p := c.nodes[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conf.ElectionTimeout != 0 {
		return p.conf.ElectionTimeout.D()
	}
	return c.cfg.electionTimeout
}

// logSize is the size of node i's stderr (its log) now.
func (c *cluster) logSize(i int) int64 {
	st, err := os.Stat(c.nodes[i].stderr)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logSince returns how many bytes and lines node i's log gained after
// offset from.
func (c *cluster) logSince(i int, from int64) (bytes int64, lines int) {
	f, err := os.Open(c.nodes[i].stderr)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0, 0
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		bytes += int64(n)
		for _, b := range buf[:n] {
			if b == '\n' {
				lines++
			}
		}
		if err != nil {
			return bytes, lines
		}
	}
}

// bootstrap marks node i's empty data directory as never run (`raftelect
// bootstrap`), so that its first start skips the vote guard a node without
// state keeps for 2 x election timeout: a brand-new cluster then has its
// first lease after about one election timeout instead of two or three.
// Only for nodes that have never run.
func (c *cluster) bootstrap(ctx context.Context, i int) error {
	p := c.nodes[i]
	out, err := exec.CommandContext(ctx, c.cfg.binary, "bootstrap", "--config", p.config).CombinedOutput()
	if err != nil {
		return fmt.Errorf("chaos: raftelect bootstrap of %s: %w: %s", p.name, err, bytes.TrimSpace(out))
	}
	return nil
}

// start starts node i's process.
func (c *cluster) start(i int) error {
	p := c.nodes[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("chaos: %s is already running (pid %d)", p.name, p.cmd.pid)
	}
	errf, err := os.OpenFile(p.stderr, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer errf.Close()
	// Not bound to a context: the cluster kills its processes by pid.
	cmd := c.nw.Command(context.Background(), i, c.cfg.binary, "run", "--config", p.config)
	cmd.Stdout, cmd.Stderr = errf, errf
	errc := make(chan error, 1)
	select {
	case c.starts <- func() { errc <- cmd.Start() }:
	case <-c.stopped:
		return fmt.Errorf("chaos: start %s: cluster closed", p.name)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("chaos: start %s: %w", p.name, err)
	}
	e := &process{pid: cmd.Process.Pid, proc: cmd.Process, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(e.done) }()
	p.cmd, p.stopped, p.lastTicks = e, false, 0
	p.rss.restart()
	return nil
}

// running returns the current process of node i, or nil.
func (c *cluster) running(i int) *process {
	p := c.nodes[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd
}

// exited forgets node i's process after it died, keeping its CPU time.
func (c *cluster) exited(i int, e *process) {
	p := c.nodes[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == e {
		p.cpuTicks += p.lastTicks
		p.cmd, p.stopped, p.lastTicks = nil, false, 0
	}
}

// kill sends SIGKILL to node i and, once it is gone, appends the crash
// event the node cannot write itself, stamped after its death so that
// every event it wrote comes first.
func (c *cluster) kill(i int) error {
	e := c.running(i)
	if e == nil {
		return nil
	}
	c.sampleCPU(i)
	if err := e.proc.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chaos: kill %s (pid %d): %w", c.nodes[i].name, e.pid, err)
	}
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("chaos: %s (pid %d) still alive 10s after SIGKILL", c.nodes[i].name, e.pid)
	}
	c.exited(i, e)
	return c.appendCrash(i)
}

func (c *cluster) appendCrash(i int) error {
	w, err := eventlog.Create(c.nodes[i].events)
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Write(eventlog.Event{Mono: eventlog.Now(), Node: c.nodes[i].name, Kind: eventlog.KindCrash})
}

// terminate sends SIGTERM to node i and waits up to limit for a clean
// exit (a leader hands over first); after that it kills the node.
func (c *cluster) terminate(i int, limit time.Duration) error {
	e := c.running(i)
	if e == nil {
		return nil
	}
	c.sampleCPU(i)
	if err := e.proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chaos: SIGTERM %s (pid %d): %w", c.nodes[i].name, e.pid, err)
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		select {
		case <-e.done:
			c.exited(i, e)
			return nil
		case <-t.C:
			if err := c.kill(i); err != nil {
				return err
			}
			return fmt.Errorf("chaos: %s (pid %d) did not stop within %v of SIGTERM; killed it", c.nodes[i].name, e.pid, limit)
		case <-time.After(100 * time.Millisecond):
			c.sampleCPU(i) // last reading before it goes
		}
	}
}

// signalStop sends SIGSTOP (stop true) or SIGCONT to node i.
func (c *cluster) signalStop(i int, stop bool) error {
	p := c.nodes[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.stopped == stop {
		return nil
	}
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := p.cmd.proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chaos: %v to %s (pid %d): %w", sig, p.name, p.cmd.pid, err)
	}
	p.stopped = stop
	return nil
}

// isStopped reports whether node i is SIGSTOPped.
func (c *cluster) isStopped(i int) bool {
	p := c.nodes[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

// dumpStacks sends SIGQUIT to every running node (continuing stopped ones
// first) and waits up to limit for them to write their goroutines and exit.
func (c *cluster) dumpStacks(limit time.Duration) {
	var running []*process
	for i := range c.nodes {
		_ = c.signalStop(i, false)
		if e := c.running(i); e != nil {
			_ = e.proc.Signal(syscall.SIGQUIT)
			running = append(running, e)
		}
	}
	deadline := time.After(limit)
	for _, e := range running {
		select {
		case <-e.done:
		case <-deadline:
			return
		}
	}
}

// killAll kills every node process (continuing stopped ones is not needed:
// SIGKILL ends a stopped process too).
func (c *cluster) killAll() error {
	var errs []error
	for i := range c.nodes {
		errs = append(errs, c.kill(i))
	}
	return errors.Join(errs...)
}

// starter runs start requests on a thread that lives until Close.
func (c *cluster) starter() {
	runtime.LockOSThread() // never unlocked: see cluster.starts
	for {
		select {
		case f := <-c.starts:
			f()
		case <-c.stopped:
			return
		}
	}
}

// Close kills what is left, stops the proxies and deletes the network.
func (c *cluster) Close() error {
	defer close(c.stopped) // after the kills: its thread's exit SIGKILLs any child left
	var errs []error
	for _, p := range c.proxy {
		p.Close()
	}
	for i := range c.nodes {
		if e := c.running(i); e != nil {
			if err := e.proc.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, c.nw.Close())
	return errors.Join(errs...)
}

// dialIn dials addr from inside node i's namespace.
func (c *cluster) dialIn(ctx context.Context, i int, addr string) (net.Conn, error) {
	var conn net.Conn
	err := c.nw.Do(i, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return conn, err
}

// stderrTail returns the last lines of node i's stderr, for error reports.
func (c *cluster) stderrTail(i int, lines int) string {
	b, err := os.ReadFile(c.nodes[i].stderr)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
