//go:build unix

// Package proccluster launches clusters of node processes: the demo, the
// chaos harness and the end-to-end and restart tests all run theirs with
// it. A Cluster is N node slots (n1..nN) whose files live in one
// directory: a development CA and a certificate per node (WriteCerts), a
// config file per node (WriteConfig), a log (stdout and stderr, appended
// across restarts) and an event log. Each slot runs one process at a time;
// the cluster keeps its pid and stops, kills, pauses or restarts it by that
// pid only, reads its CPU time and memory from /proc (prometheus/procfs),
// and on Close kills whatever it started that still runs and removes the
// directory it made.
//
// Processes are started from one goroutine locked to its OS thread for
// the cluster's life, because the parent-death signal the kernel delivers
// is tied to the thread that forked the child, not to the process: a child
// forked from a thread that later exits (netns.Network.Do retires its
// threads) would be signalled then, silently.
package proccluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/eventlog"
)

// KillWait bounds how long Kill waits for a process to be gone after
// SIGKILL. The kernel ends a killed process at once; only a machine in
// trouble takes longer, and that is an error worth reporting.
const KillWait = 10 * time.Second

// Options describe a cluster.
type Options struct {
	// Nodes is the number of node slots, named n1..nN. Required.
	Nodes int
	// Dir holds every file of the cluster. Empty: a new temporary
	// directory, removed by Close unless Keep.
	Dir  string
	Keep bool
	// Binary is the executable every node runs. Required unless Args
	// names another.
	Binary string
	// Args is the command line of node n's process, program first.
	// Default: Binary run --config <n.Config>.
	Args func(n *Node) []string
	// Command makes the exec.Cmd for node n from its command line, for
	// instance one that runs it inside a network namespace
	// (netns.Network.Command). Default: exec.Command. The cluster sets
	// the command's output and, unless the command set its own,
	// SysProcAttr.
	Command func(n *Node, args []string) *exec.Cmd
	// OwnGroup starts every process in its own process group, so that a
	// Ctrl-C on the terminal reaches the launcher only, which then stops
	// the nodes itself.
	OwnGroup bool
	// ParentDeathSignal is what the kernel sends a node when the
	// launching thread dies (Linux only): SIGKILL if zero, so that a
	// crashed test or demo leaves nothing running.
	ParentDeathSignal syscall.Signal
}

// Node is one slot: its files survive restarts of its process.
type Node struct {
	Index int
	Name  string
	// Config, Log, Events and DataDir are the paths of its config file,
	// its output, its event log and its data directory: nN.yaml, nN.log,
	// nN.events and nN.data in the cluster's directory unless the caller
	// sets others before the slot's first Start.
	Config  string
	Log     string
	Events  string
	DataDir string
	// TLS names its CA, certificate and key once WriteCerts wrote them.
	TLS config.TLS

	mu     sync.Mutex
	proc   *Process
	paused bool
	// cpuDone is the CPU time of this slot's processes that have ended.
	cpuDone time.Duration
}

// Process is one started process of a slot.
type Process struct {
	Pid     int
	Started time.Time

	os    *os.Process
	done  chan struct{}
	state *os.ProcessState // set before done closes
}

// Done is closed once the process has exited and been waited for.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited and been waited for.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// State is how the process ended; nil while it runs.
func (p *Process) State() *os.ProcessState {
	if !p.Exited() {
		return nil
	}
	return p.state
}

// ExitCode is the process's exit code, or -1 while it runs or if a signal
// ended it.
func (p *Process) ExitCode() int {
	if s := p.State(); s != nil {
		return s.ExitCode()
	}
	return -1
}

// Signal sends sig to the process by its pid; a process already waited for
// is not an error.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.os.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("proccluster: %v to pid %d: %w", sig, p.Pid, err)
	}
	return nil
}

// Cluster is the node slots and the processes started in them.
type Cluster struct {
	o       Options
	dir     string
	ownDir  bool
	nodes   []*Node
	starts  chan func()
	stopped chan struct{}
	starter sync.Once // starts the starter goroutine, at the first Start
	once    sync.Once
}

// New makes the slots (and the directory, if Options.Dir is empty); it
// writes no file and starts no process. Close undoes it; a cluster only
// used to write files (no Start) needs no Close unless New made its
// directory.
func New(o Options) (*Cluster, error) {
	if o.Nodes < 1 {
		return nil, fmt.Errorf("proccluster: %d nodes", o.Nodes)
	}
	if o.Args == nil && o.Binary == "" {
		return nil, errors.New("proccluster: Options.Binary or Options.Args is required")
	}
	if o.ParentDeathSignal == 0 {
		o.ParentDeathSignal = syscall.SIGKILL
	}
	c := &Cluster{o: o, dir: o.Dir, starts: make(chan func()), stopped: make(chan struct{})}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "raftelect-cluster-")
		if err != nil {
			return nil, err
		}
		c.dir, c.ownDir = d, !o.Keep
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	for i := range o.Nodes {
		name := fmt.Sprintf("n%d", i+1)
		c.nodes = append(c.nodes, &Node{
			Index:   i,
			Name:    name,
			Config:  filepath.Join(c.dir, name+".yaml"),
			Log:     filepath.Join(c.dir, name+".log"),
			Events:  filepath.Join(c.dir, name+".events"),
			DataDir: filepath.Join(c.dir, name+".data"),
		})
	}
	return c, nil
}

