package core

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/quorum"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/internal/clusterid"
)

// Membership: who the members are is replicated through raft. A brand-new
// cluster bootstraps from the configured list (each member's record rides in
// the context of its bootstrap entry); from then on the configuration that
// raft applied is the truth, and members are added, removed and replaced
// online with raft's configuration changes (ConfChangeV2):
//
//   - add: the member joins as a learner (it receives the log but neither
//     votes nor counts for the lease) and the leader promotes it to voter
//     once it has caught up;
//   - replace: the same, and the promotion removes the replaced member in
//     the same change, a joint configuration that raft leaves at once
//     (auto-leave), so quorums never shrink to an intermediate set;
//   - remove: one voter or learner, alive or dead.
//
// Why leases stay safe across changes (docs/safety.md, "Membership
// changes"): the lease counts acknowledgements over the configuration raft
// applied, with raft's own quorum code, so in a joint configuration it needs
// a majority of both halves. Raft applies a configuration when it commits,
// and a leader proposes a change only after it applied the previous one, so
// the append that carries a change also tells the follower that the previous
// one committed: every node's applied configuration is at most one change
// behind the newest in its log, and a candidate whose log lacks a committed
// change is refused by a voter that has it. Any rival therefore counts votes
// over the leader's configuration or its neighbour, and the majorities of
// neighbouring configurations (one voter added or removed, or a joint
// configuration and either of its halves) always intersect: one of the
// rival's voters promised the leader its silence.

// Member is one member as the replicated membership records it.
type Member struct {
	ID   uint64 `json:"id"`
	Name string `json:"name"`
	// Address is host:port of its peer listener.
	Address string `json:"address,omitempty"`
	// Identity is the name its certificate carries ("" : Name).
	Identity string `json:"identity,omitempty"`
	// Pins are the pins of its public key, if pinned.
	Pins []string `json:"pins,omitempty"`
	// Witness: a voter that never leads (witness.go).
	Witness bool `json:"witness,omitempty"`
	// Priority: leadership moves to the healthy voter with the highest
	// priority after a stable period (preference.go).
	Priority int `json:"priority,omitempty"`
	// Replaces is the member this one replaces: its promotion to voter
	// removes that one in the same (joint) change.
	Replaces uint64 `json:"replaces,omitempty"`
	// Learner: it is a learner in the applied configuration (not recorded:
	// raft's configuration says so).
	Learner bool `json:"-"`
}

// memberRecords is what a configuration change's context carries.
type memberRecords struct {
	Members []Member `json:"raftelect_members"`
}

// membersContext encodes records for a configuration change's context.
func membersContext(ms ...Member) []byte {
	b, err := json.Marshal(memberRecords{Members: ms})
	if err != nil {
		panic(err) // plain structs always marshal
	}
	return b
}

// Bounds on what a replicated record may hold: it came from a leader, but
// the log must never make a node keep megabytes.
const (
	maxMembers           = 64
	maxMemberStringBytes = 512
)

func parseMembersContext(ctx []byte) ([]Member, error) {
	if len(ctx) == 0 {
		return nil, nil
	}
	var r memberRecords
	if err := json.Unmarshal(ctx, &r); err != nil {
		return nil, fmt.Errorf("member records: %w", err)
	}
	if len(r.Members) > maxMembers {
		return nil, fmt.Errorf("member records: %d members, at most %d", len(r.Members), maxMembers)
	}
	for _, m := range r.Members {
		if err := m.validate(); err != nil {
			return nil, err
		}
	}
	return r.Members, nil
}

func (m Member) validate() error {
	if m.ID == 0 || m.Name == "" {
		return fmt.Errorf("member record %q (ID %x): a member needs a name and a non-zero ID", m.Name, m.ID)
	}
	if NodeID(m.Name) != m.ID {
		return fmt.Errorf("member record %q: ID %x is not the ID of its name (%x)", m.Name, m.ID, NodeID(m.Name))
	}
	for _, s := range append([]string{m.Name, m.Address, m.Identity}, m.Pins...) {
		if len(s) > maxMemberStringBytes {
			return fmt.Errorf("member record %q: a field is longer than %d bytes", m.Name, maxMemberStringBytes)
		}
	}
	return nil
}

