package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/transport"
)

// watchEvent is one change between two polls of `status --watch`: a line
// of text, or an object of the -o json stream.
type watchEvent struct {
	Time time.Time `json:"time"`
	Type string    `json:"type"` // always "event"; status objects say "status"
	// Kind: leader (a new leader every answering node names), no-leader,
	// role, lease, down (a node stopped answering), up, link (the leader's
	// link to a node went down or came back).
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

// watcher keeps one connection per node and what the last poll saw.
type watcher struct {
	peers    []config.Peer
	conns    []*grpc.ClientConn
	timeout  time.Duration
	interval time.Duration

	prev       *statusReport
	leaderless time.Time // when the last agreed leader was lost; zero if one leads
	lastLeader string
	lastTerm   uint64
}

func newWatcher(peers []config.Peer, creds *transport.Credentials, timeout, interval time.Duration) (*watcher, error) {
	w := &watcher{peers: peers, timeout: timeout, interval: interval}
	for _, p := range peers {
		conn, err := dialNode(p, creds)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		w.conns = append(w.conns, conn)
	}
	return w, nil
}

func (w *watcher) close() {
	for _, c := range w.conns {
		c.Close()
	}
}

// poll asks every node once, in parallel, each within the timeout.
func (w *watcher) poll(ctx context.Context) statusReport {
	nodes := make([]nodeReport, len(w.peers))
	var wg sync.WaitGroup
	for i, p := range w.peers {
		wg.Go(func() { nodes[i] = queryConn(ctx, w.conns[i], p, w.timeout) })
	}
	wg.Wait()
	return summarize(nodes)
}

// diff returns what changed since the previous poll (nothing on the first).
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
	case cur.Leader != "" && (cur.Leader != w.lastLeader || cur.Term != w.lastTerm):
		d := fmt.Sprintf("%s leads in term %d", cur.Leader, cur.Term)
		if w.lastLeader != "" {
			d += fmt.Sprintf(" (was %s, term %d)", w.lastLeader, w.lastTerm)
		}
		if !w.leaderless.IsZero() {
			d += fmt.Sprintf("; no agreed leader for %v (polled every %v)", shortDuration(now.Sub(w.leaderless)), w.interval)
		}
		add("leader", cur.Leader, d)
		w.lastLeader, w.lastTerm, w.leaderless = cur.Leader, cur.Term, time.Time{}
	case cur.Leader == "" && prev.Leader != "":
		w.leaderless = now
		add("no-leader", "", cur.problem())
	}
	return out
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

// runWatch is `status --watch`: poll every interval until interrupted (or
// --watch-for ends) and report each change.
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
	w, err := newWatcher(peers, creds, o.timeout, o.interval)
	if err != nil {
		return failure(err)
	}
	defer w.close()
	tty := o.output == "table" && isTerminal(out)
	enc := json.NewEncoder(out)
	var recent []string // the screen's event lines (tty)
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for {
		now := time.Now()
		rep := w.poll(ctx)
		if ctx.Err() != nil {
			return nil // interrupted mid-poll: the answers are cut short
		}
		first := w.prev == nil
		events := w.diff(now, rep)
		switch {
		case o.output == "json":
			for _, ev := range events {
				if err := enc.Encode(ev); err != nil {
					return failure(err)
				}
			}
			if first || len(events) > 0 {
				if err := enc.Encode(watchStatus{Time: now, Type: "status", statusReport: rep}); err != nil {
					return failure(err)
				}
			}
		case tty:
			for _, ev := range events {
				recent = append(recent, eventLine(ev))
			}
			recent = recent[max(0, len(recent)-100):]
			fmt.Fprint(out, watchScreen(out, o.interval, now, rep, recent))
		default:
			if first {
				fmt.Fprintf(out, "%s  watching %d nodes every %v (Ctrl-C to stop)\n", now.Format("15:04:05.000"), len(peers), o.interval)
				printStatusTable(out, rep)
			}
			for _, ev := range events {
				fmt.Fprintln(out, eventLine(ev))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
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
func watchScreen(out io.Writer, interval time.Duration, now time.Time, rep statusReport, recent []string) string {
	cols, rows := terminalSize(out)
	var b strings.Builder
	fmt.Fprintf(&b, "raftelect status --watch: every %v, Ctrl-C to stop   %s\n\n", interval, now.Format("15:04:05"))
	printStatusTable(&b, rep)
	b.WriteString("\nevents:")
	head := strings.Split(b.String(), "\n")
	room := max(0, rows-len(head))
	recent = recent[max(0, len(recent)-room):]
	return paintScreen(append(head, recent...), cols)
}
