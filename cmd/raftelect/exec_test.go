//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftelect/raftelect/election"
)

// The exit behaviour of exec's command, on execWork directly (the lease is
// simulated by a context); the cluster test below runs the real thing.

func newTestExecWork(t *testing.T, grace time.Duration, script string) *execWork {
	t.Helper()
	args := []string{"sh", "-c", script}
	path, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	w := &execWork{
		path: path, args: args, node: "n2", grace: grace,
		log:    slog.New(slog.DiscardHandler),
		stdout: os.Stderr, stderr: os.Stderr, stopCh: make(chan struct{}),
	}
	// As the exec command does when it returns: the watchdog process and
	// the goroutine that waits for it end with the test.
	t.Cleanup(w.closeWatchdog)
	return w
}

func runWithin(t *testing.T, limit time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("not done within %v", limit)
		return nil
	}
}

func TestExecCommandGetsTokenLeaderAndNode(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	t.Setenv("OUT", out)
	w := newTestExecWork(t, time.Second, `echo "$RAFTELECT_FENCING_TOKEN $RAFTELECT_LEADER $RAFTELECT_NODE" > "$OUT"`)
	lease := election.Lease{Holder: "n2", Token: 7, Start: time.Now()}
	if err := runWithin(t, 10*time.Second, func() error { return w.run(context.Background(), lease) }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "7 n2 n2\n" {
		t.Errorf("environment: %q, want token 7, leader n2, node n2", b)
	}
}

// Exit code 0 while leading: done until the next lease (run returns nil,
// which RunWhileLeader does not restart).
func TestExecCommandExitZeroIsNotRestartedUntilNextLease(t *testing.T) {
	w := newTestExecWork(t, time.Second, "exit 0")
	if err := runWithin(t, 10*time.Second, func() error { return w.run(context.Background(), election.Lease{Token: 1}) }); err != nil {
		t.Errorf("exit 0: run returned %v, want nil (not restarted)", err)
	}
}

// A non-zero exit while leading is an error: RunWhileLeader restarts it.
func TestExecCommandFailureIsRestarted(t *testing.T) {
	w := newTestExecWork(t, time.Second, "exit 3")
	err := runWithin(t, 10*time.Second, func() error { return w.run(context.Background(), election.Lease{Token: 1}) })
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("exit 3: run returned %v, want the exit error (restarted)", err)
	}
}

// When the lease ends, the command's processes get SIGTERM, and SIGKILL
// after the grace period if they ignore SIGTERM: with the process group
// alone and in a PID namespace. No timing target: a command that honours
// SIGTERM gets a grace (60s) far longer than the limit it must end within
// (30s); one that ignores it cannot end before its grace (500ms).
func TestExecLeaseEndTermsThenKillsProcessGroupAfterGrace(t *testing.T) {
	for _, tt := range []struct {
		name   string
		script string
		grace  time.Duration
		killed bool // needs SIGKILL
	}{
		{"honours SIGTERM", hostPid + `; echo $p > "$OUT"; sleep 1000 & wait`, time.Minute, false},
		{"ignores SIGTERM", `trap "" TERM; ` + hostPid + `; echo $p > "$OUT"; sleep 1000 & wait; sleep 1000`, 500 * time.Millisecond, true},
	} {
		for _, contain := range []containment{containGroup, containNamespace} {
			t.Run(tt.name+"/"+containName(contain), func(t *testing.T) {
				leaseEndTermsThenKills(t, contain, tt.script, tt.grace, tt.killed)
			})
		}
	}
}

// hostPid sets $p to the shell's pid as this test sees it: in a PID
// namespace $$ is the namespace's number, while /proc (the host's) names
// by /proc/self the process that opens it, here the shell itself.
const hostPid = `read -r p _ < /proc/self/stat`

func leaseEndTermsThenKills(t *testing.T, contain containment, script string, grace time.Duration, killed bool) {
	out := filepath.Join(t.TempDir(), "pid")
	t.Setenv("OUT", out)
	w := newTestExecWork(t, grace, script)
	if contain == containNamespace {
		inNamespace(t, w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.run(ctx, election.Lease{Token: 1}) }()
	var pid int
	eventually(t, 10*time.Second, "command writes its pid", func() error {
		b, err := os.ReadFile(out)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return fmt.Errorf("%q %v", b, err)
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	// The sleep is in the group too.
	eventually(t, 10*time.Second, "sleep started", func() error {
		if n := groupMembers(pid); n < 2 {
			return fmt.Errorf("%d processes in group %d", n, pid)
		}
		return nil
	})
	ended := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after the lease ended: %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not return within 30s after the lease ended (grace %v): SIGTERM did not end the command", grace)
	}
	if took := time.Since(ended); killed && took < grace {
		t.Errorf("stopped %v after the lease ended, before its grace of %v: the command ignores SIGTERM and needed SIGKILL", took, grace)
	}
	// SIGKILL has been sent to the group when run returns; the
	// sleep, orphaned, dies and is reaped a moment later.
	eventually(t, 10*time.Second, "no process left in the command's group", func() error {
		if n := liveGroupMembers(pid); n > 0 {
			return fmt.Errorf("%d processes still run in group %d", n, pid)
		}
		return nil
	})
}

// groupMembers counts the processes in process group pgid, zombies too.
func groupMembers(pgid int) int { return countGroup(pgid, true) }

// liveGroupMembers counts the processes in process group pgid that have not
// exited (zombies await their reaper; they run nothing).
func liveGroupMembers(pgid int) int { return countGroup(pgid, false) }

func countGroup(pgid int, zombies bool) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && (zombies || f[0] != "Z") {
			n++
		}
	}
	return n
}

