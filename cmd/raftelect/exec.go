//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftelect/raftelect/election"
)

func init() { addCommand(newExecCmd) }

func newExecCmd() *cobra.Command {
	var (
		cfgPath string
		grace   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "exec --config node.yaml [--grace 10s] -- CMD [ARG]...",
		Short: "Run a node and a command that runs only while this node leads",
		Long: `Run one raftelect node, as run does, and run CMD only while this node holds
the leader lease (like consul lock).

CMD runs in its own process group, with stdin from /dev/null, exec's stdout
and stderr, and in its environment:
  RAFTELECT_FENCING_TOKEN  the lease's fencing token (the raft term); it
                           strictly increases from one leader to the next
  RAFTELECT_LEADER         the lease holder: this node's name
  RAFTELECT_NODE           this node's name

When the lease ends, CMD's process group gets SIGTERM, then SIGKILL after
--grace. The lease ends before any other node can be elected, but CMD may
still run for up to --grace after that: pass the fencing token to whatever CMD
writes to, so a stale leader's writes are rejected. CMD starts again, with the
new token, when this node leads again.

If CMD exits by itself while this node leads:
  exit code 0    it is done: not started again until the next lease
  otherwise      started again after a backoff (one heartbeat, doubling up
                 to 30s) for as long as the lease holds
Either way, whatever it left in its process group is killed. exec keeps
running the node (and keeps leading) in both cases.

On SIGTERM or SIGINT, exec stops CMD first (SIGTERM, SIGKILL after --grace)
while it still holds the lease, then stops the node, which hands leadership
to a peer, and exits 0. A second signal kills CMD and exits 1 at once. If
exec itself dies (kill -9 included), CMD's whole process group is killed
too, by a small watchdog process exec starts from its own binary. A process
that leaves the group (setsid) is not followed. Exit codes: 0 clean stop,
1 run time failure, 2 invalid configuration or usage (no CMD, CMD not
found).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError(errors.New("exec needs the command to run after --: raftelect exec --config node.yaml -- CMD [ARG]..."))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if grace <= 0 {
				return usageError(fmt.Errorf("--grace %v must be positive", grace))
			}
			path, err := exec.LookPath(args[0])
			if err != nil {
				return usageError(err)
			}
			n, err := loadConfig(cmd.Flags(), cfgPath)
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), n.Log).With("node", n.Name)
			w := &execWork{
				path: path, args: args, node: n.Name, grace: grace, log: log,
				stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), stopCh: make(chan struct{}),
			}
			if self, err := os.Executable(); err == nil {
				w.self = self
			} else {
				log.Warn("cannot find the raftelect binary for the exec watchdog: if exec is killed, the command's children may outlive it", "err", err)
			}
			defer w.closeWatchdog()
			return runNodeWith(n, cmd.ErrOrStderr(), w)
		},
	}
	// Flags end at CMD: its own flags are not exec's.
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "YAML node configuration (see examples/node.yaml); RAFTELECT_CONFIG")
	cmd.Flags().DurationVar(&grace, "grace", 10*time.Second, "how long CMD has to exit after SIGTERM before SIGKILL")
	addOverrideFlags(cmd.Flags())
	return cmd
}

// execWork runs the command of `raftelect exec` while the node leads: the
// leaderWork of runNodeWith.
type execWork struct {
	path   string   // resolved args[0]
	args   []string // CMD and its arguments
	node   string
	grace  time.Duration
	log    *slog.Logger
	stdout io.Writer
	stderr io.Writer
	// self is the raftelect binary, run as the watchdog (watchdog.go) that
	// kills the command's process group if exec dies; "" runs none.
	self string

	mu       sync.Mutex
	wd       *watchdog     // started with the first command
	stopping bool          // set by stop: start nothing more
	current  *execChild    // the running command, if any
	stopCh   chan struct{} // closed by stop
	stopOnce sync.Once
}

// execChild is one run of the command.
type execChild struct {
	cmd    *exec.Cmd
	pgid   int
	exited chan struct{} // closed when the command's process has exited
	err    error         // cmd.Wait's result, set before exited closes
	once   sync.Once
	gone   chan struct{} // closed when terminate has finished
}

// run is the RunWhileLeader routine: start the command and wait for it to
// exit or the lease to end. An error asks RunWhileLeader to start it again.
func (w *execWork) run(ctx context.Context, lease election.Lease) error {
	w.mu.Lock()
	if w.stopping {
		w.mu.Unlock()
		return nil
	}
	c, err := w.start(lease)
	if err != nil {
		w.mu.Unlock()
		w.log.Error("command did not start", "err", err)
		return err
	}
	w.current = c
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.current = nil
		if w.wd != nil {
			// The group is gone: nothing for the watchdog to kill.
			_ = w.wd.guard(0)
		}
		w.mu.Unlock()
	}()
	w.log.Info("command started", "pid", c.cmd.Process.Pid, "token", lease.Token)

	select {
	case <-ctx.Done():
		w.log.Info("lease ended; stopping command", "pid", c.cmd.Process.Pid, "grace", w.grace)
		c.terminate(w.grace)
		return nil
	case <-w.stopCh:
		c.terminate(w.grace) // stop waits for it too
		return nil
	case <-c.exited:
	}
	// It exited by itself; leave nothing of it running unsupervised.
	_ = syscall.Kill(-c.pgid, syscall.SIGKILL)
	if c.err == nil {
		w.log.Info("command exited 0; it starts again at the next lease", "pid", c.cmd.Process.Pid)
		return nil
	}
	if ctx.Err() != nil {
		return nil
	}
	w.log.Warn("command failed while leading; starting it again", "pid", c.cmd.Process.Pid, "err", c.err)
	return fmt.Errorf("command %s: %w", w.args[0], c.err)
}

// start starts the command in its own process group. Called with mu held.
func (w *execWork) start(lease election.Lease) (*execChild, error) {
	cmd := exec.Command(w.path, w.args[1:]...)
	cmd.Args[0] = w.args[0]
	cmd.Env = append(os.Environ(),
		"RAFTELECT_FENCING_TOKEN="+strconv.FormatUint(lease.Token, 10),
		"RAFTELECT_LEADER="+lease.Holder,
		"RAFTELECT_NODE="+w.node,
	)
	cmd.Stdout, cmd.Stderr = w.stdout, w.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The command must not outlive exec: its lease could not end it then.
	// The parent-death signal kills the command's first process; the
	// watchdog kills the rest of its process group.
	setParentDeathSignal(cmd.SysProcAttr, syscall.SIGKILL)
	if w.wd == nil && w.self != "" {
		wd, err := startWatchdog(w.self)
		if err != nil {
			w.log.Warn("no exec watchdog: if exec is killed, the command's children may outlive it", "err", err)
			w.self = ""
		}
		w.wd = wd
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if w.wd != nil {
		if err := w.wd.guard(cmd.Process.Pid); err != nil {
			w.log.Warn("exec watchdog is gone: if exec is killed, the command's children may outlive it", "err", err)
		}
	}
	c := &execChild{cmd: cmd, pgid: cmd.Process.Pid, exited: make(chan struct{}), gone: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// terminate sends SIGTERM to the command's process group, SIGKILL after
// grace, and returns once the command has exited. Safe to call from several
// goroutines; each returns when the command is gone.
func (c *execChild) terminate(grace time.Duration) {
	c.once.Do(func() {
		defer close(c.gone)
		_ = syscall.Kill(-c.pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-c.exited:
		case <-t.C:
		}
		// Also whatever the command left behind in its group.
		_ = syscall.Kill(-c.pgid, syscall.SIGKILL)
		<-c.exited
	})
	<-c.gone
}

// stop ends the command for good and waits until it has exited.
func (w *execWork) stop() {
	w.mu.Lock()
	w.stopping = true
	c := w.current
	w.mu.Unlock()
	w.stopOnce.Do(func() { close(w.stopCh) })
	if c != nil {
		w.log.Info("stopping command before the node", "pid", c.cmd.Process.Pid, "grace", w.grace)
		c.terminate(w.grace)
	}
}

// closeWatchdog ends the watchdog once no command can start any more.
func (w *execWork) closeWatchdog() {
	w.mu.Lock()
	w.stopping = true
	wd := w.wd
	w.wd = nil
	w.mu.Unlock()
	if wd != nil {
		wd.close()
	}
}

// kill kills the command's process group at once.
func (w *execWork) kill() {
	w.mu.Lock()
	w.stopping = true
	c := w.current
	w.mu.Unlock()
	if c != nil {
		_ = syscall.Kill(-c.pgid, syscall.SIGKILL)
	}
}
