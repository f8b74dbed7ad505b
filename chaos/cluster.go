//go:build linux

package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/raftelect/raftelect/chaos/netns"
	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/internal/proccluster"
)

// Ports inside every node's namespace. Each node has its own namespace, so
// all use the same numbers.
const (
	peerPort      = 7000
	httpPort      = 9100
	proxyPortBase = 8000 // + peer index: this node's proxy towards that peer
	// operatorName is the identity of the harness's operator certificate,
	// which every node's config lists as an operator.
	operatorName = "chaos-operator"
)

// clusterConfig is what a cluster is built from.
type clusterConfig struct {
	nodes           int
	binary          string
	dir             string
	heartbeat       time.Duration
	electionTimeout time.Duration
	syncSend        bool
	proxy           bool
	pprof           bool
	// env is added to every node process's environment (KEY=VALUE).
	env []string
	// nodeConfig, when set, holds each node's overrides (by index) of the
	// timings and the peer list.
	nodeConfig []NodeConfig
}

// cluster is real `raftelect run` processes, one per namespace of a
// netns.Network, with mutual TLS from a fresh development CA. The
// processes are a proccluster's: it starts them (inside the namespaces,
// through netns.Command), keeps their pids, signals and kills them, and
// reads their CPU time and memory.
type cluster struct {
	cfg    clusterConfig
	nw     *netns.Network
	pc     *proccluster.Cluster
	nodes  []*proc
	links  *linkTable // nil without proxies
	tlsDir string
	proxy  []*proxy
}

// proc is one node slot. Its files survive restarts of its process.
type proc struct {
	index  int
	name   string
	ip     netip.Addr
	config string // YAML config file
	events string // event log
	stderr string // the process's stderr, appended across restarts

	mu   sync.Mutex
	conf NodeConfig // overrides in its config file now
	// clusterID goes to its config file: a node that joins must name the
	// cluster it joins.
	clusterID string
	rss       rssSamples
}

func nodeName(i int) string { return fmt.Sprintf("n%d", i+1) }