// execProc is one `raftelect exec` process of the cluster test.
type execProc struct {
	*localNode
	out  string // where its command writes
	cmd  *exec.Cmd
	done chan struct{}
}

// commandLine is one line the test's command writes: start or stop, the
// token, its pid and the time in nanoseconds.
type commandLine struct {
	what        string
	token       uint64
	pid         int
	at          int64
	leader, env string
}

func (p *execProc) lines(t *testing.T) []commandLine {
	t.Helper()
	b, err := os.ReadFile(p.out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ls []commandLine
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) != 6 {
			continue // being written
		}
		tok, _ := strconv.ParseUint(f[1], 10, 64)
		pid, _ := strconv.Atoi(f[2])
		at, _ := strconv.ParseInt(f[3], 10, 64)
		ls = append(ls, commandLine{f[0], tok, pid, at, f[4], f[5]})
	}
	return ls
}

// TestExecRunsCommandOnlyOnLeaderAndMovesItWithLeadership: three nodes, each
// `raftelect exec -- sh -c ...`; exactly the leader's command runs, with the
// term as its token; SIGTERM on the leader's exec stops its command before
// leadership moves, and the new leader's command starts with a higher token.
func TestExecRunsCommandOnlyOnLeaderAndMovesItWithLeadership(t *testing.T) {
	dir := t.TempDir()
	lc, err := writeLocalCluster(dir, 3, 100*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const script = hostPid + `
echo "start $RAFTELECT_FENCING_TOKEN $p $(date +%s%N) $RAFTELECT_LEADER $RAFTELECT_NODE" >> "$OUT"
trap 'echo "stop $RAFTELECT_FENCING_TOKEN $p $(date +%s%N) $RAFTELECT_LEADER $RAFTELECT_NODE" >> "$OUT"; exit 0' TERM
sleep 1000 & wait`
	var procs []*execProc
	for _, n := range lc.nodes {
		p := &execProc{localNode: n, out: filepath.Join(dir, n.name+".out"), done: make(chan struct{})}
		logf, err := os.Create(n.log)
		if err != nil {
			t.Fatal(err)
		}
		p.cmd = exec.Command(binary, "exec", "--config", n.config, "--grace", "5s", "--", "sh", "-c", script)
		p.cmd.Env = append(os.Environ(), "OUT="+p.out)
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = p.cmd.Wait(); logf.Close(); close(p.done) }()
		procs = append(procs, p)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			_ = p.cmd.Process.Kill()
			<-p.done
			// Their commands die with them (parent-death signal); make sure.
			for _, l := range p.lines(t) {
				_ = syscall.Kill(-l.pid, syscall.SIGKILL)
			}
			if t.Failed() {
				b, _ := os.ReadFile(p.log)
				o, _ := os.ReadFile(p.out)
				t.Logf("log of %s:\n%s\ncommand output of %s:\n%s", p.name, b, p.name, o)
			}
		}
	})
	status := func() statusReport {
		r := raftelect(t, "status", "--config", lc.nodes[0].config, "-o", "json")
		var rep statusReport
		if r.code == 0 {
			_ = json.Unmarshal([]byte(r.stdout), &rep)
		}
		return rep
	}

	// Exactly the leader's command runs, with the leader's term as token.
	var leader *execProc
	var first commandLine
	eventually(t, 30*time.Second, "the leader's command runs, and only it", func() error {
		rep := status()
		if !rep.Agreed {
			return errors.New("no agreed leader yet")
		}
		for _, p := range procs {
			ls := p.lines(t)
			if p.name != rep.Leader {
				if len(ls) > 0 {
					return fmt.Errorf("follower %s ran its command: %v", p.name, ls)
				}
				continue
			}
			if len(ls) != 1 || ls[0].what != "start" {
				return fmt.Errorf("leader %s: command lines %v", p.name, ls)
			}
			leader, first = p, ls[0]
		}
		if first.token != rep.Term || first.leader != leader.name || first.env != leader.name {
			return fmt.Errorf("command of %s got token %d leader %s node %s; status: term %d leader %s",
				leader.name, first.token, first.leader, first.env, rep.Term, rep.Leader)
		}
		return nil
	})
	if err := syscall.Kill(first.pid, 0); err != nil {
		t.Fatalf("the leader's command (pid %d) is not running: %v", first.pid, err)
	}

	// SIGTERM the leader's exec: its command stops first, then leadership
	// moves and the new leader's command starts with a higher token.
	if err := leader.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var stopped, second commandLine
	var next *execProc
	eventually(t, 30*time.Second, "command stopped on the old leader, started on a new one", func() error {
		ls := leader.lines(t)
		if len(ls) != 2 || ls[1].what != "stop" || ls[1].pid != first.pid {
			return fmt.Errorf("old leader %s: command lines %v", leader.name, ls)
		}
		stopped = ls[1]
		for _, p := range procs {
			if p == leader {
				continue
			}
			if ls := p.lines(t); len(ls) > 0 {
				if next != nil {
					return fmt.Errorf("both %s and %s ran the command", next.name, p.name)
				}
				next, second = p, ls[0]
			}
		}
		if next == nil {
			return errors.New("no new leader ran the command yet")
		}
		return nil
	})
	select {
	case <-leader.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the old leader's exec did not exit after SIGTERM")
	}
	if code := leader.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exec exit code %d after SIGTERM, want 0", code)
	}
	if n := liveGroupMembers(first.pid); n > 0 {
		t.Errorf("%d processes of the old leader's command (group %d) still run", n, first.pid)
	}
	if second.what != "start" || second.token <= first.token || second.leader != next.name {
		t.Errorf("new leader %s: %+v; want a start with a token above %d", next.name, second, first.token)
	}
	if second.at < stopped.at {
		t.Errorf("the new leader's command started %v before the old one stopped", time.Duration(stopped.at-second.at))
	}
	t.Logf("command moved %s (token %d) -> %s (token %d); gap between stop and start %v",
		leader.name, first.token, next.name, second.token, time.Duration(second.at-stopped.at))
	if rep := status(); rep.Leader != "" && rep.Leader != next.name {
		t.Errorf("status names %s the leader, but %s ran the command", rep.Leader, next.name)
	}
}

