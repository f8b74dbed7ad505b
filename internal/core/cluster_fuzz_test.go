package core

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/storage"
	"github.com/raftelect/raftelect/transport"
)

// The stateful fuzzer: a three-node cluster in one goroutine, with real
// raft RawNodes on memory storage, the transport's validator and the raft
// loop's step path (stepGuard.stepBatch), but no gRPC and no clock: the
// fuzzer's input is a script of ticks, deliveries, drops, campaigns,
// transfers and, when n3 is hostile, messages and acknowledgements forged
// in n3's name. After every step it checks the invariants below; at the end
// it silences the hostile node and requires the honest ones to elect.

const (
	simTick          = 100 * time.Millisecond
	simElectionTicks = 10
	simCompactAbove  = 4 // compact often, so snapshots travel
	simMaxOps        = 400
)

var simNames = []string{"n1", "n2", "n3"}

// simNode is one node: what newRaftLoop and handleReady do, minus the
// transport, the lease and the event log.
type simNode struct {
	name      string
	id        uint64
	rn        *raft.RawNode
	store     *storage.Memory
	guard     stepGuard
	peers     map[uint64]string
	confState *raftpb.ConfState
	applied   uint64
	commit    uint64            // highest commit seen: it never goes down
	committed map[uint64]uint64 // index -> term of every entry applied
}

type simPair struct{ from, to uint64 }

type simCluster struct {
	t       testing.TB
	now     time.Time
	nodes   []*simNode
	byID    map[uint64]*simNode
	hostile bool // n3's messages may be forged
	silent  bool // n3 is cut off (the liveness phase)
	queues  map[simPair][]*raftpb.Message
	acks    map[simPair]uint64 // follower -> leader: acknowledged term
	// Safety across nodes, checked only without a hostile member (raft
	// does not tolerate a Byzantine voter: it may vote twice).
	leaders   map[uint64]uint64 // term -> leader
	committed map[uint64]uint64 // index -> term, cluster-wide
	log       []string          // what happened, for a failure's report
}

