//go:build linux

package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxNodes is the most nodes one Network holds: they share one /24.
const MaxNodes = 250

// ErrClosed is returned by methods of a Network after Close.
var ErrClosed = errors.New("chaos: network is closed")

// Node is one member of a Network: its own network namespace with one
// interface, eth0, on the shared bridge.
type Node struct {
	Index int
	Name  string // name of the network namespace, as `ip netns list` shows it
	IP    netip.Addr
}

// Network is a bridge namespace plus one namespace per node. It is safe for
// concurrent use, except that Close must not run while a Command it returned
// is being started.
type Network struct {
	bridge string
	prefix netip.Prefix
	nodes  []Node

	mu     sync.Mutex
	cmds   []*exec.Cmd
	closed bool
}

// testHookCreated, when set, is called after each namespace New creates; an
// error from it makes New fail there, so tests can check the clean-up.
var testHookCreated func(ns string) error

// New creates a network of n nodes. On any failure it removes everything it
// created before returning the error.
func New(ctx context.Context, n int) (*Network, error) {
	if n < 1 || n > MaxNodes {
		return nil, fmt.Errorf("chaos: network of %d nodes: want 1 to %d", n, MaxNodes)
	}
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("chaos: random network name: %w", err)
	}
	base := fmt.Sprintf("re-%d-%x", os.Getpid(), r)
	nw := &Network{
		bridge: base + "-b",
		prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, r[0], r[1], 0}), 24),
	}
	for i := range n {
		nw.nodes = append(nw.nodes, Node{
			Index: i,
			Name:  fmt.Sprintf("%s-%d", base, i),
			IP:    netip.AddrFrom4([4]byte{10, r[0], r[1], byte(i + 1)}),
		})
	}
	var created []string
	if err := nw.build(ctx, &created); err != nil {
		var errs []error
		for i := len(created) - 1; i >= 0; i-- {
			if cerr := deleteNamespace(created[i]); cerr != nil {
				errs = append(errs, cerr)
			}
		}
		return nil, errors.Join(append([]error{err}, errs...)...)
	}
	return nw, nil
}

