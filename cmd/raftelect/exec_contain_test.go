//go:build linux

package main

// Containment of exec's command: every process it starts ends when the
// lease ends, when the command exits, and when exec is killed with SIGKILL,
// also a grandchild that called setsid and whose parent exited (a daemon's
// double fork). The processes are real; each writes its own pid, and the
// test checks them by pid and start time in /proc.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftelect/raftelect/election"
)

func containName(c containment) string {
	if c == containGroup {
		return "group"
	}
	return string(c)
}

// namespaceSkipReason is why this host cannot run a command in a new PID
// namespace ("" if it can).
func namespaceSkipReason() string {
	if err := namespaceAvailable(binary); err != nil {
		return fmt.Sprintf("needs a new PID namespace, which this host does not allow (%v): run the tests as root, as CI does", err)
	}
	return ""
}

// inNamespace makes w run its command in a PID namespace, or skips.
func inNamespace(t *testing.T, w *execWork) {
	t.Helper()
	if r := namespaceSkipReason(); r != "" {
		t.Skip(r)
	}
	w.self, w.contain = binary, containNamespace
}

// treeEnv makes treeScript's processes record themselves in out. Each
// process runs $REC with its role as $0: it writes "role pid" (the pid as
// this test sees it, see hostPid) and becomes a sleep.
func treeEnv(out string) []string {
	return []string{"OUT=" + out, "REC=" + hostPid + `; echo "$0 $p" >> "$OUT"; exec sleep 1000`}
}

// treeScript starts a child, a grandchild, and a grandchild that calls
// setsid and whose parent exits at once (a daemon's double fork: it leaves
// the command's process group and session, and is orphaned).
const treeScript = `sh -c "$REC" child &
(setsid sh -c "$REC" setsid &)
sh -c 'sh -c "$REC" grandchild & wait' &
` + hostPid + `; echo "main $p" >> "$OUT"
wait`

var treeRoles = []string{"main", "child", "grandchild", "setsid"}

// recorded is one recorded process: its pid and its start time, so that a pid
// reused by another process is not taken for it.
type recorded struct {
	pid   int
	start string
}

// procState reads state and start time from /proc/PID/stat.
func procState(pid int) (state, start string, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", "", false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return "", "", false
	}
	return f[0], f[19], true
}

// alive: the process still runs (a zombie has exited).
func (p recorded) alive() bool {
	state, start, ok := procState(p.pid)
	return ok && start == p.start && state != "Z"
}

// waitTree waits until every role of treeScript has recorded itself in out
// and runs, and returns them by role.
func waitTree(t *testing.T, out string) map[string]recorded {
	t.Helper()
	procs := map[string]recorded{}
	eventually(t, 30*time.Second, "the command's processes run", func() error {
		b, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		for l := range strings.Lines(string(b)) {
			f := strings.Fields(l)
			if len(f) != 2 || !strings.HasSuffix(l, "\n") {
				continue
			}
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				return fmt.Errorf("line %q: %v", l, err)
			}
			if _, seen := procs[f[0]]; !seen {
				state, start, ok := procState(pid)
				if !ok || state == "Z" {
					return fmt.Errorf("%s (pid %d) recorded itself but does not run", f[0], pid)
				}
				procs[f[0]] = recorded{pid, start}
			}
		}
		for _, r := range treeRoles {
			if _, ok := procs[r]; !ok {
				return fmt.Errorf("%s has not started; recorded: %v", r, procs)
			}
		}
		return nil
	})
	return procs
}