func newSimCluster(t testing.TB, hostile bool) *simCluster {
	c := &simCluster{
		t: t, now: time.Unix(1_000_000, 0), byID: map[uint64]*simNode{}, hostile: hostile,
		queues: map[simPair][]*raftpb.Message{}, acks: map[simPair]uint64{},
		leaders: map[uint64]uint64{}, committed: map[uint64]uint64{},
	}
	quiet := discardRaftLogger{}
	var boot []raft.Peer
	for _, name := range simNames {
		boot = append(boot, raft.Peer{ID: NodeID(name)})
	}
	for _, name := range simNames {
		n := &simNode{name: name, id: NodeID(name), store: storage.NewMemory(), peers: map[uint64]string{}, committed: map[uint64]uint64{}}
		for _, other := range simNames {
			if other != name {
				n.peers[NodeID(other)] = other
			}
		}
		rn, err := raft.NewRawNode(&raft.Config{
			ID: n.id, ElectionTick: simElectionTicks, HeartbeatTick: 1, Storage: n.store,
			MaxSizePerMsg: transport.MaxAppendBytes, MaxInflightMsgs: 64,
			CheckQuorum: true, PreVote: true, Logger: quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := rn.Bootstrap(boot); err != nil {
			t.Fatal(err)
		}
		n.rn = rn
		// As after a start without state: two election timeouts.
		n.guard = stepGuard{rn: rn, store: n.store, voteGuardUntil: c.now.Add(2 * simElectionTicks * simTick)}
		c.nodes = append(c.nodes, n)
		c.byID[n.id] = n
		c.ready(n)
	}
	return c
}

func (c *simCluster) fail(format string, args ...any) {
	c.t.Helper()
	tail := c.log[max(0, len(c.log)-40):]
	c.t.Fatalf("%s\nlast steps:\n  %s\nstate:\n%s", fmt.Sprintf(format, args...), strings.Join(tail, "\n  "), c.describe())
}

func (c *simCluster) describe() string {
	var b strings.Builder
	for _, n := range c.nodes {
		st := n.rn.BasicStatus()
		first, _ := n.store.FirstIndex()
		last, _ := n.store.LastIndex()
		fmt.Fprintf(&b, "  %s: %v term %d lead %s commit %d log [%d, %d]\n", n.name, st.RaftState, st.GetTerm(), c.name(st.Lead), st.GetCommit(), first, last)
	}
	return b.String()
}

func (c *simCluster) name(id uint64) string {
	if n := c.byID[id]; n != nil {
		return n.name
	}
	return fmt.Sprintf("%x", id)
}

func (c *simCluster) honest(n *simNode) bool { return !c.hostile || n.name != "n3" }

// ready persists, "sends" and applies n's Ready, as handleReady does.
func (c *simCluster) ready(n *simNode) {
	for range 10 {
		if !n.rn.HasReady() {
			return
		}
		rd := n.rn.Ready()
		if err := n.store.Save(rd.HardState, rd.Entries, rd.Snapshot, rd.MustSync); err != nil {
			c.fail("%s: persist: %v", n.name, err)
		}
		// Heartbeat responses travel as the Send answer's acknowledgement
		// (see deliver), as in the real transport.
		for _, m := range WithoutHeartbeatResponses(rd.Messages) {
			if c.silent && (m.GetTo() == NodeID("n3") || n.name == "n3") {
				continue
			}
			p := simPair{m.GetFrom(), m.GetTo()}
			c.queues[p] = append(c.queues[p], m)
		}
		if s := rd.Snapshot; s != nil && !raft.IsEmptySnap(s) {
			n.confState = s.GetMetadata().GetConfState()
			n.applied = s.GetMetadata().GetIndex()
			c.record(n, s.GetMetadata().GetIndex(), s.GetMetadata().GetTerm())
		}
		for _, e := range rd.CommittedEntries {
			if e.GetType() == raftpb.EntryConfChange {
				var cc raftpb.ConfChange
				if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
					c.fail("%s: committed configuration change %d: %v", n.name, e.GetIndex(), err)
				}
				n.confState = n.rn.ApplyConfChange(&cc)
			}
			n.applied = e.GetIndex()
			c.record(n, e.GetIndex(), e.GetTerm())
		}
		n.rn.Advance(rd)
		if first, err := n.store.FirstIndex(); err == nil && n.applied > first+simCompactAbove {
			if err := n.store.Compact(n.applied, n.confState, nil); err != nil {
				c.fail("%s: compact: %v", n.name, err)
			}
		}
	}
	c.fail("%s: raft kept producing Readies", n.name)
}

// record notes that n applied the entry (index, term): committed entries
// never change, on a node, and (without a hostile member) across nodes.
func (c *simCluster) record(n *simNode, index, term uint64) {
	if was, ok := n.committed[index]; ok && was != term {
		c.fail("%s: committed entry %d changed from term %d to %d", n.name, index, was, term)
	}
	n.committed[index] = term
	if !c.hostile {
		if was, ok := c.committed[index]; ok && was != term {
			c.fail("%s committed entry %d in term %d, another node in term %d", n.name, index, term, was)
		}
		c.committed[index] = term
	}
}

// deliver hands a batch to its receiver as the gRPC handler and the raft
// loop would: the transport's checks (any failure rejects the request),
// the step path, the Ready, and the acknowledgement the answer carries.
func (c *simCluster) deliver(from uint64, to *simNode, msgs []*raftpb.Message, forged bool) {
	req := &pb.SendRequest{Messages: msgs}
	err := transport.ValidateRequest(req)
	for _, m := range msgs {
		if err == nil {
			err = transport.ValidateInbound(m, from, to.id, to.peers)
		}
	}
	if err != nil {
		if !forged {
			c.fail("%s rejected a correct peer's message from %s: %v", to.name, c.name(from), err)
		}
		c.log = append(c.log, fmt.Sprintf("  rejected by the transport: %v", err))
		return
	}
	rejected := func(m *raftpb.Message, err error) {
		// With a hostile member a correct message may meet the budget for
		// a moment (n3 spent it to the last term, then the sender
		// campaigned): the liveness check at the end covers that case.
		if !forged && !c.hostile && errors.Is(err, errTermBudget) {
			c.fail("%s: a correct peer's %v hit the term budget: %v", to.name, m.GetType(), err)
		}
		c.log = append(c.log, fmt.Sprintf("  %s rejected %v: %v", to.name, m.GetType(), err))
	}
	resetBy, _, err := to.guard.stepBatch(msgs, c.now, func() error { c.ready(to); return nil }, rejected)
	if err != nil {
		c.fail("%s: step: %v", to.name, err)
	}
	c.ready(to)
	if st := to.rn.BasicStatus(); resetBy != 0 && resetBy == st.GetTerm() && st.Lead == from {
		to.guard.leaderHeard()
		if !c.silent || from != NodeID("n3") {
			c.acks[simPair{to.id, from}] = st.GetTerm()
		}
	}
}

// ack delivers a Send answer's acknowledgement as applyReports steps it.
func (c *simCluster) ack(from uint64, to *simNode, term uint64) {
	if !to.guard.ackTerm(term) {
		return
	}
	f, t := from, to.id
	if err := to.rn.Step(&raftpb.Message{Type: raftpb.MsgHeartbeatResp.Enum(), From: &f, To: &t, Term: &term}); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
		c.log = append(c.log, fmt.Sprintf("  %s: step acknowledgement: %v", to.name, err))
	}
	c.ready(to)
}

