//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/internal/proccluster"
	"github.com/raftelect/raftelect/internal/testport"
	"github.com/raftelect/raftelect/transport"
)

type demoOptions struct {
	heartbeat       time.Duration
	electionTimeout time.Duration
	killEvery       time.Duration
	restartDelay    time.Duration
	duration        time.Duration
	failovers       int
	plain           bool
	keep            bool
	fastFailover    bool
}

// Polling: every node's Status, each within pollTimeout. While a failover
// is under way the poll is faster, because its period bounds how precisely
// the failover time is measured.
const (
	pollEvery         = 100 * time.Millisecond
	pollEveryFailover = 20 * time.Millisecond
	pollTimeout       = 300 * time.Millisecond
	redrawEvery       = 200 * time.Millisecond
	demoEventsShown   = 12
)

func newDemoCmd() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a three-node cluster on loopback and show failovers live",
		Long: `Start three raftelect nodes on loopback as separate processes (raftelect run),
with mutual TLS from a development CA and their state in a temporary
directory, and show who leads, each node's role and term, and a log of events.

Keys (type the letter, then Enter):
  k   kill the leader with SIGKILL; it is restarted after --restart-delay
      (and not before another node leads), and the failover time is shown: from the kill until another node holds
      the lease, as seen by polling every node's status every 20ms
  q   quit

--kill-every kills the leader on a schedule. A kill (scheduled or k) waits
until the cluster has settled: all three nodes run, answer and follow the
lease holder in its term, the leader reaches both peers, and no node is
within the two election timeouts a start without state refuses votes for.
The live view fits the terminal (80x24 and up). --failovers N exits after N
failovers; --duration bounds the whole run. When stdout is not a terminal (or
with --plain) events are printed as lines instead of a redrawn view.

On q, Ctrl-C or SIGTERM every node gets SIGTERM (SIGKILL if it has not exited
after one election timeout and 5s more) and the temporary directory is
removed. A summary of the failovers (min, median, max) ends the run.

Exit status: 0, or 1 if --failovers N were not seen within --duration or the
cluster could not start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDemo(cmd.OutOrStdout(), o) },
	}
	f := cmd.Flags()
	f.DurationVar(&o.heartbeat, "heartbeat", 100*time.Millisecond, "heartbeat interval of every node")
	f.DurationVar(&o.electionTimeout, "election-timeout", time.Second, "election timeout of every node")
	f.DurationVar(&o.killEvery, "kill-every", 0, "kill the leader on this schedule (0: only on the k key)")
	f.DurationVar(&o.restartDelay, "restart-delay", time.Second, "restart a killed node after this long, and once another node leads")
	f.IntVar(&o.failovers, "failovers", 0, "exit after this many failovers (0: run until q, a signal or --duration)")
	f.DurationVar(&o.duration, "duration", 0, "stop after this long (0: no limit)")
	f.BoolVar(&o.plain, "plain", false, "print events as lines even on a terminal")
	f.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, logs, event logs, data) at exit")
	f.BoolVar(&o.fastFailover, "fast-failover", false, "run the nodes with fast_failover_on_refusal: a killed leader is replaced in milliseconds, not about one election timeout (safe here: nodes connect directly on loopback)")
	return cmd
}

// localCluster is a cluster on loopback: a development CA, a certificate
// and a config per node, in one directory, and the launcher that starts
// its node processes.
type localCluster struct {
	pc    *proccluster.Cluster
	dir   string
	nodes []*localNode
	peers []config.Peer
	creds *transport.Credentials // a client's: n1's certificate
}

// localNode is one node's files and addresses in a localCluster.
type localNode struct {
	index    int
	name     string
	peerAddr string
	httpAddr string
	config   string // its YAML config
	log      string // where its stdout and stderr go
}

// writeLocalCluster writes a CA, certificates and configs for n nodes on
// free loopback ports into dir, and checks the configs as run would; tweak
// adjusts every node's config before it is written. The cluster's
// processes run `raftelect run` of this executable, each in its own
// process group, and get SIGTERM if the launcher dies. Close its pc once
// a process was started.
func writeLocalCluster(dir string, n int, heartbeat, electionTimeout time.Duration, tweak ...func(*config.Node)) (*localCluster, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find raftelect's own binary to start the nodes: %w", err)
	}
	pc, err := proccluster.New(proccluster.Options{
		Nodes: n, Dir: dir, Binary: exe,
		// Its own process group: a Ctrl-C on the terminal reaches the
		// demo only, which then stops every node itself.
		OwnGroup: true, ParentDeathSignal: syscall.SIGTERM,
	})
	if err != nil {
		return nil, err
	}
	if _, err := pc.WriteCerts(24*time.Hour, func(*proccluster.Node) []string { return []string{"127.0.0.1"} }); err != nil {
		return nil, err
	}
	lc := &localCluster{pc: pc, dir: dir}
	for _, pn := range pc.Nodes() {
		// Below the ephemeral range: a node restarts on its ports, and a
		// redial to it while it is down could otherwise take one
		// (internal/testport).
		var addrs [2]string
		for k := range addrs {
			if addrs[k], err = testport.Addr(); err != nil {
				return nil, err
			}
		}
		nd := &localNode{index: pn.Index, name: pn.Name, peerAddr: addrs[0], httpAddr: addrs[1], config: pn.Config, log: pn.Log}
		lc.nodes = append(lc.nodes, nd)
		lc.peers = append(lc.peers, config.Peer{Name: nd.name, Address: nd.peerAddr})
	}
	for _, nd := range lc.nodes {
		pn := pc.Node(nd.index)
		cfg := &config.Node{
			Name: nd.name, Peers: lc.peers,
			HeartbeatInterval: config.Duration(heartbeat), ElectionTimeout: config.Duration(electionTimeout),
			TLS: pn.TLS, DataDir: pn.DataDir, HTTPAddress: nd.httpAddr, EventLog: pn.Events,
		}
		for _, f := range tweak {
			f(cfg)
		}
		if err := pc.WriteConfig(pn, cfg); err != nil {
			return nil, err
		}
	}
	cfg, err := config.Load(lc.nodes[0].config, config.LoadOptions{})
	if err != nil {
		// Only the timings come from the user: name the flags, not the
		// temporary file.
		var ce *config.Error
		if errors.As(err, &ce) {
			var msgs []string
			for _, p := range ce.Problems {
				msgs = append(msgs, p.String())
			}
			err = errors.New(strings.Join(msgs, "\n"))
		}
		return nil, usageError(fmt.Errorf("--heartbeat %v, --election-timeout %v: %w", heartbeat, electionTimeout, err))
	}
	if lc.creds, err = cfg.Credentials(); err != nil {
		return nil, err
	}
	return lc, nil
}

// demoProc is one node process of the demo.
type demoProc struct {
	*localNode
	proc    *proccluster.Process // this run of the process
	running bool
	killed  bool // we killed it
	// restartDue: its restart delay has passed, but the failover its kill
	// began is not yet seen.
	restartDue bool
	up         bool      // it answered the last poll
	started    time.Time // this run of the process
	starts     int       // runs so far; the first starts without state
}

// failover is one measured failover: kill -> another node holds the lease.
type failover struct {
	at       time.Time
	from, to string
	term     uint64
	took     time.Duration
}

type polled struct {
	rep statusReport
	at  time.Time
}

type demo struct {
	o     demoOptions
	out   io.Writer
	tty   bool
	lc    *localCluster
	procs []*demoProc
	begin time.Time

	exits    chan *demoProc
	restarts chan *demoProc
	quit     chan struct{} // closed when the main loop ends

	last      statusReport
	leader    string // who holds the lease, as last seen
	term      uint64
	pending   *failover // a kill whose failover is not yet seen
	failovers []failover
	wantKill  bool
	events    []string
}

func runDemo(out io.Writer, o demoOptions) error {
	switch {
	case o.failovers < 0:
		return usageError(fmt.Errorf("--failovers %d must not be negative", o.failovers))
	case o.killEvery < 0 || o.duration < 0 || o.restartDelay < 0:
		return usageError(errors.New("--kill-every, --duration and --restart-delay must not be negative"))
	}
	// From here on a signal stops the demo and its cleanup runs.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	dir, err := os.MkdirTemp("", "raftelect-demo-")
	if err != nil {
		return failure(err)
	}
	removeDir := func() {
		if o.keep {
			fmt.Fprintf(out, "kept %s\n", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(out, "could not remove %s: %v\n", dir, err)
			return
		}
		fmt.Fprintf(out, "removed %s\n", dir)
	}
	lc, err := writeLocalCluster(dir, 3, o.heartbeat, o.electionTimeout, func(n *config.Node) { n.FastFailoverOnRefusal = o.fastFailover })
	if err != nil {
		os.RemoveAll(dir)
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		return failure(err)
	}
	d := &demo{
		o: o, out: out, lc: lc, begin: time.Now(),
		tty:   !o.plain && isTerminal(out),
		exits: make(chan *demoProc), restarts: make(chan *demoProc), quit: make(chan struct{}),
	}
	for _, n := range lc.nodes {
		d.procs = append(d.procs, &demoProc{localNode: n})
	}
	fmt.Fprintf(out, "raftelect demo: 3 nodes on 127.0.0.1, mutual TLS, heartbeat %v, election timeout %v, fast failover on refusal %v\n", o.heartbeat, o.electionTimeout, o.fastFailover)
	fmt.Fprintf(out, "state, configs and node logs in %s (removed at exit unless --keep)\n", dir)

	runErr := d.loop(sigs)
	close(d.quit)
	d.stopAll(sigs)
	d.summary()
	if err := lc.pc.Close(); err != nil {
		d.print(fmt.Sprintf("stopping the nodes: %v", err))
	}
	removeDir()
	return runErr
}

// loop runs the demo until it is asked to stop; it returns the run's error.
func (d *demo) loop(sigs <-chan os.Signal) error {
	for _, p := range d.procs {
		if err := d.start(p); err != nil {
			return failure(err)
		}
	}
	d.event("waiting for the first leader (fresh nodes refuse to vote for 2 election timeouts)")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	results := make(chan polled, 1)
	pollTimer := time.NewTimer(0)
	defer pollTimer.Stop()

	var redraw <-chan time.Time
	if d.tty {
		t := time.NewTicker(redrawEvery)
		defer t.Stop()
		redraw = t.C
	}
	var killTick <-chan time.Time
	if d.o.killEvery > 0 {
		t := time.NewTicker(d.o.killEvery)
		defer t.Stop()
		killTick = t.C
	}
	var deadline <-chan time.Time
	if d.o.duration > 0 {
		t := time.NewTimer(d.o.duration)
		defer t.Stop()
		deadline = t.C
	}
	keys := make(chan string)
	go readKeys(os.Stdin, keys, d.quit)

	for {
		select {
		case s := <-sigs:
			d.event(fmt.Sprintf("%v: stopping", s))
			return nil
		case <-deadline:
			if d.o.failovers > 0 && len(d.failovers) < d.o.failovers {
				d.event(fmt.Sprintf("--duration %v is up", d.o.duration))
				return failure(fmt.Errorf("%d of %d failovers within --duration %v", len(d.failovers), d.o.failovers, d.o.duration))
			}
			d.event(fmt.Sprintf("--duration %v is up: stopping", d.o.duration))
			return nil
		case k := <-keys:
			switch k {
			case "q":
				d.event("q: stopping")
				return nil
			case "k":
				d.wantKill = true
				if why := d.unsettled(); why != "" || d.pending != nil {
					if d.pending != nil {
						why = "a failover is under way"
					}
					d.event("will kill the leader once the cluster has settled (" + why + ")")
				}
			default:
				d.event(fmt.Sprintf("unknown key %q: k<Enter> kills the leader, q<Enter> quits", k))
			}
		case <-killTick:
			d.wantKill = true
		case <-pollTimer.C:
			go func() {
				rep := queryAll(ctx, d.lc.peers, d.lc.creds, pollTimeout)
				results <- polled{rep: rep, at: time.Now()}
			}()
		case r := <-results:
			d.observe(r)
			if d.o.failovers > 0 && len(d.failovers) >= d.o.failovers {
				d.event(fmt.Sprintf("%d failovers seen: stopping", len(d.failovers)))
				return nil
			}
			every := pollEvery
			if d.pending != nil {
				every = pollEveryFailover
			}
			pollTimer.Reset(every)
		case p := <-d.exits:
			d.exited(p)
		case p := <-d.restarts:
			d.restart(p)
		case <-redraw:
			d.draw()
		}
		if d.wantKill && d.canKill() {
			d.killLeader()
		}
	}
}

// readKeys sends each line typed on r (trimmed) to keys until r ends.
func readKeys(r io.Reader, keys chan<- string, quit <-chan struct{}) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k := strings.TrimSpace(sc.Text())
		if k == "" {
			continue
		}
		select {
		case keys <- strings.ToLower(k[:1]):
		case <-quit:
			return
		}
	}
}

// start starts p's process (again).
func (d *demo) start(p *demoProc) error {
	proc, err := d.lc.pc.Start(p.index)
	if err != nil {
		return err
	}
	again := p.proc != nil
	p.proc, p.running, p.killed, p.up = proc, true, false, false
	p.started = time.Now()
	p.starts++
	go func() {
		<-proc.Done()
		select {
		case d.exits <- p:
		case <-d.quit:
		}
	}()
	if again {
		d.event(fmt.Sprintf("%s restarted: pid %d", p.name, proc.Pid))
	} else {
		d.event(fmt.Sprintf("%s started: pid %d, peer address %s, http://%s/metrics", p.name, proc.Pid, p.peerAddr, p.httpAddr))
	}
	return nil
}

// restart starts p again, once the failover its kill began is seen: a
// restarted node must not take part in the failover being measured.
func (d *demo) restart(p *demoProc) {
	if d.pending != nil && d.pending.from == p.name {
		p.restartDue = true
		return
	}
	p.restartDue = false
	if d.o.failovers > 0 && len(d.failovers) >= d.o.failovers {
		return // about to stop
	}
	if err := d.start(p); err != nil {
		d.event(fmt.Sprintf("%s did not restart: %v", p.name, err))
	}
}

// exited handles the end of one of the node processes.
func (d *demo) exited(p *demoProc) {
	p.running, p.up = false, false
	if p.killed {
		d.event(fmt.Sprintf("%s exited (%v); restarting it in %v", p.name, p.proc.State(), d.o.restartDelay))
	} else {
		d.event(fmt.Sprintf("%s exited by itself (%v); restarting it in %v; the end of its log:\n%s",
			p.name, p.proc.State(), d.o.restartDelay, tail(p.log, 5)))
	}
	time.AfterFunc(d.o.restartDelay, func() {
		select {
		case d.restarts <- p:
		case <-d.quit:
		}
	})
}

// observe takes in one poll of every node.
func (d *demo) observe(r polled) {
	d.last = r.rep
	holder, term := "", uint64(0)
	for _, n := range r.rep.Nodes {
		p := d.proc(n.Name)
		if n.OK && !p.up && p.running {
			d.event(fmt.Sprintf("%s answers: %s, term %d", n.Name, n.Role, n.Term))
		}
		p.up = n.OK && p.running
		if n.OK && n.HoldsLease {
			holder, term = n.Name, n.Term
		}
	}
	switch {
	case holder != "" && (holder != d.leader || term != d.term):
		if f := d.pending; f != nil && holder != f.from {
			f.to, f.term, f.took = holder, term, r.at.Sub(f.at)
			d.failovers = append(d.failovers, *f)
			d.pending = nil
			d.event(fmt.Sprintf("failover %v: %s holds the lease (term %d), %s was killed",
				f.took.Round(time.Millisecond), holder, term, f.from))
			if p := d.proc(f.from); p.restartDue {
				defer d.restart(p)
			}
		} else {
			d.event(fmt.Sprintf("%s holds the lease (term %d)", holder, term))
		}
		d.leader, d.term = holder, term
	case holder == "" && d.leader != "":
		if d.pending == nil {
			d.event(fmt.Sprintf("no node holds the lease (%s did, term %d)", d.leader, d.term))
		}
		d.leader = ""
	}
}

func (d *demo) proc(name string) *demoProc {
	for _, p := range d.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// canKill: a kill now measures a failover, not a cluster still recovering
// from the last one.
func (d *demo) canKill() bool { return d.pending == nil && d.unsettled() == "" }

// unsettled says why the cluster has not settled since the last failover,
// or "" if it has. A kill before then measures the wrong thing: with a node
// down no quorum is left, and a node that has not yet followed the leader
// (restarted a moment ago) still refuses votes (its vote guard,
// docs/safety.md), so the survivors wait for it; those were the 1-2 s
// outliers. Settled means: every node runs and answers, all name the lease
// holder as leader in its term, the leader reaches every peer, and every
// node is past the guard that hearing a leader does not end (two election
// timeouts after a start without state).
func (d *demo) unsettled() string {
	if d.leader == "" {
		return "no node holds the lease"
	}
	for _, p := range d.procs {
		if !p.running || !p.up {
			return p.name + " is not up"
		}
		if p.starts == 1 && time.Since(p.started) < 2*d.o.electionTimeout {
			return p.name + " started without state less than 2 election timeouts ago"
		}
	}
	for _, n := range d.last.Nodes {
		if !n.OK || n.Leader != d.leader || n.Term != d.term {
			return fmt.Sprintf("%s does not follow %s in term %d yet", n.Name, d.leader, d.term)
		}
		if n.Name != d.leader {
			continue
		}
		for _, l := range n.Peers {
			if !l.Reachable {
				return fmt.Sprintf("%s does not reach %s yet", d.leader, l.Name)
			}
		}
	}
	return ""
}

func (d *demo) killLeader() {
	d.wantKill = false
	p := d.proc(d.leader)
	d.event(fmt.Sprintf("killing the leader %s (pid %d, term %d) with SIGKILL", p.name, p.proc.Pid, d.term))
	d.pending = &failover{from: p.name, at: time.Now()}
	p.killed = true
	if err := p.proc.Signal(syscall.SIGKILL); err != nil {
		d.event(fmt.Sprintf("kill %s: %v", p.name, err))
	}
}

// stopAll stops every node: SIGTERM, then SIGKILL after a grace period (or
// at once on another signal), and waits for every process.
func (d *demo) stopAll(sigs <-chan os.Signal) {
	// A leader hands over for at most one election timeout before it stops.
	stopped := d.lc.pc.StopAll(d.o.electionTimeout+5*time.Second, sigs)
	var lines []string
	for _, p := range d.procs {
		if proc, ok := stopped[p.index]; ok {
			lines = append(lines, fmt.Sprintf("%s (pid %d, %v)", p.name, proc.Pid, proc.State()))
		}
	}
	if d.tty {
		d.draw()
		fmt.Fprintln(d.out) // the view's last line has no newline
	}
	if len(lines) > 0 {
		d.print("stopped " + strings.Join(lines, ", "))
	}
}

// event records a line of the event log and, in plain mode, prints it.
func (d *demo) event(msg string) {
	line := time.Now().Format("15:04:05.000") + " " + msg
	d.events = append(d.events, line)
	if len(d.events) > demoEventsShown {
		d.events = d.events[len(d.events)-demoEventsShown:]
	}
	if !d.tty {
		fmt.Fprintln(d.out, line)
	}
}

func (d *demo) print(msg string) { fmt.Fprintln(d.out, msg) }

// draw redraws the live view from the top of the terminal. It fits the
// terminal (80x24 at least): every line is cut to the width, the event log
// shows as many of its latest lines as the height leaves, and the last line
// ends without a newline, so the screen never scrolls and the title, the
// leader line and the table header stay in place.
func (d *demo) draw() {
	cols, rows := terminalSize(d.out)
	var top bytes.Buffer
	fmt.Fprintf(&top, "raftelect demo: 3 nodes, heartbeat %v, election timeout %v, up %v\n",
		d.o.heartbeat, d.o.electionTimeout, time.Since(d.begin).Truncate(time.Second))
	leader := d.leader
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(&top, "leader: %s   term: %d   failovers: %d", leader, d.term, len(d.failovers))
	if n := len(d.failovers); n > 0 {
		fmt.Fprintf(&top, " (last %v)", d.failovers[n-1].took.Round(time.Millisecond))
	}
	if d.pending != nil {
		fmt.Fprintf(&top, "   failing over: %v", time.Since(d.pending.at).Round(time.Millisecond))
	}
	top.WriteString("\n\n")
	tw := tabwriter.NewWriter(&top, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPID\tROLE\tTERM\tLEADER\tLEASE\tANSWERS")
	for _, p := range d.procs {
		pid := "-"
		if p.running {
			pid = fmt.Sprint(p.proc.Pid)
		}
		var n *nodeReport
		for i := range d.last.Nodes {
			if d.last.Nodes[i].Name == p.name {
				n = &d.last.Nodes[i]
			}
		}
		switch {
		case !p.running:
			fmt.Fprintf(tw, "%s\t%s\tdown\t-\t-\t-\tno\n", p.name, pid)
		case n == nil || !n.OK:
			class := "-"
			if n != nil {
				class = n.ErrorClass
			}
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\tno (%s)\n", p.name, pid, class)
		default:
			lease, l := "-", n.Leader
			if n.HoldsLease {
				lease = "held"
			}
			if l == "" {
				l = "none"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\tyes\n", p.name, pid, n.Role, n.Term, l, lease)
		}
	}
	tw.Flush()
	top.WriteString("\nevents:")
	head := strings.Split(top.String(), "\n")
	foot := []string{"", "k<Enter> kill leader  q<Enter>/Ctrl-C quit  dir: " + d.lc.dir}
	var events []string
	for _, e := range d.events {
		for line := range strings.SplitSeq(e, "\n") {
			events = append(events, "  "+line)
		}
	}
	room := max(0, rows-len(head)-len(foot))
	events = events[max(0, len(events)-room):]
	for len(events) < room {
		events = append(events, "")
	}
	io.WriteString(d.out, paintScreen(append(append(head, events...), foot...), cols))
}

// terminalSize is the size of the terminal w writes to; 80x24 if unknown.
func terminalSize(w io.Writer) (cols, rows int) {
	if f, ok := w.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 && ws.Row > 0 {
			return int(ws.Col), int(ws.Row)
		}
	}
	return 80, 24
}

// summary prints the failovers and their min, median and max.
func (d *demo) summary() {
	if len(d.failovers) == 0 {
		d.print("summary: no failovers (k<Enter> kills the leader; --kill-every does it on a schedule)")
		return
	}
	took := make([]time.Duration, len(d.failovers))
	for i, f := range d.failovers {
		took[i] = f.took
	}
	mn, med, mx := durationStats(took)
	d.print(fmt.Sprintf("summary: %d failover(s) (leader killed with SIGKILL until another node holds the lease, polled every %v): min %v, median %v, max %v",
		len(took), pollEveryFailover, mn.Round(time.Millisecond), med.Round(time.Millisecond), mx.Round(time.Millisecond)))
	for i, f := range d.failovers {
		d.print(fmt.Sprintf("  %d. %s %s -> %s (term %d): %v", i+1, f.at.Format("15:04:05"), f.from, f.to, f.term, f.took.Round(time.Millisecond)))
	}
}

// durationStats returns the minimum, median and maximum of ds (not empty).
func durationStats(ds []time.Duration) (mn, med, mx time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return s[0], med, s[n-1]
}

// tail returns the last n lines of the file at path, indented.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