// killLeft kills what survived (a failed test, or tree containment's
// survivor of a kill -9), by the pids it recorded, and waits until they
// are gone.
func killLeft(procs map[string]recorded) {
	for _, p := range procs {
		if p.alive() {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if len(survivors(procs)) == 0 {
			return
		}
	}
}

// survivors lists the roles still running.
func survivors(procs map[string]recorded) []string {
	var left []string
	for _, r := range treeRoles {
		if p, ok := procs[r]; ok && p.alive() {
			left = append(left, fmt.Sprintf("%s (pid %d)", r, p.pid))
		}
	}
	return left
}

// waitNoneLeft waits until none of procs runs except the roles in keep.
func waitNoneLeft(t *testing.T, procs map[string]recorded, keep []string, what string) {
	t.Helper()
	eventually(t, 10*time.Second, what, func() error {
		var left []string
		for _, r := range treeRoles {
			if p := procs[r]; !slices.Contains(keep, r) && p.alive() {
				left = append(left, fmt.Sprintf("%s (pid %d)", r, p.pid))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("still running: %s", strings.Join(left, ", "))
		}
		return nil
	})
}

// In a PID namespace, the lease's end ends every process of the command,
// the one that called setsid and was orphaned included.
func TestExecLeaseEndEndsEveryDescendantInNamespace(t *testing.T) {
	out := filepath.Join(t.TempDir(), "procs")
	w := newTestExecWork(t, 5*time.Second, treeScript)
	inNamespace(t, w)
	for _, e := range treeEnv(out) {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.run(ctx, election.Lease{Token: 1}) }()
	procs := waitTree(t, out)
	defer killLeft(procs)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after the lease ended: %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after the lease ended")
	}
	waitNoneLeft(t, procs, nil, "no process of the command left after the lease ended")
}

// In a PID namespace, a command that exits by itself leaves nothing
// running: the kernel kills what it started when the init exits with it.
func TestExecCommandExitEndsEveryDescendantInNamespace(t *testing.T) {
	out := filepath.Join(t.TempDir(), "procs")
	// The command waits (bounded) until all four have recorded themselves,
	// then exits 0 without waiting for them.
	script := strings.Replace(treeScript, "\nwait", `
i=0; while [ "$(wc -l < "$OUT")" -lt 4 ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done`, 1)
	w := newTestExecWork(t, 5*time.Second, script)
	inNamespace(t, w)
	for _, e := range treeEnv(out) {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	err := runWithin(t, 60*time.Second, func() error { return w.run(context.Background(), election.Lease{Token: 1}) })
	if err != nil {
		t.Errorf("command exited 0: run returned %v, want nil", err)
	}
	// All four were recorded before main exited; read them back.
	b, _ := os.ReadFile(out)
	if n := strings.Count(string(b), "\n"); n != 4 {
		t.Fatalf("recorded %d processes, want 4:\n%s", n, b)
	}
	// The processes are gone, so their start times cannot be read: any
	// process with a recorded pid would be a survivor (or a reused pid).
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		pid, _ := strconv.Atoi(f[1])
		if state, _, ok := procState(pid); ok && state != "Z" {
			if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.HasPrefix(string(cmdline), "sleep\x001000") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				t.Errorf("%s (pid %d) still runs after the command exited", f[0], pid)
			}
		}
	}
}

// execUnderTest is one `raftelect exec` process.
type execUnderTest struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	out  string // where its command's processes record themselves
}

func startExec(t *testing.T, config, contain, logPath, out, script string) *execUnderTest {
	t.Helper()
	args := []string{"exec", "--config", config, "--grace", "5s"}
	if contain != "" {
		args = append(args, "--contain", contain)
	}
	args = append(args, "--", "sh", "-c", script)
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	e := &execUnderTest{cmd: exec.Command(binary, args...), done: make(chan struct{}), log: logPath, out: out}
	e.cmd.Env = append(os.Environ(), treeEnv(out)...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.cmd.Wait(); logf.Close(); close(e.done) }()
	t.Cleanup(func() {
		e.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("log of %s:\n%s", logPath, b)
		}
	})
	return e
}