// newCluster builds the network, the certificates and the configs; it
// starts no process. Close undoes everything.
func newCluster(ctx context.Context, cc clusterConfig) (_ *cluster, err error) {
	nw, err := netns.New(ctx, cc.nodes)
	if err != nil {
		return nil, err
	}
	pc, err := proccluster.New(proccluster.Options{
		Nodes: cc.nodes, Dir: cc.dir, Binary: cc.binary,
		// Not bound to a context: the cluster kills its processes by pid.
		Command: func(n *proccluster.Node, args []string) *exec.Cmd {
			cmd := nw.Command(context.Background(), n.Index, args[0], args[1:]...)
			if len(cc.env) > 0 {
				cmd.Env = append(cmd.Environ(), cc.env...)
			}
			return cmd
		},
	})
	if err != nil {
		return nil, errors.Join(err, nw.Close())
	}
	c := &cluster{cfg: cc, nw: nw, pc: pc, tlsDir: filepath.Join(cc.dir, "tls")}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	ips := map[int]netip.Addr{}
	for _, n := range nw.Nodes() {
		ips[n.Index] = n.IP
	}
	ca, err := pc.WriteCerts(24*time.Hour, func(n *proccluster.Node) []string {
		return []string{ips[n.Index].String(), "127.0.0.1"}
	})
	if err != nil {
		return nil, fmt.Errorf("chaos: certificates: %w", err)
	}
	// The harness asks for membership changes as an operator: a member's
	// certificate would stop working once that member is removed.
	if _, err := ca.WriteOperator(c.tlsDir, operatorName, 24*time.Hour); err != nil {
		return nil, fmt.Errorf("chaos: operator certificate: %w", err)
	}
	for _, n := range pc.Nodes() {
		// The names docs/chaos.md gives the files.
		n.Events = filepath.Join(cc.dir, n.Name+".events.jsonl")
		n.Log = filepath.Join(cc.dir, n.Name+".stderr.log")
		p := &proc{index: n.Index, name: n.Name, ip: ips[n.Index], config: n.Config, events: n.Events, stderr: n.Log}
		if n.Index < len(cc.nodeConfig) {
			p.conf = cc.nodeConfig[n.Index]
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
	n := &config.Node{
		Name:              p.name,
		ListenAddress:     netip.AddrPortFrom(p.ip, peerPort).String(),
		HeartbeatInterval: config.Duration(c.cfg.heartbeat),
		ElectionTimeout:   config.Duration(c.cfg.electionTimeout),
		TLS: config.TLS{
			CAFile:   filepath.Join(c.tlsDir, "ca.crt"),
			CertFile: filepath.Join(c.tlsDir, p.name+".crt"),
			KeyFile:  filepath.Join(c.tlsDir, p.name+".key"),
		},
		DataDir:               filepath.Join(c.cfg.dir, p.name+".data"),
		EventLog:              p.events,
		HTTPAddress:           fmt.Sprintf("127.0.0.1:%d", httpPort),
		UnsafeSyncSend:        c.cfg.syncSend,
		Pprof:                 c.cfg.pprof,
		FastFailoverOnRefusal: p.conf.FastFailoverOnRefusal,
		Transport:             config.Transport{KeepaliveTime: p.conf.KeepaliveTime, KeepaliveTimeout: p.conf.KeepaliveTimeout},
		Operators:             []string{operatorName},
		Join:                  p.conf.Join,
		FailBackAfter:         p.conf.FailBackAfter,
		ClusterID:             p.clusterID,
	}
	for _, q := range c.nodes {
		if p.conf.Peers == nil || slices.Contains(p.conf.Peers, q.name) {
			m := c.member(q.index)
			n.Peers = append(n.Peers, config.Peer{Name: q.name, Address: c.peerAddr(p.index, q.index), Witness: m.Witness, Priority: m.Priority})
		}
	}
	if p.conf.HeartbeatInterval != 0 {
		n.HeartbeatInterval = p.conf.HeartbeatInterval
	}
	if p.conf.ElectionTimeout != 0 {
		n.ElectionTimeout = p.conf.ElectionTimeout
	}
	return n.WriteFile(p.config)
}

// member is how node i is described as a member (witness, priority): as
// the scenario's configuration gave it when the run began, the same in
// every node's peer list.
func (c *cluster) member(i int) NodeConfig {
	if i < len(c.cfg.nodeConfig) {
		return c.cfg.nodeConfig[i]
	}
	return NodeConfig{}
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

// joinConfig sets node i to join the cluster clusterID, with o over its
// overrides, and rewrites its config file.
func (c *cluster) joinConfig(i int, clusterID string, o *NodeConfig) error {
	p := c.nodes[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if o != nil {
		p.conf = p.conf.merge(*o)
	}
	p.conf.Join, p.clusterID = true, clusterID
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
	if _, err := c.pc.Start(i); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	p := c.nodes[i]
	p.mu.Lock()
	p.rss.restart()
	p.mu.Unlock()
	return nil
}

// running returns the current process of node i, or nil once the cluster
// ended it (a process that exited by itself stays, Exited).
func (c *cluster) running(i int) *proccluster.Process { return c.pc.Process(i) }

// kill sends SIGKILL to node i and, once it is gone, appends the crash
// event the node cannot write itself, stamped after its death so that
// every event it wrote comes first.
func (c *cluster) kill(i int) error {
	if c.running(i) == nil {
		return nil
	}
	if err := c.pc.Kill(i); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	return c.pc.AppendCrash(i)
}

// terminate sends SIGTERM to node i and waits up to limit for a clean
// exit (a leader hands over first); after that it kills the node, records
// the crash, and returns an error.
func (c *cluster) terminate(i int, limit time.Duration) error {
	err := c.pc.Stop(i, limit)
	if errors.Is(err, proccluster.ErrKilled) {
		return errors.Join(fmt.Errorf("chaos: %w", err), c.pc.AppendCrash(i))
	}
	return err
}

// signalStop sends SIGSTOP (stop true) or SIGCONT to node i.
func (c *cluster) signalStop(i int, stop bool) error { return c.pc.Pause(i, stop) }

// isStopped reports whether node i is SIGSTOPped.
func (c *cluster) isStopped(i int) bool { return c.pc.Paused(i) }

// dumpStacks sends SIGQUIT to every running node (continuing stopped ones
// first) and waits up to limit for them to write their goroutines and exit.
func (c *cluster) dumpStacks(limit time.Duration) {
	var running []*proccluster.Process
	for i := range c.nodes {
		_ = c.signalStop(i, false)
		if e := c.running(i); e != nil && e.Signal(syscall.SIGQUIT) == nil {
			running = append(running, e)
		}
	}
	deadline := time.After(limit)
	for _, e := range running {
		select {
		case <-e.Done():
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

// Close kills what is left, stops the proxies and deletes the network.
func (c *cluster) Close() error {
	var errs []error
	for _, p := range c.proxy {
		p.Close()
	}
	errs = append(errs, c.pc.Close(), c.nw.Close())
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
func (c *cluster) stderrTail(i int, lines int) string { return c.pc.Tail(i, lines) }