// Dir is the cluster's directory.
func (c *Cluster) Dir() string { return c.dir }

// Nodes returns the slots, by index.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns slot i.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// ByName returns the slot named name, or nil.
func (c *Cluster) ByName(name string) *Node {
	for _, n := range c.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// WriteCerts makes a development CA valid for validFor and a certificate
// for every node, valid for the hosts hosts(n) returns, in Dir()/tls, and
// sets each node's TLS. It returns the CA, for operator certificates.
func (c *Cluster) WriteCerts(validFor time.Duration, hosts func(n *Node) []string) (*certs.CA, error) {
	ca, err := certs.NewCA("raftelect development CA", validFor)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.dir, "tls")
	for _, n := range c.nodes {
		f, err := ca.WriteNode(dir, n.Name, hosts(n), validFor)
		if err != nil {
			return nil, fmt.Errorf("proccluster: certificate of %s: %w", n.Name, err)
		}
		n.TLS = config.TLS{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}
	}
	return ca, nil
}

// WriteConfig writes cfg as node n's config file; its process reads it at
// its next start.
func (c *Cluster) WriteConfig(n *Node, cfg *config.Node) error {
	return cfg.WriteFile(n.Config)
}

// Start starts a process in slot i. It fails if the slot's last process
// still runs.
func (c *Cluster) Start(i int) (*Process, error) {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.Exited() {
		return nil, fmt.Errorf("proccluster: %s is already running (pid %d)", n.Name, n.proc.Pid)
	}
	out, err := os.OpenFile(n.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	args := []string{c.o.Binary, "run", "--config", n.Config}
	if c.o.Args != nil {
		args = c.o.Args(n)
	}
	var cmd *exec.Cmd
	if c.o.Command != nil {
		cmd = c.o.Command(n, args)
	} else {
		cmd = exec.Command(args[0], args[1:]...)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = c.o.OwnGroup
	setParentDeathSignal(cmd.SysProcAttr, c.o.ParentDeathSignal)
	errc := make(chan error, 1)
	c.starter.Do(func() {
		select {
		case <-c.stopped:
		default:
			go c.startLoop()
		}
	})
	select {
	case c.starts <- func() { errc <- cmd.Start() }:
	case <-c.stopped:
		return nil, fmt.Errorf("proccluster: start %s: cluster closed", n.Name)
	}
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("proccluster: start %s: %w", n.Name, err)
	}
	p := &Process{Pid: cmd.Process.Pid, Started: time.Now(), os: cmd.Process, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		n.mu.Lock()
		p.state = cmd.ProcessState
		n.cpuDone += p.state.UserTime() + p.state.SystemTime()
		close(p.done) // under n.mu: CPU counts this process once
		n.mu.Unlock()
	}()
	n.proc, n.paused = p, false
	return p, nil
}

// Process returns slot i's current process: the last one started, unless
// Kill or Stop ended it (a process that exited by itself stays, so that
// the caller can see it did); nil if none.
func (c *Cluster) Process(i int) *Process {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Running reports whether slot i has a process that has not exited.
func (c *Cluster) Running(i int) bool {
	p := c.Process(i)
	return p != nil && !p.Exited()
}

// forget drops p as slot i's process, once it has exited.
func (c *Cluster) forget(i int, p *Process) {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == p {
		n.proc, n.paused = nil, false
	}
}

// Kill sends SIGKILL to slot i's process and waits up to KillWait for it
// to be gone. Nothing running is not an error.
func (c *Cluster) Kill(i int) error {
	p := c.Process(i)
	if p == nil {
		return nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(KillWait):
		return fmt.Errorf("proccluster: %s (pid %d) still alive %v after SIGKILL", c.nodes[i].Name, p.Pid, KillWait)
	}
	c.forget(i, p)
	return nil
}

// ErrKilled is returned by Stop when the process did not stop within its
// grace period after SIGTERM and was killed.
var ErrKilled = errors.New("did not stop after SIGTERM; killed it")

// Stop sends SIGTERM to slot i's process (continuing it first if paused)
// and waits up to grace for it to exit; then it kills it and returns an
// error wrapping ErrKilled.
func (c *Cluster) Stop(i int, grace time.Duration) error {
	p := c.Process(i)
	if p == nil {
		return nil
	}
	if err := c.Pause(i, false); err != nil {
		return err
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		c.forget(i, p)
		return nil
	case <-t.C:
	}
	if err := c.Kill(i); err != nil {
		return err
	}
	return fmt.Errorf("proccluster: %s (pid %d) %w (within %v)", c.nodes[i].Name, p.Pid, ErrKilled, grace)
}

// StopAll sends SIGTERM to every running process at once and waits up to
// grace for them all, or until abort is closed or receives; then it kills
// those left. It returns the processes it stopped, by slot.
func (c *Cluster) StopAll(grace time.Duration, abort <-chan os.Signal) map[int]*Process {
	stopped := map[int]*Process{}
	for i := range c.nodes {
		if p := c.Process(i); p != nil && !p.Exited() {
			_ = c.Pause(i, false)
			_ = p.Signal(syscall.SIGTERM)
			stopped[i] = p
		}
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	for i, p := range stopped {
		select {
		case <-p.done:
			c.forget(i, p)
			continue
		case <-t.C:
		case <-abort:
		}
		break
	}
	for i := range stopped {
		_ = c.Kill(i)
	}
	return stopped
}

// Pause sends SIGSTOP (pause true) or SIGCONT to slot i's process; it does
// nothing if the process is already so.
func (c *Cluster) Pause(i int, pause bool) error {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.paused == pause {
		return nil
	}
	sig := syscall.SIGCONT
	if pause {
		sig = syscall.SIGSTOP
	}
	if err := n.proc.Signal(sig); err != nil {
		return err
	}
	n.paused = pause
	return nil
}

// Paused reports whether slot i's process is SIGSTOPped.
func (c *Cluster) Paused(i int) bool {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// KillAll kills every running process and waits for each.
func (c *Cluster) KillAll() error {
	var errs []error
	for i := range c.nodes {
		if p := c.Process(i); p != nil {
			_ = p.Signal(syscall.SIGKILL) // all at once, then wait
		}
	}
	for i := range c.nodes {
		errs = append(errs, c.Kill(i))
	}
	return errors.Join(errs...)
}

// AppendCrash appends to node i's event log the crash event a killed node
// cannot write itself, stamped now: call it after the process is gone, so
// that every event it wrote comes first.
func (c *Cluster) AppendCrash(i int) error {
	w, err := eventlog.Create(c.nodes[i].Events)
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Write(eventlog.Event{Mono: eventlog.Now(), Node: c.nodes[i].Name, Kind: eventlog.KindCrash})
}

// Tail returns the last lines of node i's log.
func (c *Cluster) Tail(i, lines int) string {
	b, err := os.ReadFile(c.nodes[i].Log)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// LogSize is the size of node i's log now.
func (c *Cluster) LogSize(i int) int64 {
	st, err := os.Stat(c.nodes[i].Log)
	if err != nil {
		return 0
	}
	return st.Size()
}

// LogSince returns how many bytes and lines node i's log gained after
// offset from.
func (c *Cluster) LogSince(i int, from int64) (n int64, lines int) {
	f, err := os.Open(c.nodes[i].Log)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0, 0
	}
	buf := make([]byte, 64<<10)
	for {
		k, err := f.Read(buf)
		n += int64(k)
		lines += bytes.Count(buf[:k], []byte{'\n'})
		if err != nil {
			return n, lines
		}
	}
}

// startLoop runs start requests on a thread that lives until Close.
func (c *Cluster) startLoop() {
	runtime.LockOSThread() // never unlocked: see the package doc
	for {
		select {
		case f := <-c.starts:
			f()
		case <-c.stopped:
			return
		}
	}
}

// Close kills every process still running, by pid, waits for them, and
// removes the directory if New made it (and Keep is false).
func (c *Cluster) Close() error {
	var err error
	c.once.Do(func() {
		err = c.KillAll()
		close(c.stopped)
		if c.ownDir {
			err = errors.Join(err, os.RemoveAll(c.dir))
		}
	})
	return err
}

// Poll calls cond every interval until it returns nil, ctx ends or limit
// passes; it returns nil, or an error that says what and wraps cond's
// last error. It is how callers wait for a condition of the cluster
// instead of sleeping.
func Poll(ctx context.Context, limit, interval time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(limit)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v: %w", what, limit, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Build compiles the main package pkg (an import path, or a directory
// such as ".") into a new temporary directory, once per test binary, for
// the clusters a package's tests start. remove deletes the directory.
func Build(pkg, name string) (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "raftelect-bin-")
	if err != nil {
		return "", nil, err
	}
	remove = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		remove()
		return "", nil, fmt.Errorf("proccluster: go build %s: %w", pkg, err)
	}
	return path, remove, nil
}