// stop ends exec as an operator would, SIGTERM, which ends its command
// (under tree containment a kill -9 would leave the setsid'd process), then
// kills whatever a failed test left: exec after a bounded wait, and the
// processes its command recorded, known by the OUT in their environment.
func (e *execUnderTest) stop(t *testing.T) {
	select {
	case <-e.done: // killed by the test
	default:
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-e.done:
		if st := e.cmd.ProcessState; !st.Success() && st.String() != "signal: killed" {
			t.Errorf("exec (pid %d) ended with %v after SIGTERM, want exit 0", e.cmd.Process.Pid, st)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("exec (pid %d) did not exit within 30s of SIGTERM", e.cmd.Process.Pid)
		_ = e.cmd.Process.Kill()
		<-e.done
	}
	b, _ := os.ReadFile(e.out)
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		pid, _ := strconv.Atoi(f[1])
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if state, _, ok := procState(pid); ok && state != "Z" && strings.Contains(string(env), "OUT="+e.out+"\x00") {
			t.Errorf("%s (pid %d) of %s's command still runs after exec stopped; killed", f[0], pid, e.out)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// watchdogOf finds the pid of exec's watchdog among its children.
func watchdogOf(t *testing.T, execPid int) int {
	t.Helper()
	var pid int
	eventually(t, 10*time.Second, "exec's watchdog runs", func() error {
		live, _ := processTree(execPid, nil)
		for _, p := range live {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			if strings.Contains(string(b), watchdogArg) {
				pid = p
				return nil
			}
		}
		return fmt.Errorf("no %s among exec's descendants %v", watchdogArg, live)
	})
	return pid
}

// TestExecKilledBySIGKILLEndsEveryDescendant: kill -9 of exec (a one-node
// cluster, which leads at once) while its command runs a child, a
// grandchild and a setsid'd orphan. In a PID namespace none survives, also
// when the watchdog is killed first (the kernel alone does it). Under tree
// containment the watchdog kills the process group; the setsid'd process,
// which left it, survives: the documented limit of the fallback.
func TestExecKilledBySIGKILLEndsEveryDescendant(t *testing.T) {
	for _, tc := range []struct {
		name         string
		contain      string
		killWatchdog bool
		survivor     []string
	}{
		{"namespace", "namespace", false, nil},
		{"namespace, watchdog killed first", "namespace", true, nil},
		{"tree", "tree", false, []string{"setsid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.contain == "namespace" {
				if r := namespaceSkipReason(); r != "" {
					t.Skip(r)
				}
			}
			dir := t.TempDir()
			lc, err := writeLocalCluster(dir, 1, 100*time.Millisecond, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "procs")
			e := startExec(t, lc.nodes[0].config, tc.contain, filepath.Join(dir, "exec.log"), out, treeScript)
			procs := waitTree(t, out)
			defer killLeft(procs)
			b, _ := os.ReadFile(e.log)
			if want := "command containment: " + map[string]string{"namespace": "PID namespace", "tree": "tree"}[tc.contain]; !strings.Contains(string(b), want) {
				t.Errorf("exec's log does not say %q", want)
			}
			if tc.killWatchdog {
				wd := watchdogOf(t, e.cmd.Process.Pid)
				if err := syscall.Kill(wd, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				eventually(t, 10*time.Second, "the watchdog is gone", func() error {
					if state, _, ok := procState(wd); ok && state != "Z" {
						return fmt.Errorf("watchdog %d: state %s", wd, state)
					}
					return nil
				})
			}
			if err := e.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-e.done
			waitNoneLeft(t, procs, tc.survivor, "no process of the command left after kill -9 of exec")
			for _, r := range tc.survivor {
				if !procs[r].alive() {
					t.Errorf("%s is gone: tree containment now follows it; update exec --help and docs/operations.md", r)
				}
			}
			t.Logf("after kill -9 of exec (--contain %s): still running: %v", tc.contain, survivors(procs))
		})
	}
}

// TestExecLosingLeaseEndsEveryDescendant: three nodes, each `raftelect
// exec`; the leader's command runs a child, a grandchild and a setsid'd
// orphan. `raftelect transfer` takes the lease away: every process of the
// old leader's command ends (tree containment too: exec, alive, adopted the
// orphan), while that exec keeps running as a follower.
func TestExecLosingLeaseEndsEveryDescendant(t *testing.T) {
	for _, contain := range []string{"namespace", "tree"} {
		t.Run(contain, func(t *testing.T) {
			if contain == "namespace" {
				if r := namespaceSkipReason(); r != "" {
					t.Skip(r)
				}
			}
			dir := t.TempDir()
			lc, err := writeLocalCluster(dir, 3, 100*time.Millisecond, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var execs []*execUnderTest
			for _, n := range lc.nodes {
				execs = append(execs, startExec(t, n.config, contain, n.log, filepath.Join(dir, n.name+".procs"), treeScript))
			}
			var leader *execUnderTest
			var leaderConfig string
			eventually(t, 30*time.Second, "one node leads and its command runs", func() error {
				r := raftelect(t, "status", "--config", lc.nodes[0].config, "-o", "json")
				var rep statusReport
				if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || !rep.Agreed {
					return errors.New("no agreed leader yet")
				}
				for i, n := range lc.nodes {
					if n.name == rep.Leader {
						leader, leaderConfig = execs[i], n.config
					}
				}
				if _, err := os.Stat(leader.out); err != nil {
					return err
				}
				return nil
			})
			procs := waitTree(t, leader.out)
			defer killLeft(procs)
			if r := raftelect(t, "transfer", "--config", leaderConfig); r.code != 0 {
				t.Fatalf("transfer: %+v", r)
			}
			waitNoneLeft(t, procs, nil, "no process of the old leader's command left after it lost the lease")
			select {
			case <-leader.done:
				t.Fatal("the old leader's exec exited; it should keep running as a follower")
			default:
			}
		})
	}
}

// In a PID namespace CMD's parent is process 1 of its namespace,
// raftelect's init, and its exit code, or 128 + the signal that killed it,
// is what exec sees.
func TestExecNamespaceCommandPidAndExitCodes(t *testing.T) {
	for _, tt := range []struct {
		script string
		code   int // 0: run returns nil
	}{
		{`echo $PPID > "$OUT"`, 0},
		{`echo $PPID > "$OUT"; exit 3`, 3},
		{`echo $PPID > "$OUT"; kill -KILL $$`, 128 + int(syscall.SIGKILL)},
	} {
		out := filepath.Join(t.TempDir(), "pid")
		t.Setenv("OUT", out)
		w := newTestExecWork(t, time.Second, tt.script)
		inNamespace(t, w)
		err := runWithin(t, 30*time.Second, func() error { return w.run(context.Background(), election.Lease{Token: 1}) })
		var ee *exec.ExitError
		switch {
		case tt.code == 0 && err != nil:
			t.Errorf("%s: run returned %v, want nil", tt.script, err)
		case tt.code != 0 && (!errors.As(err, &ee) || ee.ExitCode() != tt.code):
			t.Errorf("%s: run returned %v, want exit status %d", tt.script, err, tt.code)
		}
		if b, _ := os.ReadFile(out); string(b) != "1\n" {
			t.Errorf("%s: the command's parent is %q, want 1 (the namespace's init)", tt.script, b)
		}
	}
}

// TestExecWithoutPrivilegeFallsBackToTree runs exec as an unprivileged user
// (nobody), who cannot create a PID namespace: --contain namespace refuses
// to start and says why; auto falls back to tree, says so, and on SIGTERM
// still stops every process of CMD, the setsid'd orphan too.
func TestExecWithoutPrivilegeFallsBackToTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs exec as the unprivileged user 65534, which needs root to set up; CI runs as root")
	}
	const nobody = 65534
	dir := t.TempDir()
	// t.TempDir's parent is root's alone: let nobody through to dir.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	lc, err := writeLocalCluster(dir, 1, 100*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's directory is root's alone: a copy nobody can run.
	bin := filepath.Join(dir, "raftelect")
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, nobody, nobody)
	}); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) *exec.Cmd {
		c := exec.Command(bin, args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		return c
	}

	c := asNobody("exec", "--config", lc.nodes[0].config, "--contain", "namespace", "--", "true")
	outb, err := c.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure || !strings.Contains(string(outb), "cannot run the command in a new PID namespace") || !strings.Contains(string(outb), "--contain tree") {
		t.Errorf("--contain namespace as nobody: %v, output:\n%s\nwant exit 1 saying why and what to do", err, outb)
	}

	out := filepath.Join(dir, "procs")
	logPath := filepath.Join(dir, "exec.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	e := &execUnderTest{cmd: asNobody("exec", "--config", lc.nodes[0].config, "--grace", "5s", "--", "sh", "-c", treeScript), done: make(chan struct{})}
	e.cmd.Env = append(os.Environ(), treeEnv(out)...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.cmd.Wait(); logf.Close(); close(e.done) }()
	e.out = out
	defer func() {
		e.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("exec's log:\n%s", b)
		}
	}()
	procs := waitTree(t, out)
	defer killLeft(procs)
	lb, _ := os.ReadFile(logPath)
	for _, want := range []string{"falling back to --contain tree", "command containment: tree"} {
		if !strings.Contains(string(lb), want) {
			t.Errorf("exec's log does not say %q", want)
		}
	}
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		t.Fatal("exec did not exit after SIGTERM")
	}
	if code := e.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exec exit code %d after SIGTERM, want 0", code)
	}
	waitNoneLeft(t, procs, nil, "no process of the command left after exec stopped")
}