func (c *simCluster) tick(n *simNode) {
	n.rn.Tick()
	c.ready(n)
}

// check applies the invariants to every honest node.
func (c *simCluster) check() {
	for _, n := range c.nodes {
		if !c.honest(n) {
			continue
		}
		st := n.rn.BasicStatus()
		last, err := n.store.LastIndex()
		if err != nil {
			c.fail("%s: last index: %v", n.name, err)
		}
		lastTerm, err := n.store.Term(last)
		if err != nil {
			c.fail("%s: term of last index %d: %v", n.name, last, err)
		}
		if st.GetTerm() > transport.MaxTerm || lastTerm > st.GetTerm() {
			c.fail("%s: term %d, last log term %d: beyond the bound or its own term", n.name, st.GetTerm(), lastTerm)
		}
		if last > transport.MaxIndexAt(lastTerm, len(c.nodes)) {
			c.fail("%s: last index %d with term %d, beyond the bound %d", n.name, last, lastTerm, transport.MaxIndexAt(lastTerm, len(c.nodes)))
		}
		if st.GetCommit() > last || st.GetCommit() < n.commit {
			c.fail("%s: commit %d (was %d), last index %d", n.name, st.GetCommit(), n.commit, last)
		}
		n.commit = st.GetCommit()
		first, _ := n.store.FirstIndex()
		for i, term := range n.committed {
			if i < first || i > last {
				continue
			}
			if got, err := n.store.Term(i); err != nil || got != term {
				c.fail("%s: committed entry %d had term %d, the log now says %d (%v)", n.name, i, term, got, err)
			}
		}
		if st.RaftState == raft.StateLeader && !c.hostile {
			if l, ok := c.leaders[st.GetTerm()]; ok && l != n.id {
				c.fail("two leaders in term %d: %s and %s", st.GetTerm(), c.name(l), n.name)
			}
			c.leaders[st.GetTerm()] = n.id
		}
	}
}

// simInput reads the fuzzer's script; past its end it reads zeros.
type simInput struct {
	b []byte
	i int
}