// Errors of membership changes.
var (
	// ErrChangeInProgress: another membership change has not finished.
	ErrChangeInProgress = errors.New("another membership change is in progress")
)

// Members returns the members of the applied configuration, voters and
// learners, by name.
func (n *Node) Members() []Member {
	ids := n.configIDs()
	out := make([]Member, 0, len(ids))
	learners := map[uint64]bool{}
	for _, id := range n.confState.GetLearners() {
		learners[id] = true
	}
	for _, id := range n.confState.GetLearnersNext() {
		learners[id] = true
	}
	for _, id := range ids {
		m := n.member(id)
		m.Learner = learners[id]
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// member returns id's record: the replicated one, else what the
// configuration names (a store bootstrapped before records were replicated).
func (n *Node) member(id uint64) Member {
	if m, ok := n.members[id]; ok {
		return m
	}
	for _, m := range n.cfg.Members {
		if m.ID == id {
			return m
		}
	}
	if name := n.cfg.Names[id]; name != "" {
		return Member{ID: id, Name: name}
	}
	return Member{ID: id, Name: fmt.Sprintf("%x", id)}
}

// name is id's name, for logs.
func (n *Node) name(id uint64) string {
	if id == raft.None {
		return ""
	}
	return n.member(id).Name
}

// confCache holds what is derived from the applied configuration and the
// member records, so that inputs on the hot path (every acknowledgement,
// every heartbeat a follower steps, every lease check) allocate nothing:
// it is rebuilt only when gen changes (configurationChanged).
type confCache struct {
	gen    uint64
	built  bool
	ids    []uint64        // every node, sorted
	set    map[uint64]bool // the same
	voters quorum.JointConfig
	// rankGone/rank: our campaign rank, for the leader that was gone when
	// it was computed.
	rankGone  uint64
	rank      int
	rankValid bool
}

// configurationChanged marks what confCache holds as stale.
func (n *Node) configurationChanged() { n.confGen++ }

func (n *Node) conf() *confCache {
	c := &n.cache
	if c.built && c.gen == n.confGen {
		return c
	}
	*c = confCache{gen: n.confGen, built: true, set: map[uint64]bool{}}
	cs := n.confState
	for _, l := range [][]uint64{cs.GetVoters(), cs.GetVotersOutgoing(), cs.GetLearners(), cs.GetLearnersNext()} {
		for _, id := range l {
			c.set[id] = true
		}
	}
	c.ids = slices.Sorted(maps.Keys(c.set))
	c.voters[0], c.voters[1] = quorum.MajorityConfig{}, quorum.MajorityConfig{}
	for _, id := range cs.GetVoters() {
		c.voters[0][id] = struct{}{}
	}
	for _, id := range cs.GetVotersOutgoing() {
		c.voters[1][id] = struct{}{}
	}
	return c
}

// configIDs lists every node of the applied configuration, sorted. The
// slice is shared: do not modify it.
func (n *Node) configIDs() []uint64 { return n.conf().ids }

// isMember reports whether id is in the applied configuration.
func (n *Node) isMember(id uint64) bool { return n.conf().set[id] }

// isVoter reports whether id votes in the applied configuration (in either
// half of a joint one).
func (n *Node) isVoter(id uint64) bool {
	return slices.Contains(n.confState.GetVoters(), id) || slices.Contains(n.confState.GetVotersOutgoing(), id)
}

// voters is the applied configuration's voters, as raft's quorum code
// counts them.
// The maps are shared: do not modify them.
func (n *Node) voters() quorum.JointConfig { return n.conf().voters }

// applyConfChange applies a committed configuration change: the records it
// carries, then raft's configuration.
func (n *Node) applyConfChange(cc raftpb.ConfChangeI, index uint64) {
	v2 := cc.AsV2()
	recs, err := parseMembersContext(v2.GetContext())
	if err != nil {
		// A record we cannot read must not stop the configuration change
		// (raft has committed it): the member is known by its ID until a
		// later record names it.
		n.log.Warn("configuration change without readable member records", "index", index, "err", err)
	}
	cs, err := n.applyToRaft(cc)
	if err != nil {
		// Committed, but raft cannot apply it (only a forged entry is
		// like that: this cluster proposes one valid change at a time).
		// Skipping it keeps this node alive with its configuration; a
		// crash here would repeat at every restart.
		n.log.Error("refusing a committed configuration change raft cannot apply", "index", index, "err", err)
		return
	}
	n.confState = cs
	n.configurationChanged()
	for _, r := range recs {
		if r.Replaces != 0 && r.Replaces == r.ID {
			r.Replaces = 0
		}
		if n.isMember(r.ID) {
			n.members[r.ID] = r
		}
	}
	for id := range n.members {
		if !n.isMember(id) {
			delete(n.members, id)
		}
	}
	n.log.Info("membership changed", "index", index, "members", n.memberSummary())
	n.membersChanged = true // one EventMembers per Ready (handleReady)
}

// membersApplied reports the configuration changes of one Ready: one
// EventMembers, and EventRemoved if we are no longer a member.
func (n *Node) membersApplied(now time.Time) {
	n.membersChanged = false
	n.out.Events = append(n.out.Events, Event{Kind: EventMembers, Role: n.role, Term: n.term, Vote: n.vote, Lead: n.lead, At: now})
	if !n.isMember(n.cfg.ID) && len(n.configIDs()) > 0 && !n.removed {
		n.removed = true
		n.log.Warn("this node was removed from the cluster", "applied", n.applied)
		n.out.Events = append(n.out.Events, Event{Kind: EventRemoved, Role: n.role, Term: n.term, Vote: n.vote, Lead: n.lead, At: now})
	}
}

// applyToRaft applies cc to raft, which panics on a change it cannot make
// (removing every voter, say); the panic comes before raft changes
// anything, so it is turned into an error.
func (n *Node) applyToRaft(cc raftpb.ConfChangeI) (cs *raftpb.ConfState, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return n.rn.ApplyConfChange(cc), nil
}

// memberSummary is the applied membership for a log line: names, with
// learners and witnesses marked.
func (n *Node) memberSummary() string {
	var b bytes.Buffer
	for i, m := range n.Members() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(m.Name)
		if m.Learner {
			b.WriteString("(learner)")
		}
		if m.Witness {
			b.WriteString("(witness)")
		}
	}
	if len(n.confState.GetVotersOutgoing()) > 0 {
		b.WriteString(" [joint]")
	}
	return b.String()
}

// Established reports whether this node's cluster has elected a leader
// that committed an entry (or recorded a cluster ID): from then on the
// membership is raft's, and member lists that differ in configuration
// files no longer matter (the transport stops refusing over them; see
// transport/agreement.go). Before that, a brand-new cluster relies on every
// member's list being the same.
//
// A node that joins (Config.Join on an empty store) is established from the
// start: it has no list of its own, and takes its membership from the
// leader's log.
func (n *Node) Established() bool {
	return n.identity.ClusterID != "" || n.appliedTerm >= 2 || n.joining
}

// changePending reports why a new membership change must wait, if it must:
// a joint configuration not yet left, a change in the log not yet applied,
// or a member added and not yet promoted (other than except: removing that
// learner cancels its addition).
func (n *Node) changePending(except uint64) error {
	if len(n.confState.GetVotersOutgoing()) > 0 {
		return fmt.Errorf("%w: the cluster is in a joint configuration, which it leaves by itself in a moment", ErrChangeInProgress)
	}
	last, err := n.store.LastIndex()
	if err != nil {
		return err
	}
	if last > n.applied {
		first := max(n.applied+1, n.firstIndex())
		ents, err := n.store.Entries(first, last+1, 1<<20)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if t := e.GetType(); t == raftpb.EntryConfChange || t == raftpb.EntryConfChangeV2 {
				return fmt.Errorf("%w: a configuration change at index %d is not applied yet", ErrChangeInProgress, e.GetIndex())
			}
		}
	}
	for _, m := range n.Members() {
		if m.Learner && m.ID != except {
			return fmt.Errorf("%w: %s was added and is catching up as a learner; it becomes a voter once it has the log (see `members list`)", ErrChangeInProgress, m.Name)
		}
	}
	return nil
}