// An unknown --contain is a usage error (exit 2) that lists the choices,
// found before any configuration is read.
func TestExecUnknownContainIsUsageError(t *testing.T) {
	r := raftelect(t, "exec", "--config", "/nonexistent.yaml", "--contain", "cgroup", "--", "true")
	if r.code != exitUsage || !strings.Contains(r.stderr, `--contain "cgroup": want auto, namespace or tree`) {
		t.Errorf("--contain cgroup: exit %d, stderr %q; want exit 2 naming the choices", r.code, r.stderr)
	}
}

// threadedHelper records its pid in $OUT, starts a thread that sleeps, and
// ends its main thread: /proc then shows the process as a zombie (Z) with
// two threads, though it runs on.
const threadedHelper = `#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static void *sleeper(void *arg) { sleep(1000); return arg; }
int main(void) {
	FILE *f = fopen(getenv("OUT"), "a");
	if (!f) return 1;
	fprintf(f, "threaded %d\n", getpid());
	fclose(f);
	pthread_t t;
	if (pthread_create(&t, 0, sleeper, 0)) return 1;
	pthread_exit(0);
}
`

// TestExecTreeEndsAProcessWhoseMainThreadExited: under tree containment
// exec finds CMD's processes in /proc, where one whose main thread has
// exited shows Z although its other threads run. Started with setsid (out
// of CMD's process group, so only the walk can reach it), it must still
// end when exec stops.
func TestExecTreeEndsAProcessWhoseMainThreadExited(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("needs a C compiler (cc) to build a process whose main thread exits before its others; none here:", err)
	}
	dir := t.TempDir()
	src, helper := filepath.Join(dir, "threaded.c"), filepath.Join(dir, "threaded")
	if err := os.WriteFile(src, []byte(threadedHelper), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(cc, "-o", helper, src, "-lpthread").CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, b)
	}
	lc, err := writeLocalCluster(dir, 1, 100*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "procs")
	t.Setenv("HELPER", helper)
	e := startExec(t, lc.nodes[0].config, "tree", filepath.Join(dir, "exec.log"), out,
		`setsid "$HELPER" & `+hostPid+`; echo "main $p" >> "$OUT"; wait`)
	threads := func(pid int) (state string, n int) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return "", 0
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		n, _ = strconv.Atoi(f[17])
		return f[0], n
	}
	var pid int
	eventually(t, 30*time.Second, "the helper runs with its main thread ended", func() error {
		b, _ := os.ReadFile(out)
		for l := range strings.Lines(string(b)) {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "threaded" {
				pid, _ = strconv.Atoi(f[1])
			}
		}
		if pid == 0 {
			return errors.New("not recorded yet")
		}
		if st, n := threads(pid); st != "Z" || n != 2 {
			return fmt.Errorf("helper %d: state %q, %d threads; want Z with 2", pid, st, n)
		}
		return nil
	})
	defer func() {
		if st, n := threads(pid); st != "" && n > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}()
	e.stop(t)
	eventually(t, 10*time.Second, "the helper ended with exec's stop", func() error {
		if st, n := threads(pid); st != "" && (st != "Z" || n > 1) {
			return fmt.Errorf("helper %d still runs: state %s, %d threads", pid, st, n)
		}
		return nil
	})
}