func (r *simInput) byte() byte {
	if r.i >= len(r.b) {
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

func (r *simInput) done() bool { return r.i >= len(r.b) }

// links returns the links with messages in flight, in a stable order:
// the same script takes the same path (raft's randomized election timeouts
// aside, which it draws from crypto/rand).
func (c *simCluster) links() []simPair {
	var keys []simPair
	for p, q := range c.queues {
		if len(q) > 0 {
			keys = append(keys, p)
		}
	}
	sortPairs(keys)
	return keys
}

// ackPairs returns the pending acknowledgements' links in a stable order.
func (c *simCluster) ackPairs() []simPair {
	keys := make([]simPair, 0, len(c.acks))
	for p := range c.acks {
		keys = append(keys, p)
	}
	sortPairs(keys)
	return keys
}

func sortPairs(keys []simPair) {
	slices.SortFunc(keys, func(a, b simPair) int {
		if a.from != b.from {
			return cmp.Compare(a.from, b.from)
		}
		return cmp.Compare(a.to, b.to)
	})
}

// pick returns the i-th (mod len) of the links with messages in flight.
func (c *simCluster) pick(b byte) (simPair, bool) {
	keys := c.links()
	if len(keys) == 0 {
		return simPair{}, false
	}
	return keys[int(b)%len(keys)], true
}

// step runs one operation of the script.
func (c *simCluster) step(r *simInput) {
	op, arg := r.byte(), r.byte()
	node := c.nodes[int(arg)%len(c.nodes)]
	switch op % 10 {
	case 0, 1: // a tick everywhere: time passes
		c.now = c.now.Add(simTick)
		c.log = append(c.log, "tick")
		for _, n := range c.nodes {
			c.tick(n)
		}
	case 2: // one node ticks alone (clocks drift)
		c.log = append(c.log, "tick "+node.name)
		c.tick(node)
	case 3, 4, 5: // deliver the first 1-4 messages of a link as one batch
		p, ok := c.pick(arg)
		if !ok {
			return
		}
		q := c.queues[p]
		k := min(len(q), 1+int(r.byte()%4))
		batch := slices.Clone(q[:k])
		c.queues[p] = q[k:]
		c.log = append(c.log, fmt.Sprintf("deliver %s->%s %s", c.name(p.from), c.name(p.to), describeMsgs(batch)))
		c.deliver(p.from, c.byID[p.to], batch, false)
	case 6: // the network loses a message
		if p, ok := c.pick(arg); ok {
			c.log = append(c.log, fmt.Sprintf("drop %s->%s %v", c.name(p.from), c.name(p.to), c.queues[p][0].GetType()))
			c.queues[p] = c.queues[p][1:]
		}
	case 7: // an acknowledgement arrives
		if keys := c.ackPairs(); len(keys) > 0 {
			p := keys[int(arg)%len(keys)]
			term := c.acks[p]
			delete(c.acks, p)
			c.log = append(c.log, fmt.Sprintf("ack %s->%s term %d", c.name(p.from), c.name(p.to), term))
			c.ack(p.from, c.byID[p.to], term)
		}
	case 8: // a campaign (a leader known gone) or a leadership transfer
		if node.rn.BasicStatus().RaftState == raft.StateLeader {
			to := c.nodes[int(r.byte())%len(c.nodes)]
			c.log = append(c.log, fmt.Sprintf("%s transfers to %s", node.name, to.name))
			node.rn.TransferLeader(to.id)
		} else {
			c.log = append(c.log, "campaign "+node.name)
			_ = node.rn.Campaign()
		}
		c.ready(node)
	case 9: // the hostile member forges a batch or an acknowledgement
		if !c.hostile {
			return
		}
		target := c.nodes[int(arg)%2] // n1 or n2
		if r.byte()%4 == 0 {
			term := c.forgeTerm(target, r)
			c.log = append(c.log, fmt.Sprintf("forged ack n3->%s term %d", target.name, term))
			c.ack(NodeID("n3"), target, term)
			return
		}
		var batch []*raftpb.Message
		for range 1 + int(r.byte()%3) {
			batch = append(batch, c.forge(target, r))
		}
		c.log = append(c.log, fmt.Sprintf("forged n3->%s %s", target.name, describeMsgs(batch)))
		c.deliver(NodeID("n3"), target, batch, true)
	}
}

func describeMsgs(msgs []*raftpb.Message) string {
	var parts []string
	for _, m := range msgs {
		s := fmt.Sprintf("%v t%d i%d lt%d c%d", m.GetType(), m.GetTerm(), m.GetIndex(), m.GetLogTerm(), m.GetCommit())
		if n := len(m.GetEntries()); n > 0 {
			s += fmt.Sprintf(" +%d", n)
		}
		if md := m.GetSnapshot().GetMetadata(); md != nil {
			s += fmt.Sprintf(" snap %d/%d", md.GetIndex(), md.GetTerm())
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// forgeTerm picks a term near the target's, now and then an extreme one.
func (c *simCluster) forgeTerm(target *simNode, r *simInput) uint64 {
	cur := target.rn.BasicStatus().GetTerm()
	switch b := r.byte(); b % 16 {
	case 0:
		return math.MaxUint64 - uint64(b/16)
	case 1:
		return transport.MaxTerm + uint64(b/16)
	case 2:
		return cur + termBurst + uint64(b/16)
	case 3:
		return cur + 1<<20 + uint64(b)
	default:
		return max(1, cur+uint64(b%8)-2)
	}
}

// forgeIndex picks an index near the target's last or its commit, now and
// then an extreme one.
func (c *simCluster) forgeIndex(target *simNode, r *simInput) uint64 {
	last, _ := target.store.LastIndex()
	commit := target.rn.BasicStatus().GetCommit()
	switch b := r.byte(); b % 16 {
	case 0:
		return math.MaxUint64 - uint64(b/16)
	case 1:
		return 1<<48 + uint64(b)
	case 2, 3, 4, 5, 6, 7, 8:
		return uint64(max(0, int64(last)+int64(b%8)-4))
	default:
		return uint64(max(0, int64(commit)+int64(b%4)-1))
	}
}

// forge makes a message from n3 to target: mostly well formed (so that it
// passes the transport and reaches raft), with terms and indexes near the
// target's and now and then extreme ones.
func (c *simCluster) forge(target *simNode, r *simInput) *raftpb.Message {
	types := [...]raftpb.MessageType{
		raftpb.MsgApp, raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgHeartbeat, raftpb.MsgSnap, raftpb.MsgAppResp,
		raftpb.MsgVote, raftpb.MsgPreVote, raftpb.MsgVoteResp, raftpb.MsgPreVoteResp, raftpb.MsgHeartbeatResp, raftpb.MsgTimeoutNow,
	}
	typ := types[int(r.byte())%len(types)]
	from, to := NodeID("n3"), target.id
	term := c.forgeTerm(target, r)
	m := &raftpb.Message{Type: typ.Enum(), From: &from, To: &to, Term: &term}
	logTermAt := func(i uint64) uint64 {
		first, _ := target.store.FirstIndex()
		last, _ := target.store.LastIndex()
		if i+1 >= first && i <= last {
			if t, err := target.store.Term(i); err == nil && t <= term {
				return t
			}
		}
		return min(term, 1+uint64(r.byte()%4))
	}
	switch typ {
	case raftpb.MsgApp:
		idx := c.forgeIndex(target, r)
		lt := logTermAt(idx)
		m.Index, m.LogTerm = &idx, &lt
		m.Commit = proto.Uint64(c.forgeIndex(target, r))
		et := lt
		for i := range uint64(r.byte() % 4) {
			switch b := r.byte(); b % 4 {
			case 1:
				et = min(term, et+uint64(b%8))
			case 2:
				et = term
			}
			m.Entries = append(m.Entries, &raftpb.Entry{Index: proto.Uint64(idx + 1 + i), Term: proto.Uint64(max(et, 1))})
		}
	case raftpb.MsgHeartbeat:
		m.Commit = proto.Uint64(c.forgeIndex(target, r))
	case raftpb.MsgSnap:
		idx := max(1, c.forgeIndex(target, r))
		st := min(term, max(1, logTermAt(idx)+uint64(r.byte()%3)))
		var voters []uint64
		for _, n := range c.nodes {
			voters = append(voters, n.id)
		}
		m.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: &idx, Term: &st, ConfState: &raftpb.ConfState{Voters: voters}}}
	case raftpb.MsgAppResp:
		m.Index = proto.Uint64(c.forgeIndex(target, r))
		if r.byte()%2 == 1 {
			m.Reject, m.RejectHint = proto.Bool(true), proto.Uint64(c.forgeIndex(target, r))
			m.LogTerm = proto.Uint64(logTermAt(m.GetRejectHint()))
		}
	case raftpb.MsgVote, raftpb.MsgPreVote:
		idx := c.forgeIndex(target, r)
		lt := min(term, logTermAt(idx)+uint64(r.byte()%3))
		m.Index, m.LogTerm = &idx, &lt
	case raftpb.MsgVoteResp, raftpb.MsgPreVoteResp:
		m.Reject = proto.Bool(r.byte()%2 == 1)
	}
	return m
}

// run plays the script, then checks that the honest nodes elect a leader
// once the hostile member is silent and the network delivers everything.
func (c *simCluster) run(script []byte) {
	c.play(script)
	c.settle()
}

// play runs the script's steps, checking the invariants after each.
func (c *simCluster) play(script []byte) {
	r := &simInput{b: script}
	for ops := 0; !r.done() && ops < simMaxOps; ops++ {
		c.step(r)
		c.check()
	}
}

// settle silences the hostile member and requires the honest nodes to
// elect a leader on a reliable network.
func (c *simCluster) settle() {
	if c.hostile {
		c.silent = true
		for p := range c.queues {
			if p.from == NodeID("n3") || p.to == NodeID("n3") {
				delete(c.queues, p)
			}
		}
		for p := range c.acks {
			if p.from == NodeID("n3") || p.to == NodeID("n3") {
				delete(c.acks, p)
			}
		}
	}
	// Generous: the vote guard (two election timeouts) plus many
	// randomized election timeouts.
	const rounds = 40 * simElectionTicks
	for range rounds {
		if c.elected() {
			return
		}
		c.now = c.now.Add(simTick)
		c.log = append(c.log, "tick (liveness)")
		for _, n := range c.nodes {
			if c.honest(n) || !c.silent {
				c.tick(n)
			}
		}
		for range 4 { // messages, their answers, and theirs
			for _, p := range c.links() {
				q := c.queues[p]
				n := min(len(q), transport.MaxMessagesPerSend) // as a sender splits
				c.queues[p] = q[n:]
				c.deliver(p.from, c.byID[p.to], q[:n], false)
			}
			for _, p := range c.ackPairs() {
				term := c.acks[p]
				delete(c.acks, p)
				c.ack(p.from, c.byID[p.to], term)
			}
		}
		c.check()
	}
	c.fail("the honest nodes elected no leader in %d ticks of a reliable network", rounds)
}

// elected reports whether an honest node leads and every other honest node
// follows it in its term.
func (c *simCluster) elected() bool {
	var leader *simNode
	for _, n := range c.nodes {
		if c.honest(n) && n.rn.BasicStatus().RaftState == raft.StateLeader {
			leader = n
		}
	}
	if leader == nil {
		return false
	}
	term := leader.rn.BasicStatus().GetTerm()
	for _, n := range c.nodes {
		if st := n.rn.BasicStatus(); c.honest(n) && (st.Lead != leader.id || st.GetTerm() != term) {
			return false
		}
	}
	return true
}

// FuzzCluster drives scripts of ticks, deliveries, drops, campaigns,
// transfers and (hostile=true) forged messages from n3 through three
// in-process nodes, checking after each step: no panic, terms and indexes
// within the bounds, commit never down and never beyond the log, committed
// entries never change; without a hostile member also at most one leader
// per term and the same committed entries everywhere; and at the end that
// the honest nodes elect a leader.
// Run: go test -run '^$' -fuzz FuzzCluster -parallel 1 ./election/
func FuzzCluster(f *testing.F) {
	for _, s := range clusterSeeds() {
		f.Add(s.hostile, s.script)
	}
	f.Fuzz(func(t *testing.T, hostile bool, script []byte) {
		newSimCluster(t, hostile).run(script)
	})
}

type clusterSeed struct {
	hostile bool
	script  []byte
}

// clusterSeeds are scripts that elect, fail over, transfer, and (hostile)
// forge batches of every kind.
func clusterSeeds() []clusterSeed {
	var elect []byte
	for range 25 { // past the vote guard and an election timeout
		elect = append(elect, 0, 0)
	}
	for range 30 { // deliver everything, a batch at a time
		elect = append(elect, 3, 0, 3)
	}
	churn := slices.Clone(elect)
	for i := range 60 {
		churn = append(churn, byte(i*7), byte(i*13), byte(i*3))
	}
	forge := slices.Clone(elect)
	for i := range 40 {
		forge = append(forge, 9, byte(i), 1, byte(i), byte(i*5), byte(i*11), byte(i*17), byte(i*3), 3, byte(i), 3, 0, 0)
	}
	return []clusterSeed{
		{false, elect},
		{false, churn},
		{true, elect},
		{true, churn},
		{true, forge},
		{true, []byte{9, 0, 1, 2, 16, 0, 0, 0, 9, 1, 1, 2, 0, 2, 0, 0}},
	}
}

// A hostile member that pushes one honest node ever further ahead (a whole
// burst at once, then as fast as the budget grows) cannot split it from the
// other honest node: once the pushing stops they elect a leader. With the
// budget capped at its burst, the other node could never again take the
// pushed node's term, and neither could win an election.
func TestTermBudget_HostilePushCannotSplitHonestNodes(t *testing.T) {
	c := newSimCluster(t, true)
	c.play(clusterSeeds()[0].script) // elect
	n1, n3 := c.nodes[0], NodeID("n3")
	for range 11 {
		term := n1.rn.BasicStatus().GetTerm() + n1.guard.terms.available(c.now)
		hb := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: &n3, To: &n1.id, Term: &term}
		c.deliver(n3, n1, []*raftpb.Message{hb}, true)
		c.check()
		if got := n1.rn.BasicStatus().GetTerm(); got != term {
			t.Fatalf("n1 did not take a push within its budget: term %d, want %d", got, term)
		}
		c.now = c.now.Add(time.Second)
	}
	t.Logf("n1 pushed to term %d, n2 at %d", n1.rn.BasicStatus().GetTerm(), c.nodes[1].rn.BasicStatus().GetTerm())
	c.settle()
}

// TestClusterSeeds runs FuzzCluster's seeds in a plain test run.
func TestClusterSeeds_InvariantsHoldAndHonestNodesElect(t *testing.T) {
	for i, s := range clusterSeeds() {
		t.Run(fmt.Sprint(i), func(t *testing.T) { newSimCluster(t, s.hostile).run(s.script) })
	}
}