func (n *Node) firstIndex() uint64 {
	f, err := n.store.FirstIndex()
	if err != nil {
		return 1
	}
	return f
}

// AddMember proposes m as a new member: it joins as a learner and becomes a
// voter once it has caught up (m.Replaces, if set, is removed by that same
// change). Only the leader proposes; one change at a time.
func (n *Node) AddMember(now time.Time, m Member) error {
	if n.rn.BasicStatus().RaftState != raft.StateLeader {
		return ErrNotLeader
	}
	m.ID, m.Learner = NodeID(m.Name), false
	if err := m.validate(); err != nil {
		return err
	}
	if m.Address == "" {
		return fmt.Errorf("cannot add %s: it needs the address of its peer listener (host:port)", m.Name)
	}
	for _, cur := range n.Members() {
		if cur.ID == m.ID {
			return fmt.Errorf("cannot add %s: it is already a member", m.Name)
		}
	}
	if m.Replaces != 0 && !n.isVoter(m.Replaces) {
		return fmt.Errorf("cannot replace %s: it is not a voter", n.name(m.Replaces))
	}
	if err := n.changePending(0); err != nil {
		return err
	}
	if len(n.configIDs()) >= maxMembers {
		return fmt.Errorf("cannot add %s: the cluster has %d members, the most it may have", m.Name, maxMembers)
	}
	cc := &raftpb.ConfChangeV2{
		Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: proto.Uint64(m.ID)}},
		Context: membersContext(m),
	}
	if err := n.rn.ProposeConfChange(cc); err != nil {
		return fmt.Errorf("propose adding %s: %w", m.Name, err)
	}
	n.log.Info("adding member as a learner", "member", m.Name, "address", m.Address, "witness", m.Witness, "priority", m.Priority)
	return n.afterInput(now)
}

