package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/metrics"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

// watchEvent is one change `status --watch` reports: a line of text, or an
// object of the -o json stream.
type watchEvent struct {
	Time time.Time `json:"time"`
	Type string    `json:"type"` // always "event"; status objects say "status"
	// Kind: leader (a new leader every answering node names), no-leader,
	// role, lease, down (a node stopped answering), up, link (the leader's
	// link to a node went down or came back), missed (a node dropped events
	// this watch did not read in time).
	Kind   string `json:"event"`
	Node   string `json:"node,omitempty"`
	Leader string `json:"leader,omitempty"`
	Term   uint64 `json:"term,omitempty"`
	Detail string `json:"detail"`
}

// watchStatus is a status object of the -o json stream.
type watchStatus struct {
	Time time.Time `json:"time"`
	Type string    `json:"type"` // "status"
	statusReport
}

// watcher follows every node's Watch stream and what the last report
// showed.
type watcher struct {
	peers    []config.Peer
	creds    *transport.Credentials
	timeout  time.Duration
	interval time.Duration

	prev       *statusReport
	leaderless time.Time // when the last agreed leader was lost; zero if one leads
	lastLeader string
	lastTerm   uint64
}

// Reconnecting to a node that is down: the first retry at once (a stream
// that broke is usually a restart, or a node that just went away: the
// retry tells which), then after watchBackoff, doubling up to
// watchMaxBackoff, so a node that comes back is seen within that.
const (
	watchBackoff    = 100 * time.Millisecond
	watchMaxBackoff = 2 * time.Second
)

// nodeUpdate is one thing a node's stream said, or its failure.
type nodeUpdate struct {
	i      int
	status *pb.NodeStatus      // a status
	event  *pb.LeadershipEvent // or a leadership event
	missed uint64              // events the node dropped before this one
	err    error               // or why the node does not answer
}

// follow keeps a Watch stream open to node i until ctx ends, sending what
// it says (or why it does not answer) to out.
func (w *watcher) follow(ctx context.Context, i int, out chan<- nodeUpdate) {
	p := w.peers[i]
	send := func(u nodeUpdate) bool {
		u.i = i
		select {
		case out <- u:
			return true
		case <-ctx.Done():
			return false
		}
	}
	conn, err := dialNode(p, w.creds, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: watchBackoff, Multiplier: 2, Jitter: 0.2, MaxDelay: watchMaxBackoff},
		MinConnectTimeout: w.timeout,
	}))
	if err != nil {
		send(nodeUpdate{err: err})
		return
	}
	defer conn.Close()
	delay := time.Duration(0)
	for {
		conn.ResetConnectBackoff() // our own backoff paces the attempts
		began := time.Now()
		answered, silent, err := w.stream(ctx, p, conn, send)
		if ctx.Err() != nil {
			return
		}
		switch {
		case answered && !silent && time.Since(began) >= watchMaxBackoff:
			// It was up a while and the stream ended: ask again at
			// once, and report the node down only if that fails.
			delay = 0
			continue
		case answered && !silent:
			// It answers, but its streams end soon after (a node
			// stopping): nothing to report, but no busy loop either.
		default:
			if !send(nodeUpdate{err: err}) {
				return
			}
		}
		delay = min(max(2*delay, watchBackoff), watchMaxBackoff)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// stream runs one Watch call until it ends. The first answer (the dial
// included) must come within the timeout; after that the node sends a
// status at least every interval, so an update must come within interval
// plus the timeout, or the node is silent (a hung process, a black-holed
// link) and the call is given up. answered says whether anything came.
func (w *watcher) stream(ctx context.Context, p config.Peer, conn *grpc.ClientConn, send func(nodeUpdate) bool) (answered, silent bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var expired atomic.Bool
	limit := w.timeout
	timer := time.AfterFunc(limit, func() { expired.Store(true); cancel() })
	defer timer.Stop()
	wait := func(err error) error {
		if expired.Load() {
			if answered {
				return fmt.Errorf("%w: no update for %v (a node sends its status every %v)", context.DeadlineExceeded, limit, w.interval)
			}
			return fmt.Errorf("%w: no answer within %v", context.DeadlineExceeded, limit)
		}
		return err
	}
	st, err := pb.NewNodeClient(conn).Watch(ctx, &pb.WatchRequest{StatusIntervalNs: int64(w.interval)})
	if err != nil {
		return false, expired.Load(), wait(err)
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return answered, expired.Load(), wait(err)
		}
		answered = true
		limit = w.interval + w.timeout
		timer.Reset(limit)
		u := nodeUpdate{status: resp.GetStatus(), event: resp.GetEvent(), missed: resp.GetMissed()}
		if u.status != nil && u.status.GetName() != p.Name {
			// Not the node the configuration names there: not an answer.
			return false, false, fmt.Errorf("the node at %s says it is %q", p.Address, u.status.GetName())
		}
		if !send(u) {
			return answered, false, ctx.Err()
		}
	}
}

