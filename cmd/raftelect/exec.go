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
	"os/signal"
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
		contain string
	)
	cmd := &cobra.Command{
		Use:   "exec --config node.yaml [--grace 10s] [--contain auto|namespace|tree] -- CMD [ARG]...",
		Short: "Run a node and a command that runs only while this node leads",
		Long: `Run one raftelect node, as run does, and run CMD only while this node holds
the leader lease (like consul lock).

CMD runs with stdin from /dev/null, exec's stdout and stderr, and in its
environment:
  RAFTELECT_FENCING_TOKEN  the lease's fencing token (the raft term); it
                           strictly increases from one leader to the next
  RAFTELECT_LEADER         the lease holder: this node's name
  RAFTELECT_NODE           this node's name

When the lease ends, every process of CMD gets SIGTERM, then SIGKILL after
--grace. The lease ends before any other node can be elected, but CMD may
still run for up to --grace after that: pass the fencing token to whatever CMD
writes to, so a stale leader's writes are rejected. CMD starts again, with the
new token, when this node leads again.

If CMD exits by itself while this node leads:
  exit code 0    it is done: not started again until the next lease
  otherwise      started again after a backoff (one heartbeat, doubling up
                 to 30s) for as long as the lease holds
Either way, whatever it left running is killed. exec keeps running the node
(and keeps leading) in both cases.

On SIGTERM or SIGINT, exec stops CMD first (SIGTERM, SIGKILL after --grace)
while it still holds the lease, then stops the node, which hands leadership
to a peer, and exits 0. A second signal kills CMD and exits 1 at once.

Which processes are "CMD's" (--contain; exec logs its choice at start):
  namespace  CMD runs in a new PID namespace under raftelect's own init
             (process 1 there, which passes signals on to every process of
             the namespace and reaps orphans). When CMD ends, or exec dies
             (kill -9 too), the kernel kills every process in the namespace,
             also those that called setsid or double-forked. Linux, as root
             (CAP_SYS_ADMIN). CMD sees its namespace's PIDs ($$ is small,
             $PPID is 1), /proc and ps the host's.
  tree       CMD runs in its own process group; exec adopts CMD's orphans
             (Linux subreaper) and signals every descendant, so a lease end
             or CMD's exit ends them all. If exec dies (kill -9 too), a
             watchdog process kills CMD's process group, but not processes
             that left it (setsid): those survive a kill -9 of exec. Without
             Linux, only the process group is followed.
  auto       (default) namespace if exec can create one, otherwise tree.

Exit codes: 0 clean stop, 1 run time failure (also: --contain namespace but
no namespace can be created), 2 invalid configuration or usage (no CMD, CMD
not found).`,
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
			if contain != "auto" && contain != string(containNamespace) && contain != string(containTree) {
				return usageError(fmt.Errorf("--contain %q: want auto, namespace or tree", contain))
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
			if err := w.chooseContainment(contain); err != nil {
				return err
			}
			defer w.closeWatchdog()
			if w.contain == containTree {
				// Registered after closeWatchdog, so it runs first: the
				// reaper must not reap the watchdog from under os/exec.
				defer w.startReaper()()
			}
			return runNodeWith(n, cmd.ErrOrStderr(), w)
		},
	}
	// Flags end at CMD: its own flags are not exec's.
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "YAML node configuration (see examples/node.yaml); RAFTELECT_CONFIG")
	cmd.Flags().DurationVar(&grace, "grace", 10*time.Second, "how long CMD has to exit after SIGTERM before SIGKILL")
	cmd.Flags().StringVar(&contain, "contain", "auto", "how CMD's processes are followed: namespace, tree, or auto (namespace if possible); see above")
	addOverrideFlags(cmd.Flags())
	return cmd
}

// containment is how exec finds every process of its command, to end them
// all when the lease ends, when the command exits, and when exec dies.
// auto tries them in this order.
type containment string