func (nw *Network) build(ctx context.Context, created *[]string) error {
	addNamespace := func(ns string) error {
		if err := ipCmd(ctx, "netns", "add", ns); err != nil {
			return err
		}
		*created = append(*created, ns)
		if testHookCreated != nil {
			if err := testHookCreated(ns); err != nil {
				return err
			}
		}
		return ipCmd(ctx, "-n", ns, "link", "set", "lo", "up")
	}
	b := nw.bridge
	if err := addNamespace(b); err != nil {
		return err
	}
	if err := ipCmd(ctx, "-n", b, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	if err := ipCmd(ctx, "-n", b, "link", "set", "br0", "up"); err != nil {
		return err
	}
	for _, node := range nw.nodes {
		if err := addNamespace(node.Name); err != nil {
			return err
		}
		// Created inside the bridge namespace with the peer placed straight
		// into the node's, so no interface ever appears in the host's
		// namespace, where its name could collide with someone else's.
		port := fmt.Sprintf("v%d", node.Index)
		if err := ipCmd(ctx, "-n", b, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", node.Name); err != nil {
			return err
		}
		if err := ipCmd(ctx, "-n", b, "link", "set", port, "master", "br0", "up"); err != nil {
			return err
		}
		addr := netip.PrefixFrom(node.IP, nw.prefix.Bits()).String()
		if err := ipCmd(ctx, "-n", node.Name, "addr", "add", addr, "dev", "eth0"); err != nil {
			return err
		}
		if err := ipCmd(ctx, "-n", node.Name, "link", "set", "eth0", "up"); err != nil {
			return err
		}
	}
	return nil
}

// Nodes returns the nodes, indexed by Node.Index.
func (nw *Network) Nodes() []Node {
	return append([]Node(nil), nw.nodes...)
}

// Prefix returns the /24 the nodes' addresses are in.
func (nw *Network) Prefix() netip.Prefix { return nw.prefix }

// Command returns a command that runs name in the namespace of the given
// node. `ip netns exec` execs the program, so cmd.Process is the program
// itself and signals (SIGKILL, SIGTERM, SIGSTOP, SIGCONT) reach it directly.
// The network remembers the command, and Close kills it by pid if it is
// still running then. The child also gets SIGKILL if the thread that started
// it dies, so a crashed test leaves nothing running in a namespace.
// An out-of-range node gives a command whose Start fails.
//
// Careful: that thread is whatever OS thread ran cmd.Start, and Do retires
// the threads it runs on. A command started from an ordinary goroutine can
// therefore be SIGKILLed, silently, by a later Do anywhere in the process.
// A caller that also uses Do must call Start from a goroutine locked to its
// thread (runtime.LockOSThread) for as long as the child should live, as
// internal/proccluster does for package chaos.
func (nw *Network) Command(ctx context.Context, node int, name string, args ...string) *exec.Cmd {
	ns := ""
	rangeErr := nw.check(node)
	if rangeErr == nil {
		ns = nw.nodes[node].Name
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	switch {
	case rangeErr != nil:
		cmd.Err = rangeErr
		return cmd
	case nw.closed:
		cmd.Err = ErrClosed
		return cmd
	}
	nw.cmds = append(nw.cmds, cmd)
	return cmd
}

// Do runs fn on an OS thread that has entered the node's network namespace.
// Sockets that fn opens (net.Listen, net.Dial with an IP literal) stay in
// that namespace for their whole life, whichever goroutine uses them later.
// Goroutines that fn starts do not run in the namespace. The thread is
// discarded afterwards rather than returned to the Go scheduler.
func (nw *Network) Do(node int, fn func() error) error {
	if err := nw.check(node); err != nil {
		return err
	}
	path := "/run/netns/" + nw.nodes[node].Name
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread exits with this goroutine, so no other
		// goroutine ever runs in the wrong namespace.
		runtime.LockOSThread()
		f, err := os.Open(path)
		if err != nil {
			done <- fmt.Errorf("chaos: open namespace of node %d: %w", node, err)
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			done <- fmt.Errorf("chaos: enter namespace of node %d: %w", node, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// Close kills the processes started from Command that are still running, by
// pid, and deletes exactly the namespaces New created. Calling it again does
// nothing and returns nil.
func (nw *Network) Close() error {
	nw.mu.Lock()
	if nw.closed {
		nw.mu.Unlock()
		return nil
	}
	nw.closed = true
	cmds := nw.cmds
	nw.cmds = nil
	nw.mu.Unlock()

	var errs []error
	for _, cmd := range cmds {
		if cmd.Process == nil {
			continue // never started
		}
		// os.Process is safe to use alongside the caller's Wait; one that has
		// already been waited for reports ErrProcessDone.
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("chaos: kill pid %d: %w", cmd.Process.Pid, err))
		}
	}
	for i := len(nw.nodes) - 1; i >= 0; i-- {
		if err := deleteNamespace(nw.nodes[i].Name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteNamespace(nw.bridge); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (nw *Network) check(node int) error {
	if node < 0 || node >= len(nw.nodes) {
		return fmt.Errorf("chaos: node %d out of range [0,%d)", node, len(nw.nodes))
	}
	return nil
}

func (nw *Network) checkOpen() error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.closed {
		return ErrClosed
	}
	return nil
}

// deleteNamespace removes a namespace this package created. It is not bound
// to a context: clean-up must run even after the caller's context ended.
func deleteNamespace(ns string) error {
	return ipCmd(context.Background(), "netns", "delete", ns)
}

func ipCmd(ctx context.Context, args ...string) error {
	_, err := run(ctx, nil, "ip", args...)
	return err
}

// run runs a command and returns its standard output; a failure's error
// carries what it wrote to standard error.
func run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("chaos: %s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(append(out, stderr.Bytes()...)))
	}
	return out, nil
}