// RemoveMember proposes removing member id (alive or dead). The leader does
// not remove itself: transfer leadership first. It refuses a removal that
// would leave fewer voters that acknowledged us within an election timeout
// than a majority of the voters that remain: such a cluster could not
// commit, nor elect.
func (n *Node) RemoveMember(now time.Time, id uint64) error {
	if n.rn.BasicStatus().RaftState != raft.StateLeader {
		return ErrNotLeader
	}
	if !n.isMember(id) {
		return fmt.Errorf("cannot remove %s: it is not a member", n.name(id))
	}
	if id == n.cfg.ID {
		return fmt.Errorf("cannot remove %s: it is the leader; transfer leadership to another member first (`raftelect transfer`), then remove it", n.name(id))
	}
	if err := n.changePending(id); err != nil {
		return err
	}
	if n.isVoter(id) {
		remaining, live := 0, 0
		for vid := range n.voters()[0] {
			if vid == id {
				continue
			}
			remaining++
			if vid == n.cfg.ID || now.Sub(n.lease.lastAck(vid)) <= n.electionTimeout {
				live++
			}
		}
		if remaining == 0 {
			return fmt.Errorf("cannot remove %s: it is the last voter besides this one", n.name(id))
		}
		if live < remaining/2+1 && now.Sub(n.leaderSince) < n.electionTimeout {
			return fmt.Errorf("%w: this leader was elected %v ago and has not yet heard from enough of the %d voters that would remain to know they are alive; try again in a moment",
				ErrChangeInProgress, now.Sub(n.leaderSince).Round(time.Millisecond), remaining)
		}
		if live < remaining/2+1 {
			return fmt.Errorf("cannot remove %s: of the %d voters that would remain only %d acknowledged this leader within an election timeout, fewer than the %d a quorum needs; bring members back first",
				n.name(id), remaining, live, remaining/2+1)
		}
	}
	cc := &raftpb.ConfChangeV2{
		Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(id)}},
	}
	if err := n.rn.ProposeConfChange(cc); err != nil {
		return fmt.Errorf("propose removing %s: %w", n.name(id), err)
	}
	n.log.Info("removing member", "member", n.name(id))
	return n.afterInput(now)
}