const (
	// containNamespace: a new PID namespace (exec_contain_linux.go); the
	// kernel ends every process in it, whatever ends the command or exec.
	containNamespace containment = "namespace"
	// containTree: the command's process group, exec as subreaper of its
	// orphans, and the watchdog; what leaves the group survives only a
	// kill -9 of exec.
	containTree containment = "tree"
	// containGroup: the process group and the watchdog only; --contain
	// tree where exec cannot adopt orphans (not Linux).
	containGroup containment = ""
)

// chooseContainment settles w.contain from the --contain flag and says
// once, in the log, which one is in use and what it covers.
func (w *execWork) chooseContainment(flag string) error {
	switch flag {
	case string(containTree):
		w.contain = containTree
	case string(containNamespace):
		if err := namespaceAvailable(w.self); err != nil {
			return failure(fmt.Errorf("--contain namespace: cannot run the command in a new PID namespace: %v; on Linux, run exec as root (creating one needs CAP_SYS_ADMIN), or use --contain tree", err))
		}
		w.contain = containNamespace
	default:
		if err := namespaceAvailable(w.self); err != nil {
			w.log.Warn("no PID namespace for the command; falling back to --contain tree: a process of the command that leaves its process group (setsid, a daemon's double fork) survives a kill -9 of exec", "reason", err)
			w.contain = containTree
		} else {
			w.contain = containNamespace
		}
	}
	if w.contain == containTree {
		if err := becomeSubreaper(); err != nil {
			w.contain = containGroup
			w.log.Warn("command containment: process group and watchdog only; a process that leaves the command's process group (setsid) is not followed", "reason", err)
			return nil
		}
		w.log.Info("command containment: tree (process group, orphans adopted, watchdog for the group)", "contain", w.contain)
		return nil
	}
	w.log.Info("command containment: PID namespace (every process of the command ends with it and with exec)", "contain", w.contain)
	return nil
}

// startReaper reaps, under tree containment, the orphans of the command
// that exec adopted, as they exit. Call the returned func to stop it.
func (w *execWork) startReaper() (stop func()) {
	ch := make(chan os.Signal, 1)
	notifyChildExit(ch)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-ch:
				w.mu.Lock()
				reap(w.ownChildren())
				w.mu.Unlock()
			}
		}
	}()
	return func() { signal.Stop(ch); close(quit); <-done }
}

// ownChildren are the children os/exec waits for, which reap must leave
// alone. Called with mu held.
func (w *execWork) ownChildren() map[int]bool {
	own := map[int]bool{}
	if w.current != nil {
		own[w.current.cmd.Process.Pid] = true
	}
	if w.wd != nil {
		own[w.wd.cmd.Process.Pid] = true
	}
	return own
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
	// kills the command's process group if exec dies, and as the init of
	// the command's PID namespace; "" runs neither.
	self    string
	contain containment

	mu       sync.Mutex
	wd       *watchdog     // started with the first command
	stopping bool          // set by stop: start nothing more
	current  *execChild    // the running command, if any
	stopCh   chan struct{} // closed by stop
	stopOnce sync.Once
}

// execChild is one run of the command.
type execChild struct {
	cmd      *exec.Cmd // the command, or under containNamespace its init
	pgid     int
	contain  containment
	wdPid    int           // the watchdog, not the command's: tree walks skip it
	exited   chan struct{} // closed when the command's process has exited
	err      error         // cmd.Wait's result, set before exited closes
	once     sync.Once
	gone     chan struct{} // closed when terminate has finished
	released chan struct{} // closed when its run has let go of it
}

// run is the RunWhileLeader routine: start the command and wait for it to
// exit or the lease to end. An error asks RunWhileLeader to start it again.
func (w *execWork) run(ctx context.Context, lease election.Lease) error {
	// The next lease can begin while the last command is still in its
	// grace period (RunWhileLeader does not wait for it): wait until it is
	// gone, so that one node never runs two copies, and current (which stop
	// and the watchdog follow) names the one that runs.
	w.mu.Lock()
	for w.current != nil && !w.stopping {
		released := w.current.released
		w.mu.Unlock()
		w.log.Info("lease started; waiting for the last command to end first", "token", lease.Token)
		select {
		case <-released:
		case <-ctx.Done():
			return nil
		}
		w.mu.Lock()
	}
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
			// Nothing of it is left: nothing for the watchdog to kill.
			_ = w.wd.guard(0)
		}
		w.mu.Unlock()
		close(c.released)
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
	c.killAll()
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

