//go:build unix

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// watchdogArg, as the first argument, makes the raftelect binary run as the
// watchdog of an exec process instead of as the CLI (see runWatchdog).
const watchdogArg = "__exec-watchdog"

// The watchdog ends exec's command when exec itself dies, however it dies.
//
// The kernel's parent-death signal (Pdeathsig) reaches only exec's direct
// child; the processes that child started (sh -c '...; sleep 30') would
// keep running, unsupervised, while another node starts its own copy. So
// exec starts one small helper, this same binary with watchdogArg, in its
// own process group, and keeps the write end of a pipe to the helper's
// stdin. exec writes the process group of each command it starts, and 0
// once the command is gone. When exec dies (kill -9, a crash, an OOM kill),
// the kernel closes the pipe; the watchdog reads end of file and kills the
// command's whole process group with SIGKILL. The pipe is close-on-exec, so
// only exec holds it; the watchdog ignores the terminal's signals so that a
// Ctrl-C cannot end it before it has done its job.
type watchdog struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	w    io.WriteCloser
	done chan struct{}
}

// startWatchdog starts the watchdog from the raftelect binary at path.
func startWatchdog(path string) (*watchdog, error) {
	cmd := exec.Command(path, watchdogArg)
	pw, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the exec watchdog (%s): %w", path, err)
	}
	wd := &watchdog{cmd: cmd, w: pw, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(wd.done) }()
	return wd, nil
}

// guard tells the watchdog which process group to kill if exec dies now
// (0: none).
func (wd *watchdog) guard(pgid int) error {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	_, err := fmt.Fprintf(wd.w, "%d\n", pgid)
	return err
}

// close ends the watchdog; call it once no command runs.
func (wd *watchdog) close() {
	_ = wd.guard(0)
	wd.mu.Lock()
	_ = wd.w.Close()
	wd.mu.Unlock()
	<-wd.done
}

// runWatchdog is the watchdog process: it follows the process group exec
// names on stdin and, at end of file (exec is gone), kills that group.
func runWatchdog(in io.Reader) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	pgid := 0
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		n, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
		if err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "raftelect exec watchdog: bad line %q from exec\n", sc.Text())
			continue
		}
		pgid = n
	}
	// End of file: exec closed the pipe. After a clean stop it said 0
	// first; otherwise it died, and its command must not outlive it.
	if pgid > 0 {
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err == nil {
			fmt.Fprintf(os.Stderr, "raftelect exec watchdog: exec is gone; killed its command's process group %d\n", pgid)
		}
	}
	return 0
}