// promoteCaughtUpLearners runs on the leader: a learner whose log matches
// ours and that acknowledged us within a heartbeat or two becomes a voter,
// removing the member it replaces in the same (joint) change.
func (n *Node) promoteCaughtUpLearners(now time.Time) {
	learners := n.confState.GetLearners()
	if len(learners) == 0 || len(n.confState.GetVotersOutgoing()) > 0 || n.promotedTerm == n.term && n.promotedAt > n.applied {
		return
	}
	st := n.rn.Status()
	last := st.Progress[n.cfg.ID].Match
	for _, id := range slices.Sorted(slices.Values(learners)) {
		pr, ok := st.Progress[id]
		if !ok || pr.Match < last || now.Sub(n.lease.lastAck(id)) > 2*n.cfg.Tick {
			continue
		}
		m := n.member(id)
		changes := []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(id)}}
		// Replacing the leader itself is allowed: it leads the joint
		// configuration (its lease needs a quorum of each half, and it is
		// no voter of the incoming one), and steps down when raft leaves
		// it (StepDownOnRemoval), then stops as removed.
		if r := m.Replaces; r != 0 && n.isVoter(r) {
			changes = append(changes, &raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(r)})
		}
		m.Replaces = 0
		cc := &raftpb.ConfChangeV2{Changes: changes, Context: membersContext(m)}
		if err := n.rn.ProposeConfChange(cc); err != nil {
			n.log.Debug("propose promotion", "member", m.Name, "err", err)
			return
		}
		n.promotedTerm, n.promotedAt = n.term, last+1
		n.log.Info("promoting caught-up learner to voter", "member", m.Name, "replaces", n.name(n.member(id).Replaces))
		return
	}
}

// handOffIfLeaving: a leader that the joint configuration it leads leaves
// out of the incoming half (it is being replaced) hands leadership to a
// voter of that half at once, rather than stepping down when raft leaves
// the joint configuration and leaving the cluster to wait out every
// follower's promise (an election timeout without a leader). The transfer
// ends the lease and fences it first, as every transfer does.
func (n *Node) handOffIfLeaving(now time.Time) {
	if len(n.confState.GetVotersOutgoing()) == 0 || slices.Contains(n.confState.GetVoters(), n.cfg.ID) {
		return
	}
	incoming := map[uint64]bool{}
	for _, id := range n.confState.GetVoters() {
		incoming[id] = true
	}
	n.handLeadershipTo(now, incoming, "this leader is being replaced: handing leadership to a member that stays")
}

// Snapshot data: the cluster ID and the member records, so a node that
// catches up from a snapshot (a new member, say) learns both.
const snapshotMagic = "raftelect.snapshot.v2:"

type snapshotRecord struct {
	ClusterID string   `json:"cluster_id,omitempty"`
	Members   []Member `json:"members,omitempty"`
}

func (n *Node) snapshotData() []byte {
	recs := slices.Collect(maps.Values(n.members))
	if len(recs) == 0 {
		// Nothing but the cluster ID: the format every release reads.
		if id := n.identity.ClusterID; id != "" {
			return clusterid.Record(id)
		}
		return nil
	}
	slices.SortFunc(recs, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	b, err := json.Marshal(snapshotRecord{ClusterID: n.identity.ClusterID, Members: recs})
	if err != nil {
		panic(err)
	}
	return append([]byte(snapshotMagic), b...)
}

// applySnapshotData takes the cluster ID and member records of a snapshot.
func (n *Node) applySnapshotData(now time.Time, data []byte) error {
	rest, ok := bytes.CutPrefix(data, []byte(snapshotMagic))
	if !ok {
		return n.learnClusterID(now, data)
	}
	var r snapshotRecord
	if err := json.Unmarshal(rest, &r); err != nil {
		// Only a forged snapshot is unreadable; members stay known by ID.
		n.log.Error("snapshot with unreadable member records", "err", err)
		return nil
	}
	clear(n.members)
	n.configurationChanged()
	for _, m := range r.Members {
		if err := m.validate(); err != nil {
			n.log.Warn("snapshot: unreadable member record", "err", err)
			continue
		}
		n.members[m.ID] = m
	}
	if r.ClusterID != "" {
		return n.learnClusterID(now, clusterid.Record(r.ClusterID))
	}
	return nil
}

// peerVoters lists the voters of the applied configuration other than us.
func (n *Node) peerVoters() []uint64 {
	var out []uint64
	for _, id := range n.configIDs() {
		if id != n.cfg.ID && n.isVoter(id) {
			out = append(out, id)
		}
	}
	return out
}
