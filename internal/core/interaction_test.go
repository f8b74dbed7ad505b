package core

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/cockroachdb/datadriven"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/internal/clusterid"
	"github.com/raftelect/raftelect/storage"
)

// Transcript tests: each file in testdata/*.txt is a script of commands to
// a few Nodes that share one fake clock, with the output each command
// produced (events and messages) under it, in the style of etcd raft's
// interaction tests. The harness is a driver, like internal/sim's, that
// only uses the core's public inputs; it reads internal state only to
// print `status`. Rewrite the expected output after a deliberate change:
//
//	go test ./internal/core -run TestInteraction -rewrite
//
// and read the diff: every changed line is a changed behaviour.
//
// The commands:
//
//	add-nodes 3 [fast-failover=true] [lose-state=(n2,...)] [bootstrap=false]
//	    [bug-no-vote-guard=true]
//	    n1..n3 on empty stores. By default each store is marked as never
//	    ran (`raftelect bootstrap`), so there is no vote guard at the first
//	    start; bootstrap=false starts them as nodes without state (2 x
//	    election timeout of guard). A node in lose-state keeps nothing
//	    across restarts (the in-memory store); the others keep their state
//	    (a store that reopens not Fresh, as bbolt does). bug-no-vote-guard
//	    puts a fixed bug back (Bugs.NoVoteGuard), to show what it broke.
//	tick n1 [times=N] / tick-all [times=N]
//	    N times: the clock moves one heartbeat (100ms, running due timers),
//	    then the node(s) tick.
//	advance 150ms
//	    Moves the clock, running every Wake timer that falls due, in order
//	    (lines carry the time).
//	run 2s
//	    Time passes with everything working: ticks every heartbeat on every
//	    live node, Wake timers when due, every batch delivered at once
//	    (answers included). Only events, campaign messages and refusals
//	    are printed, each with the time.
//	campaign n1
//	    Ticks n1 alone, without moving the clock, until its raft starts an
//	    election (as if its peers' ticks lagged): the usual way in.
//	elect n1
//	    campaign n1, then stabilize, printing only events.
//	deliver [from=n1] [to=n2] [drop=n3] / stabilize
//	    Delivers the batches queued now (stabilize: until none is left);
//	    batches to drop= are lost. The receiver's acknowledgement flows
//	    back to the sender at once (core.Acked).
//	partition n1 ... / heal / refuse n1
//	    A partition silently loses every batch to or from n1. refuse: every
//	    connection to n1 is refused from now on (a reject rule, or nothing
//	    listening); each live peer's redial is refused at once (PeerRefused
//	    and ReportUnreachable, as the transport reports them). heal ends both.
//	crash n2 / restart n2 [lost]
//	    A batch to a crashed node is refused. lost: it restarts on an empty
//	    store.
//	transfer n1 [to=n2] / graceful-stop n1 / retarget n1
//	    Transfer, StartGracefulStop, RetargetTransfer; reachable peers are
//	    those up, not cut off and not refusing.
//	inject from=n3 to=n2 type=MsgTimeoutNow term=2 [commit=N] [index=N]
//	    Queues a crafted message (what a confused or hostile peer could
//	    send past the transport's stateless checks).
//	status [n1]
//	add-nodes 3 [witness=(n3)] [priority=(n1:5,n2:1)] [fail-back=3s]
//	    Member records: witnesses, priorities; fail-back sets
//	    Config.FailBackAfter on every node.
//	join n4 [witness=true] [priority=N]
//	    Starts n4 on an empty store with Config.Join: no configuration of
//	    its own, it waits to be added and to learn the membership.
//	add-member n1 n4 [replaces=n2] / remove-member n1 n3
//	    AddMember, RemoveMember on n1 (n4's record as join gave it).
//	members [n1]
//	    The applied membership and the preferred leader, per node.
//
// Messages print as "n1->n2 MsgApp term=2 log=1/3 commit=3 entries=[2/4]"
// (log: the previous entry's term/index; entries: term/index). A heartbeat
// response never travels as a message: the acknowledgement is its answer,
// printed as "ack n2->n1 ..." when it acknowledges the batch just
// delivered. EventLeader is not printed on its own line: every leader
// change also makes an EventState, whose line names the leader. "raft
// holds a Ready this input left unprocessed" flags an input after which
// raft still had something to save or send: it waits for the next input.
func TestInteraction(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no transcripts in testdata/*.txt")
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			// Raft draws its randomized election timeouts from crypto/rand.
			cryptotest.SetGlobalRandom(t, 1)
			e := &itEnv{now: itBase}
			datadriven.RunTest(t, path, e.handle)
		})
	}
}

const (
	itTick          = 100 * time.Millisecond
	itElectionTicks = 10
	itDriftMargin   = 0.1
)

var itBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// itStore is a memory store that, once reopened with state, is not Fresh,
// as a bbolt store reopened after a restart.
type itStore struct {
	*storage.Memory
	fresh bool
}

func (s *itStore) Fresh() bool { return s.fresh }

type itNode struct {
	idx      int
	name     string
	id       uint64
	c        *Node
	store    *itStore
	up       bool
	inc      uint64 // incarnation: one more per start
	volatile bool   // keeps nothing across restarts
	join     bool   // started with Config.Join
	members  string // the membership last printed
}

type itBatch struct {
	from, to *itNode
	msgs     []*raftpb.Message
	stamp    Stamp
}

type itEnv struct {
	t            *testing.T
	now          time.Time
	nodes        []*itNode
	names        map[uint64]string
	queue        []itBatch
	cut, refused map[string]bool
	fastFailover bool
	bugs         Bugs
	out          strings.Builder
	indent       string
	// quiet (run, elect): routine traffic is not printed. stamped
	// (advance, run, elect): lines carry the time.
	quiet, stamped bool
	// eventsOnly (elect): not even campaign messages are printed.
	eventsOnly bool
	// records: the member records add-nodes and join give (witness,
	// priority); failBack: Config.FailBackAfter.
	records  map[string]Member
	failBack time.Duration
}

func (e *itEnv) handle(t *testing.T, d *datadriven.TestData) string {
	e.t = t
	e.out.Reset()
	e.indent = ""
	if d.Cmd != "add-nodes" && len(e.nodes) == 0 {
		d.Fatalf(t, "add-nodes first")
	}
	switch d.Cmd {
	case "add-nodes":
		e.addNodes(t, d)
	case "tick", "tick-all":
		times := 1
		if d.HasArg("times") {
			d.ScanArgs(t, "times", &times)
		}
		var nodes []*itNode
		if d.Cmd == "tick" {
			nodes = e.nodeArgs(t, d)
		} else {
			nodes = e.nodes
		}
		for range times {
			e.advanceTo(e.now.Add(itTick), false)
			for _, nd := range nodes {
				if nd.up {
					e.input(nd, func(now time.Time) error { return nd.c.Tick(now) })
				}
			}
		}
		e.line("now %s", fmtT(e.now))
	case "advance", "run":
		if len(d.CmdArgs) != 1 {
			d.Fatalf(t, "%s <duration>", d.Cmd)
		}
		dur, err := time.ParseDuration(d.CmdArgs[0].Key)
		if err != nil {
			d.Fatalf(t, "%v", err)
		}
		e.quiet, e.stamped = d.Cmd == "run", true
		e.advanceTo(e.now.Add(dur), d.Cmd == "run")
		e.quiet, e.stamped = false, false
		e.line("now %s", fmtT(e.now))
	case "campaign":
		for _, nd := range e.nodeArgs(t, d) {
			e.campaign(nd)
		}
	case "elect":
		nd := e.nodeArgs(t, d)[0]
		e.quiet, e.stamped, e.eventsOnly = true, true, true
		e.campaign(nd)
		e.stabilize()
		e.quiet, e.stamped, e.eventsOnly = false, false, false
	case "deliver":
		var from, to, drop string
		for _, a := range d.CmdArgs {
			switch a.Key {
			case "from":
				from = a.Vals[0]
			case "to":
				to = a.Vals[0]
			case "drop":
				drop = a.Vals[0]
			default:
				d.Fatalf(t, "deliver: unknown argument %s", a.Key)
			}
		}
		e.deliver(func(b itBatch) bool {
			return (from == "" || b.from.name == from) && (to == "" || b.to.name == to)
		}, drop)
	case "stabilize":
		e.stabilize()
	case "partition":
		for _, nd := range e.nodeArgs(t, d) {
			e.cut[nd.name] = true
		}
	case "heal":
		clear(e.cut)
		clear(e.refused)
	case "refuse":
		for _, nd := range e.nodeArgs(t, d) {
			e.refused[nd.name] = true
			for _, p := range e.nodes {
				if p != nd && p.up {
					e.line("%s: connection to %s refused", p.name, nd.name)
					e.refuse(p, nd)
				}
			}
		}
	case "differs", "agrees":
		// differs n2 about=n3: n2's transport found n3's member list
		// different from n2's (agrees: the same again).
		var about string
		d.ScanArgs(t, "about", &about)
		peer := e.node(t, about)
		for _, nd := range e.nodeArgs(t, d) {
			differs := d.Cmd == "differs"
			e.input(nd, func(now time.Time) error { return nd.c.MembershipDiffers(now, peer.id, differs) })
			e.line("%s: %s's member list %s; elections held: %v", nd.name, peer.name, map[bool]string{true: "differs", false: "agrees"}[differs], nd.c.ElectionsHeld())
		}
	case "crash":
		for _, nd := range e.nodeArgs(t, d) {
			nd.up = false
			e.line("%s crashed", nd.name)
		}
	case "restart":
		nodes := e.nodeArgs(t, d)
		for _, nd := range nodes {
			if nd.up {
				d.Fatalf(t, "%s is up", nd.name)
			}
			e.start(nd, d.HasArg("lost") || nd.volatile)
		}
	case "transfer":
		nd := e.nodeArgs(t, d)[0]
		var to uint64
		if d.HasArg("to") {
			var name string
			d.ScanArgs(t, "to", &name)
			to = e.node(t, name).id
		}
		e.input(nd, func(now time.Time) error {
			if err := nd.c.Transfer(now, to, e.reachable(nd)); err != nil {
				e.line("%s: transfer refused: %v", nd.name, err)
			}
			return nil
		})
	case "graceful-stop":
		nd := e.nodeArgs(t, d)[0]
		e.input(nd, func(now time.Time) error {
			wait := nd.c.StartGracefulStop(now, e.reachable(nd))
			e.line("%s: a transfer to wait for: %v", nd.name, wait)
			return nil
		})
	case "retarget":
		nd := e.nodeArgs(t, d)[0]
		e.input(nd, func(now time.Time) error { return nd.c.RetargetTransfer(now, e.reachable(nd)) })
	case "inject":
		e.inject(t, d)
	case "join":
		e.join(t, d)
	case "add-member":
		nodes := e.nodeArgs(t, d)
		if len(nodes) != 2 {
			d.Fatalf(t, "add-member n1 n4")
		}
		nd, m := nodes[0], e.record(nodes[1])
		if d.HasArg("replaces") {
			var name string
			d.ScanArgs(t, "replaces", &name)
			m.Replaces = e.node(t, name).id
		}
		e.input(nd, func(now time.Time) error {
			if err := nd.c.AddMember(now, m); err != nil {
				e.line("%s: add-member refused: %v", nd.name, err)
			}
			return nil
		})
	case "remove-member":
		nodes := e.nodeArgs(t, d)
		if len(nodes) != 2 {
			d.Fatalf(t, "remove-member n1 n3")
		}
		nd := nodes[0]
		e.input(nd, func(now time.Time) error {
			if err := nd.c.RemoveMember(now, nodes[1].id); err != nil {
				e.line("%s: remove-member refused: %v", nd.name, err)
			}
			return nil
		})
	case "members":
		nodes := e.nodeArgs(t, d)
		if len(nodes) == 0 {
			nodes = e.nodes
		}
		for _, nd := range nodes {
			pref := "none"
			if m, ok := nd.c.Preferred(); ok {
				pref = fmt.Sprintf("%s (priority %d)", m.Name, m.Priority)
			}
			e.line("%s: members %s; preferred leader %s", nd.name, nd.c.memberSummary(), pref)
		}
	case "status":
		nodes := e.nodeArgs(t, d)
		if len(nodes) == 0 {
			nodes = e.nodes
		}
		for _, nd := range nodes {
			e.status(nd)
		}
	default:
		d.Fatalf(t, "unknown command %s", d.Cmd)
	}
	if e.out.Len() == 0 {
		return "ok\n"
	}
	return e.out.String()
}

func (e *itEnv) addNodes(t *testing.T, d *datadriven.TestData) {
	if len(e.nodes) > 0 || len(d.CmdArgs) == 0 {
		d.Fatalf(t, "add-nodes <n>, once")
	}
	n, err := strconv.Atoi(d.CmdArgs[0].Key)
	if err != nil {
		d.Fatalf(t, "add-nodes: %v", err)
	}
	e.names = map[uint64]string{}
	e.records = map[string]Member{}
	e.cut, e.refused = map[string]bool{}, map[string]bool{}
	for i := range n {
		name := "n" + strconv.Itoa(i+1)
		nd := &itNode{idx: i, name: name, id: NodeID(name)}
		e.nodes = append(e.nodes, nd)
		e.names[nd.id] = name
	}
	bootstrap := true
	for _, a := range d.CmdArgs[1:] {
		switch a.Key {
		case "fast-failover":
			d.ScanArgs(t, a.Key, &e.fastFailover)
		case "bootstrap":
			d.ScanArgs(t, a.Key, &bootstrap)
		case "bug-no-vote-guard":
			d.ScanArgs(t, a.Key, &e.bugs.NoVoteGuard)
		case "lose-state":
			for _, v := range a.Vals {
				e.node(t, v).volatile = true
			}
		case "witness":
			for _, v := range a.Vals {
				r := e.record(e.node(t, v))
				r.Witness = true
				e.records[v] = r
			}
		case "priority":
			for _, v := range a.Vals {
				name, p, ok := strings.Cut(v, ":")
				prio, err := strconv.Atoi(p)
				if !ok || err != nil {
					d.Fatalf(t, "priority=(n1:5,...): %q", v)
				}
				r := e.record(e.node(t, name))
				r.Priority = prio
				e.records[name] = r
			}
		case "fail-back":
			var s string
			d.ScanArgs(t, a.Key, &s)
			if e.failBack, err = time.ParseDuration(s); err != nil {
				d.Fatalf(t, "fail-back: %v", err)
			}
		default:
			d.Fatalf(t, "add-nodes: unknown argument %s", a.Key)
		}
	}
	for _, nd := range e.nodes {
		nd.store = &itStore{Memory: storage.NewMemory(), fresh: true}
		if bootstrap {
			if err := storage.MarkNeverRan(nd.store, nd.name); err != nil {
				t.Fatal(err)
			}
		}
		e.start(nd, false)
	}
}

// start boots nd at now: on its store, or on an empty one if lost.
func (e *itEnv) start(nd *itNode, lost bool) {
	what := "starts"
	switch {
	case lost:
		nd.store = &itStore{Memory: storage.NewMemory(), fresh: true}
		what = "restarts without state"
	case nd.inc > 0:
		nd.store.fresh = false
		what = "restarts with its state"
	}
	nd.inc++
	var members []Member
	for _, other := range e.nodes {
		if !other.join {
			members = append(members, e.record(other))
		}
	}
	c, err := New(Config{
		ID: nd.id, Name: nd.name, Names: e.names, Storage: nd.store,
		Members: members, Join: nd.join, FailBackAfter: e.failBack,
		Tick: itTick, ElectionTicks: itElectionTicks, DriftMargin: itDriftMargin,
		FastFailoverOnRefusal: e.fastFailover,
		Bugs:                  e.bugs,
		Rand:                  rand.New(rand.NewPCG(uint64(nd.idx+1), nd.inc)),
	}, e.now)
	if err != nil {
		e.t.Fatalf("%s: %v", nd.name, err)
	}
	nd.c, nd.up = c, true
	e.line("%s %s: term=%d, vote guard %v", nd.name, what, c.Status().GetTerm(), c.VoteGuardLength())
	e.take(nd)
}

func (e *itEnv) node(t *testing.T, name string) *itNode {
	for _, nd := range e.nodes {
		if nd.name == name {
			return nd
		}
	}
	t.Fatalf("no node %s", name)
	return nil
}

// nodeArgs are the command's arguments that name nodes.
func (e *itEnv) nodeArgs(t *testing.T, d *datadriven.TestData) []*itNode {
	var out []*itNode
	for _, a := range d.CmdArgs {
		if len(a.Vals) == 0 && a.Key != "lost" {
			out = append(out, e.node(t, a.Key))
		}
	}
	return out
}

func (e *itEnv) line(format string, args ...any) {
	e.out.WriteString(e.indent)
	if e.stamped {
		e.out.WriteString(fmtT(e.now) + " ")
	}
	fmt.Fprintf(&e.out, format, args...)
	e.out.WriteByte('\n')
}

// input hands nd one input at now and does what the core answers.
func (e *itEnv) input(nd *itNode, f func(now time.Time) error) {
	if err := f(e.now); err != nil {
		e.line("%s: error: %v", nd.name, err)
	}
	e.take(nd)
	if nd.c.RawNode().HasReady() {
		// Every input should end with raft's Ready handed out; one left
		// behind waits, unsaved and unsent, for the node's next input.
		e.line("%s: raft holds a Ready this input left unprocessed", nd.name)
	}
}

// take prints nd's events and queues its messages, one batch per
// destination, stamped with the clock and nd's incarnation.
func (e *itEnv) take(nd *itNode) {
	out := nd.c.TakeOutput()
	for _, ev := range out.Events {
		e.event(nd, ev)
	}

	var order []uint64
	by := map[uint64][]*raftpb.Message{}
	for _, m := range out.Messages {
		if _, ok := by[m.GetTo()]; !ok {
			order = append(order, m.GetTo())
		}
		by[m.GetTo()] = append(by[m.GetTo()], proto.Clone(m).(*raftpb.Message))
	}
	stamp := Stamp{At: uint64(e.now.Sub(itBase)), Incarnation: nd.inc}
	for _, to := range order {
		for _, m := range by[to] {
			if !e.quiet || campaignMsg(m) && !e.eventsOnly {
				e.line("%s", e.fmtMsg(m))
			}
		}
		e.queue = append(e.queue, itBatch{from: nd, to: e.nodes[slices.IndexFunc(e.nodes, func(n *itNode) bool { return n.id == to })], msgs: by[to], stamp: stamp})
	}
}

func campaignMsg(m *raftpb.Message) bool {
	switch m.GetType() {
	case raftpb.MsgPreVote, raftpb.MsgPreVoteResp, raftpb.MsgVote, raftpb.MsgVoteResp, raftpb.MsgTimeoutNow:
		return true
	}
	return false
}

func (e *itEnv) event(nd *itNode, ev Event) {
	switch ev.Kind {
	case EventState:
		e.line("%s: %s term=%d vote=%s lead=%s", nd.name, RoleName(ev.Role), ev.Term, e.name(ev.Vote), e.name(ev.Lead))
	case EventLeader:
		// The EventState that follows names the leader.
	case EventLeaseStart:
		held, term, _, expiry := nd.c.Lease()
		if held && term == ev.Token {
			e.line("%s: lease starts term=%d, expires at %s", nd.name, ev.Token, fmtT(expiry))
		} else {
			e.line("%s: lease starts term=%d", nd.name, ev.Token)
		}
	case EventLeaseEnd:
		e.line("%s: lease ends term=%d (held since %s)", nd.name, ev.Token, fmtT(ev.Start))
	case EventClusterID:
		e.line("%s: cluster ID recorded", nd.name)
	case EventMembers:
		// The first is the bootstrap's configuration: print changes only.
		if s := nd.c.memberSummary(); nd.members == "" {
			nd.members = s
		} else if s != nd.members {
			nd.members = s
			e.line("%s: members %s", nd.name, s)
		}
	case EventRemoved:
		e.line("%s: removed from the cluster", nd.name)
	case EventPreferred:
		e.line("%s: %s", nd.name, ev.Reason)
	default:
		e.line("%s: event %d", nd.name, ev.Kind)
	}
}

func (e *itEnv) name(id uint64) string {
	if id == 0 {
		return "-"
	}
	if n := e.names[id]; n != "" {
		return n
	}
	return fmt.Sprintf("%x", id)
}

// fmtT prints an instant as the time since the transcript began.
func fmtT(t time.Time) string { return t.Sub(itBase).Round(time.Microsecond).String() }

func (e *itEnv) fmtMsg(m *raftpb.Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s->%s %s term=%d", e.name(m.GetFrom()), e.name(m.GetTo()), m.GetType(), m.GetTerm())
	switch m.GetType() {
	case raftpb.MsgHeartbeat:
		fmt.Fprintf(&b, " commit=%d", m.GetCommit())
	case raftpb.MsgApp:
		fmt.Fprintf(&b, " log=%d/%d commit=%d entries=[", m.GetLogTerm(), m.GetIndex(), m.GetCommit())
		for i, ent := range m.GetEntries() {
			if i > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "%d/%d", ent.GetTerm(), ent.GetIndex())
			if ent.GetType() != raftpb.EntryNormal {
				b.WriteString(" conf")
			} else if _, ok := clusterid.Parse(ent.GetData()); ok {
				b.WriteString(" cluster-id")
			}
		}
		b.WriteString("]")
	case raftpb.MsgAppResp:
		fmt.Fprintf(&b, " index=%d", m.GetIndex())
	case raftpb.MsgPreVote, raftpb.MsgVote:
		fmt.Fprintf(&b, " log=%d/%d", m.GetLogTerm(), m.GetIndex())
	}
	if m.GetReject() {
		b.WriteString(" rejected")
	}
	return b.String()
}

// advanceTo moves the clock to end, running every Wake timer that falls
// due, in time order (ties: by node name). With ticks, every live node
// also ticks on each heartbeat boundary, and every batch is delivered as
// soon as it is sent.
func (e *itEnv) advanceTo(end time.Time, ticks bool) {
	for range 100000 {
		next, tick := time.Time{}, false
		if ticks {
			next, tick = itBase.Add((e.now.Sub(itBase)/itTick+1)*itTick), true
		}
		for _, nd := range e.nodes {
			if w := nd.c.NextWake(); nd.up && !w.IsZero() && (next.IsZero() || w.Before(next) || w.Equal(next)) {
				next, tick = w, false
			}
		}
		if next.IsZero() || next.After(end) {
			e.now = end
			return
		}
		if next.After(e.now) {
			e.now = next
		}
		for _, nd := range e.nodes {
			if !nd.up {
				continue
			}
			if tick {
				e.input(nd, func(now time.Time) error { return nd.c.Tick(now) })
			} else if w := nd.c.NextWake(); !w.IsZero() && !w.After(e.now) {
				e.input(nd, func(now time.Time) error { return nd.c.Wake(now) })
			}
		}
		if ticks {
			e.stabilize()
		}
	}
	e.t.Fatalf("the clock does not reach %s: timers keep falling due", fmtT(end))
}

// campaign ticks nd, without moving the clock, until its raft starts an
// election.
func (e *itEnv) campaign(nd *itNode) {
	if !nd.up {
		e.line("%s is down", nd.name)
		return
	}
	for i := 1; i <= 2*itElectionTicks; i++ {
		before := len(e.queue)
		e.input(nd, func(now time.Time) error { return nd.c.Tick(now) })
		for _, b := range e.queue[before:] {
			for _, m := range b.msgs {
				if t := m.GetType(); t == raftpb.MsgPreVote || t == raftpb.MsgVote {
					e.line("(%s campaigned after %d ticks)", nd.name, i)
					return
				}
			}
		}
	}
	e.line("%s did not campaign in %d ticks", nd.name, 2*itElectionTicks)
}

// deliver delivers the batches queued now that match, in order; batches
// they cause stay queued, after those not delivered.
func (e *itEnv) deliver(match func(itBatch) bool, drop string) {
	queued := e.queue
	e.queue = nil
	var keep []itBatch
	for _, b := range queued {
		if match(b) {
			e.deliverOne(b, b.to.name == drop)
		} else {
			keep = append(keep, b)
		}
	}
	e.queue = append(keep, e.queue...)
}

func (e *itEnv) stabilize() {
	for range 100 {
		if len(e.queue) == 0 {
			return
		}
		e.deliver(func(itBatch) bool { return true }, "")
	}
	e.line("still messages after 100 rounds")
}

func (e *itEnv) deliverOne(b itBatch, drop bool) {
	if !e.quiet {
		for _, m := range b.msgs {
			e.line("> %s", e.fmtMsg(m))
		}
	}
	if !e.quiet {
		saved := e.indent
		e.indent += "  "
		defer func() { e.indent = saved }()
	}
	from, to := b.from, b.to
	switch {
	case drop:
		if !e.quiet {
			e.line("dropped")
		}
		return
	case e.cut[from.name] || e.cut[to.name]:
		if !e.quiet {
			e.line("lost: partition")
		}
		return
	case !to.up || e.refused[to.name]:
		if from.up && from.inc == b.stamp.Incarnation {
			e.line("%s: connection to %s refused", from.name, to.name)
			e.refuse(from, to)
		}
		return
	}
	var ack Ack
	e.input(to, func(now time.Time) error {
		var err error
		ack, err = to.c.Step(now, from.id, b.msgs, b.stamp, func(m *raftpb.Message, err error) {
			e.line("%s rejects %s from %s: %v", to.name, m.GetType(), from.name, err)
		})
		return err
	})
	if ack.Stamp == (Stamp{}) || !from.up {
		return
	}
	sentAt := itBase.Add(time.Duration(ack.Stamp.At))
	// Every answer carries the receiver's latest acknowledgement to the
	// sender; one that only repeats an earlier batch's is passed on to
	// Acked like any other, but not printed.
	if !e.quiet && ack.Stamp == b.stamp {
		e.line("ack %s->%s term=%d lead=%s promise=%v (batch sent at %s)", to.name, from.name, ack.Term, e.name(ack.Leader), ack.Promise, fmtT(sentAt))
	}
	if ack.Stamp.Incarnation != from.inc {
		e.line("(ignored by %s: stamped by its previous process)", from.name)
		return
	}
	e.input(from, func(now time.Time) error { return from.c.Acked(now, to.id, ack, sentAt) })
}

// refuse reports to nd that a connection to peer was refused, as the
// transport does: PeerRefused, then ReportUnreachable.
func (e *itEnv) refuse(nd, peer *itNode) {
	e.input(nd, func(now time.Time) error {
		if err := nd.c.PeerRefused(now, peer.id); err != nil {
			return err
		}
		return nd.c.ReportUnreachable(now, peer.id)
	})
}

// reachable is what nd's transport can reach now.
func (e *itEnv) reachable(nd *itNode) map[uint64]bool {
	r := map[uint64]bool{}
	for _, p := range e.nodes {
		if p != nd && p.up && !e.cut[p.name] && !e.cut[nd.name] && !e.refused[p.name] {
			r[p.id] = true
		}
	}
	return r
}

func (e *itEnv) inject(t *testing.T, d *datadriven.TestData) {
	var fromName, toName, typ string
	var term, commit, index uint64
	d.ScanArgs(t, "from", &fromName)
	d.ScanArgs(t, "to", &toName)
	d.ScanArgs(t, "type", &typ)
	d.ScanArgs(t, "term", &term)
	if d.HasArg("commit") {
		d.ScanArgs(t, "commit", &commit)
	}
	if d.HasArg("index") {
		d.ScanArgs(t, "index", &index)
	}
	v, ok := raftpb.MessageType_value[typ]
	if !ok {
		d.Fatalf(t, "no message type %s", typ)
	}
	from, to := e.node(t, fromName), e.node(t, toName)
	m := &raftpb.Message{Type: raftpb.MessageType(v).Enum(), From: proto.Uint64(from.id), To: proto.Uint64(to.id),
		Term: proto.Uint64(term), Commit: proto.Uint64(commit), Index: proto.Uint64(index)}
	e.line("%s", e.fmtMsg(m))
	e.queue = append(e.queue, itBatch{from: from, to: to, msgs: []*raftpb.Message{m},
		stamp: Stamp{At: uint64(e.now.Sub(itBase)), Incarnation: from.inc}})
}

func (e *itEnv) status(nd *itNode) {
	if !nd.up {
		e.line("%s: down", nd.name)
		return
	}
	st := nd.c.Status()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s term=%d vote=%s lead=%s", nd.name, RoleName(st.RaftState), st.GetTerm(), e.name(st.GetVote()), e.name(st.Lead))
	if st.LeadTransferee != raft.None {
		fmt.Fprintf(&b, " transferring-to=%s", e.name(st.LeadTransferee))
	}
	if held, term, start, expiry := nd.c.Lease(); held {
		fmt.Fprintf(&b, "; lease term=%d since %s, expires at %s (in %v)", term, fmtT(start), fmtT(expiry), expiry.Sub(e.now))
	} else {
		b.WriteString("; no lease")
	}
	if nd.c.ElectionsHeld() {
		b.WriteString("; elections held (a member's list differs)")
	}
	switch g := nd.c.guard; {
	case nd.c.VoteGuardLength() == 0:
		b.WriteString("; no vote guard")
	case g.voteGuardUntil.IsZero():
		b.WriteString("; vote guard lifted")
	case e.now.Before(g.voteGuardUntil):
		fmt.Fprintf(&b, "; vote guard until %s", fmtT(g.voteGuardUntil))
		if g.liftOnLeader {
			b.WriteString(" or a leader is heard")
		}
	default:
		fmt.Fprintf(&b, "; vote guard over since %s", fmtT(g.voteGuardUntil))
	}
	e.line("%s", b.String())
}

// record is nd's member record, as add-nodes or join set it.
func (e *itEnv) record(nd *itNode) Member {
	if r, ok := e.records[nd.name]; ok {
		return r
	}
	return Member{ID: nd.id, Name: nd.name, Address: nd.name + ":7000"}
}

// join starts a new node on an empty store, to be added by the leader.
func (e *itEnv) join(t *testing.T, d *datadriven.TestData) {
	if len(d.CmdArgs) == 0 {
		d.Fatalf(t, "join n4")
	}
	name := d.CmdArgs[0].Key
	for _, nd := range e.nodes {
		if nd.name == name {
			d.Fatalf(t, "%s exists", name)
		}
	}
	nd := &itNode{idx: len(e.nodes), name: name, id: NodeID(name), join: true}
	r := e.record(nd)
	if d.HasArg("witness") {
		d.ScanArgs(t, "witness", &r.Witness)
	}
	if d.HasArg("priority") {
		d.ScanArgs(t, "priority", &r.Priority)
	}
	e.records[name] = r
	e.nodes = append(e.nodes, nd)
	e.names[nd.id] = name
	nd.store = &itStore{Memory: storage.NewMemory(), fresh: true}
	e.start(nd, false)
}