// apply updates node i's report with what its stream said, and returns
// the event lines it adds by itself (missed events).
func (w *watcher) apply(nodes []nodeReport, u nodeUpdate, now time.Time) []watchEvent {
	p := w.peers[u.i]
	n := &nodes[u.i]
	var out []watchEvent
	if u.missed > 0 {
		out = append(out, watchEvent{Time: now, Type: "event", Kind: "missed", Node: p.Name,
			Detail: fmt.Sprintf("%s dropped %d events this watch did not read in time", p.Name, u.missed)})
	}
	switch {
	case u.err != nil:
		*n = nodeReport{Name: p.Name, Address: p.Address, ErrorClass: metrics.Classify(u.err), Error: u.err.Error()}
	case u.status != nil:
		*n = nodeFromStatus(p, u.status)
	case u.event != nil && n.OK:
		ev := u.event
		switch ev.GetKind() {
		case pb.LeadershipEvent_KIND_CURRENT, pb.LeadershipEvent_KIND_LEADER:
			n.Leader, n.Term = ev.GetLeader(), ev.GetTerm()
			if ev.GetKind() == pb.LeadershipEvent_KIND_CURRENT {
				n.HoldsLease = ev.GetLease() != nil
			}
		case pb.LeadershipEvent_KIND_STARTED_LEADING:
			n.HoldsLease, n.Role, n.Leader = true, "leader", p.Name
			n.Term = max(n.Term, ev.GetTerm())
		case pb.LeadershipEvent_KIND_STOPPED_LEADING:
			n.HoldsLease = false
		}
	}
	return out
}

// diff returns what changed since the previous report (nothing on the
// first).
func (w *watcher) diff(now time.Time, cur statusReport) []watchEvent {
	prev := w.prev
	w.prev = &cur
	if prev == nil {
		if cur.Leader != "" {
			w.lastLeader, w.lastTerm = cur.Leader, cur.Term
		} else {
			w.leaderless = now
		}
		return nil
	}
	var out []watchEvent
	add := func(kind, node, detail string) {
		out = append(out, watchEvent{Time: now, Type: "event", Kind: kind, Node: node, Leader: cur.Leader, Term: cur.Term, Detail: detail})
	}
	byName := map[string]nodeReport{}
	for _, n := range prev.Nodes {
		byName[n.Name] = n
	}
	for _, n := range cur.Nodes {
		p := byName[n.Name]
		switch {
		case p.OK && !n.OK:
			add("down", n.Name, fmt.Sprintf("%s does not answer: %s (%s)", n.Name, n.ErrorClass, briefError(n.Error)))
		case !p.OK && n.OK:
			add("up", n.Name, fmt.Sprintf("%s answers: %s in term %d", n.Name, n.Role, n.Term))
		case p.OK && n.OK:
			if p.Role != n.Role {
				add("role", n.Name, fmt.Sprintf("%s: %s -> %s (term %d)", n.Name, p.Role, n.Role, n.Term))
			}
			if p.HoldsLease != n.HoldsLease {
				if n.HoldsLease {
					add("lease", n.Name, fmt.Sprintf("%s holds the lease (token %d)", n.Name, n.Term))
				} else {
					add("lease", n.Name, fmt.Sprintf("%s no longer holds the lease", n.Name))
				}
			}
		}
	}
	// The leader's links, when the same leader answered both times.
	if v, pv := cur.view(), prev.view(); v != nil && pv != nil && v.Name == pv.Name && v.Role == "leader" {
		was := map[string]bool{}
		for _, l := range pv.Peers {
			was[l.Name] = l.Reachable
		}
		for _, l := range v.Peers {
			if r, ok := was[l.Name]; ok && r != l.Reachable {
				state := "reachable again"
				if !l.Reachable {
					state = "unreachable"
				}
				add("link", l.Name, fmt.Sprintf("link %s -> %s: %s", v.Name, l.Name, state))
			}
		}
	}
	switch {
	case cur.agreedLeader() != "" && (cur.Leader != w.lastLeader || cur.Term != w.lastTerm):
		d := fmt.Sprintf("%s leads in term %d", cur.Leader, cur.Term)
		if w.lastLeader != "" {
			d += fmt.Sprintf(" (was %s, term %d)", w.lastLeader, w.lastTerm)
		}
		if !w.leaderless.IsZero() {
			d += fmt.Sprintf("; no agreed leader for %v", shortDuration(now.Sub(w.leaderless)))
		}
		add("leader", cur.Leader, d)
		w.lastLeader, w.lastTerm, w.leaderless = cur.Leader, cur.Term, time.Time{}
	case cur.agreedLeader() == "" && prev.agreedLeader() != "":
		w.leaderless = now
		d := cur.problem()
		if cur.Leader != "" {
			d = fmt.Sprintf("the leader the others name, %s, does not answer", cur.Leader)
		}
		add("no-leader", "", d)
	}
	return out
}

