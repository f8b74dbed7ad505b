//go:build linux

package proccluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"go.uber.org/goleak"

	"github.com/raftelect/raftelect/config"
)

// The test binary doubles as the node program: with helperEnv set it runs
// the helper named there instead of the tests.
const helperEnv = "PROCCLUSTER_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(h))
	}
	goleak.VerifyTestMain(m)
}

// helper is a node stand-in: "wait" blocks until SIGTERM and exits 0;
// "ignore-term" ignores SIGTERM; "burn" spends CPU until SIGTERM.
func helper(mode string) int {
	term := make(chan os.Signal, 1)
	if mode == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}
	fmt.Println("helper up:", mode)
	limit := time.After(5 * time.Minute) // never outlive a lost test
	for {
		select {
		case <-term:
			fmt.Println("helper: SIGTERM")
			return 0
		case <-limit:
			return 3
		default:
			if mode != "burn" {
				select {
				case <-term:
					fmt.Println("helper: SIGTERM")
					return 0
				case <-limit:
					return 3
				}
			}
		}
	}
}

// newHelpers makes a cluster of n helper processes in mode (not started).
func newHelpers(t *testing.T, n int, mode string) *Cluster {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{
		Nodes: n,
		Args:  func(*Node) []string { return []string{exe} },
		Command: func(_ *Node, args []string) *exec.Cmd {
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = append(os.Environ(), helperEnv+"="+mode)
			return cmd
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// waitUp polls node i's log until the helper says it is up, so signals
// reach it after it installed its handlers.
func waitUp(t *testing.T, c *Cluster, i int) {
	t.Helper()
	err := Poll(context.Background(), 30*time.Second, 5*time.Millisecond, c.Node(i).Name+" up", func() error {
		b, _ := os.ReadFile(c.Node(i).Log)
		if !strings.Contains(string(b), "helper up") {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// procState is the state letter /proc shows for pid (R, S, T, Z...), or ""
// if there is no such process.
func procState(pid int) string {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return ""
	}
	st, err := p.Stat()
	if err != nil {
		return ""
	}
	return st.State
}

func TestStartKillRestartByPid(t *testing.T) {
	c := newHelpers(t, 3, "wait")
	pids := map[int]bool{}
	for i := range c.Nodes() {
		p, err := c.Start(i)
		if err != nil {
			t.Fatal(err)
		}
		pids[p.Pid] = true
		if _, err := c.Start(i); err == nil {
			t.Errorf("a second Start of %s while it runs succeeded", c.Node(i).Name)
		}
	}
	if len(pids) != 3 {
		t.Fatalf("pids %v", pids)
	}
	for i := range c.Nodes() {
		waitUp(t, c, i)
		if !c.Running(i) || procState(c.Process(i).Pid) == "" {
			t.Errorf("%s not running", c.Node(i).Name)
		}
	}
	old := c.Process(1)
	if err := c.Kill(1); err != nil {
		t.Fatal(err)
	}
	if c.Running(1) || c.Process(1) != nil || !old.Exited() || procState(old.Pid) != "" {
		t.Fatalf("after Kill: running %v, process %v, pid %d state %q", c.Running(1), c.Process(1), old.Pid, procState(old.Pid))
	}
	if s := old.State(); s == nil || s.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("killed process state %v", s)
	}
	p, err := c.Start(1)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid == old.Pid || !c.Running(1) {
		t.Errorf("restart: pid %d (old %d), running %v", p.Pid, old.Pid, c.Running(1))
	}
	if err := c.AppendCrash(1); err != nil {
		t.Fatal(err)
	}
	// Close kills the rest by pid and removes the directory it made.
	var all []*Process
	for i := range c.Nodes() {
		all = append(all, c.Process(i))
	}
	dir := c.Dir()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		if !p.Exited() || procState(p.Pid) != "" {
			t.Errorf("pid %d left running by Close", p.Pid)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left %s: %v", dir, err)
	}
	if _, err := c.Start(0); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestPauseAndStop(t *testing.T) {
	c := newHelpers(t, 1, "wait")
	if _, err := c.Start(0); err != nil {
		t.Fatal(err)
	}
	waitUp(t, c, 0)
	p := c.Process(0)
	if err := c.Pause(0, true); err != nil {
		t.Fatal(err)
	}
	if err := Poll(context.Background(), 10*time.Second, time.Millisecond, "stopped state", func() error {
		if s := procState(p.Pid); s != "T" {
			return fmt.Errorf("state %q", s)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !c.Paused(0) {
		t.Error("Paused is false after Pause")
	}
	// Stop continues a paused process first; this one exits 0 on SIGTERM.
	if err := c.Stop(0, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if p.ExitCode() != 0 || c.Running(0) || c.Paused(0) {
		t.Errorf("after Stop: exit %d, running %v, paused %v", p.ExitCode(), c.Running(0), c.Paused(0))
	}
	if b, _ := os.ReadFile(c.Node(0).Log); !strings.Contains(string(b), "helper: SIGTERM") {
		t.Errorf("log:\n%s", b)
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	c := newHelpers(t, 1, "ignore-term")
	if _, err := c.Start(0); err != nil {
		t.Fatal(err)
	}
	waitUp(t, c, 0)
	p := c.Process(0)
	err := c.Stop(0, 200*time.Millisecond)
	if !errors.Is(err, ErrKilled) {
		t.Fatalf("Stop of a process that ignores SIGTERM: %v", err)
	}
	if !p.Exited() || c.Running(0) {
		t.Error("still running after Stop")
	}
}

func TestStopAllStopsEveryProcess(t *testing.T) {
	c := newHelpers(t, 3, "wait")
	for i := range c.Nodes() {
		if _, err := c.Start(i); err != nil {
			t.Fatal(err)
		}
		waitUp(t, c, i)
	}
	stopped := c.StopAll(30*time.Second, nil)
	if len(stopped) != 3 {
		t.Fatalf("stopped %d", len(stopped))
	}
	for i, p := range stopped {
		if p.ExitCode() != 0 || c.Running(i) {
			t.Errorf("%s: exit %d", c.Node(i).Name, p.ExitCode())
		}
	}
}

// TestCPUCountsEveryProcessOfASlot: the CPU time of a slot adds the ended
// processes (from the kernel's rusage) and the running one (from /proc).
func TestCPUCountsEveryProcessOfASlot(t *testing.T) {
	c := newHelpers(t, 1, "burn")
	if _, err := c.Start(0); err != nil {
		t.Fatal(err)
	}
	waitUp(t, c, 0)
	if err := Poll(context.Background(), time.Minute, 10*time.Millisecond, "CPU time of a busy process", func() error {
		if cpu := c.CPU(0); cpu < 50*time.Millisecond {
			return fmt.Errorf("%v", cpu)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	u, err := c.Usage(0)
	if err != nil {
		t.Fatal(err)
	}
	if u.RSS == 0 || u.RSSAnon == 0 || u.RSS < u.RSSAnon {
		t.Errorf("usage %+v", u)
	}
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	first := c.CPU(0)
	if first < 50*time.Millisecond {
		t.Fatalf("CPU after kill %v: the ended process is not counted", first)
	}
	if _, err := c.Usage(0); err == nil {
		t.Error("Usage of a slot with nothing running succeeded")
	}
	if _, err := c.Start(0); err != nil {
		t.Fatal(err)
	}
	waitUp(t, c, 0)
	if err := Poll(context.Background(), time.Minute, 10*time.Millisecond, "CPU time of the second process added", func() error {
		if cpu := c.CPU(0); cpu < first+50*time.Millisecond {
			return fmt.Errorf("%v, first process %v", cpu, first)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rx, tx, err := NetDev(os.Getpid(), "lo")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lo: rx %d tx %d bytes", rx, tx)
}

// TestConfigsAndCertsLoad: what WriteCerts and WriteConfig write is a
// configuration `raftelect run` accepts.
func TestConfigsAndCertsLoad(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Options{Nodes: 3, Dir: dir, Binary: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteCerts(time.Hour, func(*Node) []string { return []string{"127.0.0.1"} }); err != nil {
		t.Fatal(err)
	}
	var peers []config.Peer
	for i, n := range c.Nodes() {
		peers = append(peers, config.Peer{Name: n.Name, Address: fmt.Sprintf("127.0.0.1:%d", 7001+i)})
	}
	for _, n := range c.Nodes() {
		cfg := &config.Node{Name: n.Name, Peers: peers, TLS: n.TLS, DataDir: n.DataDir, EventLog: n.Events,
			HeartbeatInterval: config.Duration(100 * time.Millisecond), ElectionTimeout: config.Duration(time.Second)}
		if err := c.WriteConfig(n, cfg); err != nil {
			t.Fatal(err)
		}
		got, err := config.Load(n.Config, config.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := got.Credentials(); err != nil {
			t.Errorf("%s: %v", n.Name, err)
		}
		if got.TLS.CertFile != filepath.Join(dir, "tls", n.Name+".crt") || got.EventLog != n.Events {
			t.Errorf("%s: %+v", n.Name, got)
		}
	}
	// A start that cannot exec fails and leaves nothing behind.
	if _, err := c.Start(0); err == nil || c.Running(0) {
		t.Errorf("start of a missing binary: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Node(0).Config); err != nil {
		t.Errorf("Close removed a directory it did not make: %v", err)
	}
}

func TestPollSaysWhatItWaitedFor(t *testing.T) {
	calls := 0
	err := Poll(context.Background(), 30*time.Millisecond, time.Millisecond, "the thing", func() error {
		calls++
		return errors.New("still not")
	})
	if err == nil || !strings.Contains(err.Error(), "the thing: not within 30ms: still not") || calls < 2 {
		t.Errorf("Poll: %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Poll(ctx, time.Hour, time.Millisecond, "x", func() error { return errors.New("no") }); !errors.Is(err, context.Canceled) {
		t.Errorf("Poll after cancel: %v", err)
	}
	n := 0
	if err := Poll(context.Background(), time.Hour, time.Millisecond, "x", func() error {
		if n++; n < 3 {
			return errors.New("no")
		}
		return nil
	}); err != nil || n != 3 {
		t.Errorf("Poll: %v after %d calls", err, n)
	}
}
