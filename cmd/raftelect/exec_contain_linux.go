package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Containment on Linux (see containment in exec.go for the order).
//
// In a PID namespace the kernel does the work: when process 1 of a
// namespace exits, however it exits, the kernel SIGKILLs every other
// process in it and reaps them before process 1's own exit can be waited
// for, so no setsid or double fork escapes. Process 1 is raftelect's own
// small init (runExecInit), not CMD, because process 1 of a namespace
// ignores every signal it has no handler for (CMD would not die of
// SIGTERM) and inherits every orphan (CMD would leave zombies).

// namespaceAvailable reports why exec cannot run its command in a new PID
// namespace, or nil if it can: it starts the init once, in a namespace of
// its own, and the init checks that it is process 1 there.
func namespaceAvailable(self string) error {
	if self == "" {
		return errors.New("the raftelect binary, which runs as the namespace's init, was not found")
	}
	cmd := exec.Command(self, execInitArg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if msg := bytes.TrimSpace(out.Bytes()); len(msg) > 0 {
			return fmt.Errorf("%v: %s", err, msg)
		}
		return err
	}
	return nil
}

// inNewPIDNamespace makes the process started with a its own PID namespace.
func inNewPIDNamespace(a *syscall.SysProcAttr) { a.Cloneflags |= syscall.CLONE_NEWPID }

// becomeSubreaper makes this process the reaper of its orphaned
// descendants: a process of CMD whose parent exits (a daemon's double
// fork) becomes exec's child instead of init's, so processTree still finds
// it while exec lives.
func becomeSubreaper() error { return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }

// procInfo is what processTree needs of /proc/PID/stat.
type procInfo struct {
	ppid   int
	zombie bool
}

func readProc(pid int) (procInfo, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procInfo{}, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 18 {
		return procInfo{}, false
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return procInfo{}, false
	}
	// A process whose main thread has exited shows Z while its other
	// threads run on (num_threads > 1): it is alive and must be killed.
	threads, _ := strconv.Atoi(string(f[17]))
	return procInfo{ppid: ppid, zombie: string(f[0]) == "Z" && threads <= 1}, true
}

// processTree lists the live descendants of root other than the processes
// in skip (and their descendants), and root's zombie children other than
// those in skip. exec calls it with its own pid: its only children are its
// command, its watchdog (skipped) and, as a subreaper, the orphans of its
// command.
func processTree(root int, skip map[int]bool) (live, zombies []int) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, nil
	}
	children := map[int][]int{}
	info := map[int]procInfo{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			info[pid] = p
			children[p.ppid] = append(children[p.ppid], pid)
		}
	}
	// Bounded: each pid is visited once, as a pid has one parent.
	todo := append([]int(nil), children[root]...)
	seen := map[int]bool{root: true}
	for len(todo) > 0 {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[pid] || skip[pid] {
			continue
		}
		seen[pid] = true
		if info[pid].zombie {
			if info[pid].ppid == root {
				zombies = append(zombies, pid)
			}
			continue
		}
		live = append(live, pid)
		todo = append(todo, children[pid]...)
	}
	return live, zombies
}

// reap collects the exit status of exec's orphaned descendants that have
// exited, so they do not stay zombies; pids os/exec waits for are in skip.
func reap(skip map[int]bool) {
	_, zombies := processTree(os.Getpid(), skip)
	for _, pid := range zombies {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	}
}

// notifyChildExit delivers SIGCHLD to c: an orphan of CMD exited.
func notifyChildExit(c chan<- os.Signal) { signal.Notify(c, syscall.SIGCHLD) }

// execInitArg, as the first argument, makes the raftelect binary run as
// the init of the PID namespace of exec's command (runExecInit).
const execInitArg = "__exec-init"

// runExecInit is process 1 of the command's PID namespace: it starts the
// command (args: path, then argv), passes on the signals exec sends to
// every process of the namespace, reaps orphans, and exits as the command
// exits, which makes the kernel kill whatever the command left. Without
// args it is exec's probe and exits 0.
func runExecInit(args []string) int {
	if os.Getpid() != 1 {
		fmt.Fprintf(os.Stderr, "raftelect %s: pid %d, not process 1 of a new PID namespace: only raftelect exec starts this\n", execInitArg, os.Getpid())
		return exitUsage
	}
	if len(args) < 2 {
		return exitOK
	}
	// Installed before the command starts, so no signal exec sends is lost
	// (process 1 drops signals it has no handler for).
	sigs := make(chan os.Signal, 8)
	forwarded := []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}
	signal.Notify(sigs, forwarded...)
	// In a process group of its own, as without a namespace; the init's
	// group (the one exec and the watchdog kill) is then the init alone.
	pid, err := syscall.ForkExec(args[0], args[1:], &syscall.ProcAttr{
		Env: os.Environ(), Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "raftelect exec: cannot start %s: %v\n", args[0], err)
		return 127
	}
	go func() {
		for s := range sigs {
			// -1: every process in the namespace but this one, including
			// those that left the command's process group.
			_ = syscall.Kill(-1, s.(syscall.Signal))
		}
	}()
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "raftelect exec: waiting for %s: %v\n", args[0], err)
			return exitFailure
		}
		if wpid != pid {
			continue // an orphan, reaped
		}
		// As a shell reports it: the command's code, or 128+signal.
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}