// agreedLeader is the leader every answering node names, if it answers
// too: a leader that stopped answering (killed, cut off) leads nothing a
// watcher can see, though the others still name it until they elect anew.
func (r *statusReport) agreedLeader() string {
	for _, n := range r.Nodes {
		if n.Name == r.Leader && !n.OK {
			return ""
		}
	}
	return r.Leader
}

// view is the node whose peer columns the table shows.
func (r *statusReport) view() *nodeReport {
	for i := range r.Nodes {
		if r.Nodes[i].Name == r.ViewFrom && r.Nodes[i].OK {
			return &r.Nodes[i]
		}
	}
	return nil
}

// runWatch is `status --watch`: follow every node's Watch stream until
// interrupted (or --watch-for ends) and report each change as it comes.
func runWatch(ctx context.Context, out io.Writer, o statusOptions, peers []config.Peer, creds *transport.Credentials) error {
	if o.interval <= 0 {
		return usageError(fmt.Errorf("--interval %v must be positive", o.interval))
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.watchFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.watchFor)
		defer cancel()
	}
	w := &watcher{peers: peers, creds: creds, timeout: o.timeout, interval: o.interval}
	updates := make(chan nodeUpdate)
	var wg sync.WaitGroup
	defer wg.Wait()
	// The streams end when ctx does, but do not inherit its deadline
	// (--watch-for): gRPC would send it to the nodes, whose end of the
	// stream would then fail a moment before ctx does here, and the watch
	// would report every node down as it ends.
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	for i := range peers {
		wg.Go(func() { w.follow(fctx, i, updates) })
	}

	nodes := make([]nodeReport, len(peers))
	for i, p := range peers {
		nodes[i] = nodeReport{Name: p.Name, Address: p.Address}
	}
	// The first report once every node answered or failed to (each within
	// the timeout).
	heard := make([]bool, len(peers))
	for waiting := len(peers); waiting > 0; {
		select {
		case u := <-updates:
			w.apply(nodes, u, time.Now())
			if !heard[u.i] {
				heard[u.i] = true
				waiting--
			}
		case <-ctx.Done():
			return nil
		}
	}
	tty := o.output == "table" && isTerminal(out)
	enc := json.NewEncoder(out)
	var recent []string // the screen's event lines (tty)
	now := time.Now()
	rep := summarize(slices.Clone(nodes))
	w.diff(now, rep)
	switch {
	case o.output == "json":
		if err := enc.Encode(watchStatus{Time: now, Type: "status", statusReport: rep}); err != nil {
			return failure(err)
		}
	case tty:
		fmt.Fprint(out, watchScreen(out, now, rep, recent))
	default:
		fmt.Fprintf(out, "%s  watching %d nodes as they report changes (Ctrl-C to stop)\n", now.Format("15:04:05.000"), len(peers))
		printStatusTable(out, rep)
	}
	for {
		var u nodeUpdate
		select {
		case u = <-updates:
		case <-ctx.Done():
			return nil
		}
		now := time.Now()
		events := w.apply(nodes, u, now)
		rep := summarize(slices.Clone(nodes))
		events = append(events, w.diff(now, rep)...)
		switch {
		case o.output == "json":
			for _, ev := range events {
				if err := enc.Encode(ev); err != nil {
					return failure(err)
				}
			}
			if len(events) > 0 {
				if err := enc.Encode(watchStatus{Time: now, Type: "status", statusReport: rep}); err != nil {
					return failure(err)
				}
			}
		case tty:
			for _, ev := range events {
				recent = append(recent, eventLine(ev))
			}
			recent = recent[max(0, len(recent)-100):]
			fmt.Fprint(out, watchScreen(out, now, rep, recent))
		default:
			for _, ev := range events {
				fmt.Fprintln(out, eventLine(ev))
			}
		}
	}
}

func eventLine(ev watchEvent) string {
	return fmt.Sprintf("%s  %-9s %s", ev.Time.Format("15:04:05.000"), ev.Kind, ev.Detail)
}

// briefError keeps the end of a gRPC error, the part that says what
// happened ("connect: connection refused"), for a one-line event; status
// without --watch prints errors in full.
func briefError(s string) string {
	s = strings.TrimRight(s, `"`)
	parts := strings.Split(s, ": ")
	if len(parts) > 2 {
		parts = parts[len(parts)-2:]
	}
	return strings.Join(parts, ": ")
}

// watchScreen is the terminal view: the status table and as many of the
// latest events as fit, every line cut to the terminal's width (widen it
// for every column), and no newline after the last line, so the screen
// never scrolls.
func watchScreen(out io.Writer, now time.Time, rep statusReport, recent []string) string {
	cols, rows := terminalSize(out)
	var b strings.Builder
	fmt.Fprintf(&b, "raftelect status --watch: changes as they happen, Ctrl-C to stop   %s\n\n", now.Format("15:04:05"))
	printStatusTable(&b, rep)
	b.WriteString("\nevents:")
	head := strings.Split(b.String(), "\n")
	room := max(0, rows-len(head))
	recent = recent[max(0, len(recent)-room):]
	return paintScreen(append(head, recent...), cols)
}