// start starts the command: in its own process group, and under
// containNamespace as the child of raftelect's init (runExecInit), process
// 1 of a new PID namespace. Called with mu held.
func (w *execWork) start(lease election.Lease) (*execChild, error) {
	cmd := exec.Command(w.path, w.args[1:]...)
	cmd.Args[0] = w.args[0]
	if w.contain == containNamespace {
		cmd = exec.Command(w.self, append([]string{execInitArg, w.path}, w.args...)...)
	}
	cmd.Env = append(os.Environ(),
		"RAFTELECT_FENCING_TOKEN="+strconv.FormatUint(lease.Token, 10),
		"RAFTELECT_LEADER="+lease.Holder,
		"RAFTELECT_NODE="+w.node,
	)
	cmd.Stdout, cmd.Stderr = w.stdout, w.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if w.contain == containNamespace {
		inNewPIDNamespace(cmd.SysProcAttr)
	}
	// The command must not outlive exec: its lease could not end it then.
	// The parent-death signal kills the command's first process (under
	// containNamespace the init, and with it the namespace); the watchdog
	// kills its process group.
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
	c := &execChild{cmd: cmd, pgid: cmd.Process.Pid, contain: w.contain,
		exited: make(chan struct{}), gone: make(chan struct{}), released: make(chan struct{}),
	}
	if w.wd != nil {
		c.wdPid = w.wd.cmd.Process.Pid
		if err := w.wd.guard(cmd.Process.Pid); err != nil {
			w.log.Warn("exec watchdog is gone: if exec is killed, the command's children may outlive it", "err", err)
		}
	}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// signalAll sends sig once to every process of the command.
func (c *execChild) signalAll(sig syscall.Signal) {
	if c.contain == containNamespace {
		// The init passes it on to every process in the namespace.
		_ = syscall.Kill(c.cmd.Process.Pid, sig)
		return
	}
	if c.contain == containGroup {
		_ = syscall.Kill(-c.pgid, sig)
		return
	}
	live, _ := processTree(os.Getpid(), map[int]bool{c.wdPid: true})
	for _, pid := range live {
		_ = syscall.Kill(pid, sig)
	}
}

// killAll SIGKILLs every process of the command. Under containNamespace
// killing the init is enough: the kernel kills the rest before the init's
// exit can be waited for. Under containTree it walks exec's descendants
// until none is left alive, as a dying process may have forked meanwhile.
func (c *execChild) killAll() {
	_ = syscall.Kill(-c.pgid, syscall.SIGKILL)
	if c.contain != containTree {
		return
	}
	// Bounded: SIGKILLed processes fork no more; the limit guards the walk.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		live, _ := processTree(os.Getpid(), map[int]bool{c.wdPid: true})
		if len(live) == 0 {
			return
		}
		for _, pid := range live {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond) // let the killed exit before the next walk
	}
}

// terminate sends SIGTERM to every process of the command, SIGKILL after
// grace, and returns once the command has exited and nothing of it is
// left. Safe to call from several goroutines; each returns when the
// command is gone.
func (c *execChild) terminate(grace time.Duration) {
	c.once.Do(func() {
		defer close(c.gone)
		c.signalAll(syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-c.exited:
		case <-t.C:
		}
		// Also whatever the command left behind.
		c.killAll()
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

// kill kills every process of the command at once.
func (w *execWork) kill() {
	w.mu.Lock()
	w.stopping = true
	c := w.current
	w.mu.Unlock()
	if c != nil {
		c.killAll()
	}
}

// runExecHelper runs the binary as one of exec's helper processes when
// args name one; main calls it first.
func runExecHelper(args []string) (int, bool) {
	switch {
	case len(args) == 1 && args[0] == watchdogArg:
		return runWatchdog(os.Stdin), true
	case len(args) >= 1 && args[0] == execInitArg:
		return runExecInit(args[1:]), true
	}
	return 0, false
}