// A lease can end and the next begin (the same term, after late
// heartbeat acknowledgements, or a new one) while the last command is
// still in its grace period: RunWhileLeader starts the new run at once.
// The new command must wait until the old one is gone (never two copies
// on one node), and stop must still find and end it.
func TestExecNextLeaseWaitsForTheLastCommandAndStopEndsIt(t *testing.T) {
	out := filepath.Join(t.TempDir(), "runs")
	t.Setenv("OUT", out)
	// Ignores SIGTERM (its sleep too, as ignored signals are inherited), so
	// only SIGKILL after the grace ends it.
	w := newTestExecWork(t, time.Second, `trap "" TERM; `+hostPid+`; echo "$RAFTELECT_FENCING_TOKEN $p" >> "$OUT"; sleep 1000`)
	pidOf := func(token string) int {
		b, _ := os.ReadFile(out)
		for l := range strings.Lines(string(b)) {
			if f := strings.Fields(l); len(f) == 2 && f[0] == token && strings.HasSuffix(l, "\n") {
				pid, _ := strconv.Atoi(f[1])
				return pid
			}
		}
		return 0
	}
	alive := func(pid int) bool {
		state, _, ok := procState(pid)
		return ok && state != "Z"
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- w.run(ctx1, election.Lease{Token: 1}) }()
	var pid1 int
	eventually(t, 10*time.Second, "the first command runs", func() error {
		if pid1 = pidOf("1"); pid1 == 0 {
			return errors.New("not recorded yet")
		}
		return nil
	})
	cancel1()
	done2 := make(chan error, 1)
	go func() { done2 <- w.run(context.Background(), election.Lease{Token: 2}) }()
	var pid2 int
	eventually(t, 30*time.Second, "the second command runs", func() error {
		if pid2 = pidOf("2"); pid2 == 0 {
			return errors.New("not recorded yet")
		}
		return nil
	})
	defer func() { _ = syscall.Kill(-pid2, syscall.SIGKILL) }()
	if alive(pid1) {
		_ = syscall.Kill(-pid1, syscall.SIGKILL)
		t.Errorf("the second command (pid %d) started while the first (pid %d) still ran", pid2, pid1)
	}
	if err := runWithin(t, 30*time.Second, func() error { return <-done1 }); err != nil {
		t.Errorf("first run: %v, want nil", err)
	}
	stopped := make(chan struct{})
	go func() { w.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("stop did not return")
	}
	// stop waits for the command: it has exited when stop returns (reaped,
	// as os/exec waits for it before stop returns).
	if alive(pid2) {
		t.Errorf("stop returned while the second command (pid %d) still ran", pid2)
	}
	if err := runWithin(t, 30*time.Second, func() error { return <-done2 }); err != nil {
		t.Errorf("second run: %v, want nil", err)
	}
}
