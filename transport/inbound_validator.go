package transport

import (
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/internal/clusterid"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// Inbound messages come from the network and are untrusted: anyone holding a
// certificate from the cluster's CA can send anything. inboundValidator
// checks everything that does not depend on raft's state; the checks that do
// (commit and log indexes against our own log, who we follow) run on the
// raft loop just before Step (see election's stepGuard). A message that fails
// is rejected with an error and never stepped.
type inboundValidator struct {
	self  uint64
	peers map[uint64]string // every node of the cluster but us
}

// ValidateInbound applies the transport's stateless checks to one message
// that a caller authenticated as callerID sent to node self in a cluster of
// self and peers. The gRPC handler runs the same checks; this is for fuzzing
// the whole inbound path without a network.
func ValidateInbound(m *raftpb.Message, callerID, self uint64, peers map[uint64]string) error {
	v := inboundValidator{self: self, peers: peers}
	return v.validate(m, callerID)
}

// Bounds on the numbers a message may carry. Raft does arithmetic on terms
// and indexes (term+1 on every campaign, index+len(entries), commit+1) and
// trusts its peers not to send values where that overflows; a node that
// persisted a term near 2^64 crashed on every restart. These bounds are far
// beyond anything a correct cluster reaches and far below overflow:
//
//   - MaxTerm: terms grow by one per election. A cluster electing a new
//     leader every millisecond reaches 2^48 after 8,900 years. From MaxTerm
//     to 2^64 there is room for 2^64-2^48 more increments, so no sum raft
//     makes of an accepted term overflows.
//   - Indexes: in this cluster the log holds only the bootstrap
//     configuration (one entry per node, term 1), the empty entry raft
//     appends for each elected leader, and the cluster ID record, which a
//     leader proposes at most once per term until one is applied (see
//     election/cluster_identity.go). So an entry of term t sits at index at
//     most nodes+2t, every index a correct node sends is at most that for
//     the message's term, and MaxIndexAt allows twice as much again
//     (IndexesPerTerm). An index is therefore only as hostile as the term
//     that comes with it, and the term's movement is bounded too (the step
//     guard's term budget, election/step_guard.go). Whoever makes the
//     cluster propose more must revisit IndexesPerTerm.
const (
	MaxTerm        = 1 << 48
	IndexesPerTerm = 4
)

// MaxIndexAt is the highest log index a member of a cluster of `nodes`
// nodes may name in a message of term `term` (see MaxTerm).
func MaxIndexAt(term uint64, nodes int) uint64 {
	return uint64(nodes) + IndexesPerTerm*min(term, MaxTerm)
}

// Per-request caps. A correct sender never reaches them: its lanes send at
// most MaxMessagesPerSend messages per request (transport.go, runLane), and
// raft fills an append up to MaxAppendBytes (election sets MaxSizePerMsg to
// it) with entries of at least MinEntryBytes each: a term and an index,
// both non-zero. Bytes are capped by gRPC in both directions
// (Options.MaxMessageBytes, 4 MiB).
const (
	MaxMessagesPerSend  = 1024
	MaxEntriesPerAppend = 4096
	MinEntryBytes       = 4
	MaxAppendBytes      = MaxEntriesPerAppend * MinEntryBytes
	// MaxContextBytes bounds a message's opaque context: raft sets one only
	// on a vote forced by a leadership transfer ("CampaignTransfer") and
	// on read-index heartbeats, which this cluster never sends.
	MaxContextBytes = 64
)

// ValidateRequest checks what bounds a whole Send request rather than one
// message.
func ValidateRequest(req *pb.SendRequest) error {
	if n := len(req.GetMessages()); n > MaxMessagesPerSend {
		return fmt.Errorf("%d messages in one request, at most %d (a correct peer splits larger batches)", n, MaxMessagesPerSend)
	}
	return nil
}

// remoteTypes are the message types raft nodes exchange over the network in
// a cluster that proposes nothing: no proposals, no read-index requests, and
// no leadership-transfer requests (Transfer is only taken on the leader
// itself). Everything else is local to a node, and raft treats it as such.
var remoteTypes = [...]bool{
	raftpb.MsgApp:           true,
	raftpb.MsgAppResp:       true,
	raftpb.MsgVote:          true,
	raftpb.MsgVoteResp:      true,
	raftpb.MsgSnap:          true,
	raftpb.MsgHeartbeat:     true,
	raftpb.MsgHeartbeatResp: true,
	raftpb.MsgTimeoutNow:    true,
	raftpb.MsgPreVote:       true,
	raftpb.MsgPreVoteResp:   true,
	raftpb.MsgForgetLeader:  false,
}

// validate checks one message sent by the caller whose certificate named
// callerID.
func (v *inboundValidator) validate(m *raftpb.Message, callerID uint64) error {
	if m == nil {
		return fmt.Errorf("nil message")
	}
	t := m.GetType()
	if int(t) < 0 || int(t) >= len(remoteTypes) || !remoteTypes[t] {
		return fmt.Errorf("message type %v is not accepted from the network", t)
	}
	if m.GetFrom() != callerID {
		return fmt.Errorf("message from %x does not match the caller's certificate (%x)", m.GetFrom(), callerID)
	}
	if _, ok := v.peers[m.GetFrom()]; !ok {
		return fmt.Errorf("message from unknown node %x", m.GetFrom())
	}
	if m.GetTo() != v.self {
		return fmt.Errorf("message to %x, but this node is %x", m.GetTo(), v.self)
	}
	if m.GetTerm() == 0 {
		return fmt.Errorf("%v with term 0 (raft would treat it as local)", t)
	}
	if err := v.validateNumbers(m); err != nil {
		return fmt.Errorf("%v: %w", t, err)
	}
	if len(m.GetContext()) > MaxContextBytes {
		return fmt.Errorf("%v carries a %d-byte context, at most %d", t, len(m.GetContext()), MaxContextBytes)
	}
	if len(m.GetResponses()) > 0 {
		return fmt.Errorf("%v carries local storage responses", t)
	}
	if t != raftpb.MsgSnap && m.GetSnapshot() != nil {
		return fmt.Errorf("%v carries a snapshot", t)
	}
	if t != raftpb.MsgApp && len(m.GetEntries()) > 0 {
		return fmt.Errorf("%v carries entries", t)
	}
	switch t {
	case raftpb.MsgApp:
		return v.validateAppend(m)
	case raftpb.MsgSnap:
		return v.validateSnapshot(m)
	}
	return nil
}

// validateNumbers applies MaxTerm and MaxIndexAt to every term and index
// of m but the entries and the snapshot, which validateAppend and
// validateSnapshot check. Every index must be one the sender's log could
// hold at the message's term: the previous entry of an append, a vote
// request's last entry, an acknowledgement's index and hint, a commit.
func (v *inboundValidator) validateNumbers(m *raftpb.Message) error {
	term := m.GetTerm()
	if term > MaxTerm {
		return fmt.Errorf("term %d above the bound %d (a correct cluster never gets there)", term, uint64(MaxTerm))
	}
	if m.GetLogTerm() > term {
		return fmt.Errorf("log term %d above message term %d", m.GetLogTerm(), term)
	}
	limit := MaxIndexAt(term, len(v.peers)+1)
	for _, f := range [...]struct {
		name  string
		value uint64
	}{{"index", m.GetIndex()}, {"commit", m.GetCommit()}, {"reject hint", m.GetRejectHint()}} {
		if f.value > limit {
			return fmt.Errorf("%s %d above %d, the highest a log can reach by term %d", f.name, f.value, limit, term)
		}
	}
	return nil
}

// validateAppend checks the shape of an append: entries contiguous after the
// previous index, terms not decreasing and not above the message's term.
// Raft assumes all of this of a leader and panics (or corrupts its log) when
// it does not hold.
func (v *inboundValidator) validateAppend(m *raftpb.Message) error {
	prevTerm := m.GetLogTerm()
	if n := len(m.GetEntries()); n > MaxEntriesPerAppend {
		return fmt.Errorf("MsgApp carries %d entries, at most %d", n, MaxEntriesPerAppend)
	}
	nodes := len(v.peers) + 1
	if m.GetIndex() > MaxIndexAt(prevTerm, nodes) {
		return fmt.Errorf("MsgApp previous entry at index %d with term %d: a log holds at most %d entries by term %d", m.GetIndex(), prevTerm, MaxIndexAt(prevTerm, nodes), prevTerm)
	}
	for i, e := range m.GetEntries() {
		if e == nil {
			return fmt.Errorf("MsgApp entry %d is nil", i)
		}
		if want := m.GetIndex() + 1 + uint64(i); e.GetIndex() != want {
			return fmt.Errorf("MsgApp entry %d has index %d, want %d (entries must follow index %d)", i, e.GetIndex(), want, m.GetIndex())
		}
		if e.GetTerm() < prevTerm || e.GetTerm() > m.GetTerm() {
			return fmt.Errorf("MsgApp entry %d has term %d outside [%d, %d]", i, e.GetTerm(), prevTerm, m.GetTerm())
		}
		if e.GetIndex() > MaxIndexAt(e.GetTerm(), nodes) {
			return fmt.Errorf("MsgApp entry %d at index %d with term %d: a log holds at most %d entries by term %d", i, e.GetIndex(), e.GetTerm(), MaxIndexAt(e.GetTerm(), nodes), e.GetTerm())
		}
		prevTerm = e.GetTerm()
		switch e.GetType() {
		case raftpb.EntryNormal:
			// The cluster proposes nothing but its ID (internal/clusterid).
			if _, ok := clusterid.Parse(e.GetData()); len(e.GetData()) > 0 && !ok {
				return fmt.Errorf("MsgApp entry %d carries data other than a cluster ID record: this cluster proposes nothing else", i)
			}
		case raftpb.EntryConfChange:
			if err := v.validateBootstrapConfChange(e); err != nil {
				return fmt.Errorf("MsgApp entry %d: %w", i, err)
			}
		default:
			return fmt.Errorf("MsgApp entry %d has type %v: membership is fixed by configuration", i, e.GetType())
		}
	}
	return nil
}

// validateBootstrapConfChange accepts only the configuration entries every
// node writes when it bootstraps: adding one configured voter, within the
// first len(cluster) indexes.
func (v *inboundValidator) validateBootstrapConfChange(e *raftpb.Entry) error {
	if e.GetIndex() > uint64(len(v.peers)+1) {
		return fmt.Errorf("configuration change at index %d, after bootstrap: membership is fixed by configuration", e.GetIndex())
	}
	var cc raftpb.ConfChange
	if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
		return fmt.Errorf("malformed configuration change: %v", err)
	}
	if cc.GetType() != raftpb.ConfChangeAddNode {
		return fmt.Errorf("configuration change %v: membership is fixed by configuration", cc.GetType())
	}
	if id := cc.GetNodeId(); id != v.self {
		if _, ok := v.peers[id]; !ok {
			return fmt.Errorf("configuration change adds unknown node %x", id)
		}
	}
	return nil
}

// validateSnapshot checks that a snapshot is well formed and carries exactly
// the configured membership.
func (v *inboundValidator) validateSnapshot(m *raftpb.Message) error {
	s := m.GetSnapshot()
	md := s.GetMetadata()
	if s == nil || md == nil || md.GetIndex() == 0 {
		return fmt.Errorf("MsgSnap without snapshot metadata")
	}
	if md.GetTerm() == 0 || md.GetTerm() > m.GetTerm() {
		return fmt.Errorf("MsgSnap snapshot term %d outside [1, %d]", md.GetTerm(), m.GetTerm())
	}
	if limit := MaxIndexAt(md.GetTerm(), len(v.peers)+1); md.GetIndex() > limit {
		return fmt.Errorf("MsgSnap snapshot at index %d with term %d: a log holds at most %d entries by term %d", md.GetIndex(), md.GetTerm(), limit, md.GetTerm())
	}
	if _, ok := clusterid.Parse(s.GetData()); len(s.GetData()) > 0 && !ok {
		return fmt.Errorf("MsgSnap carries data other than a cluster ID record")
	}
	cs := md.GetConfState()
	if len(cs.GetLearners()) > 0 || len(cs.GetVotersOutgoing()) > 0 || len(cs.GetLearnersNext()) > 0 || cs.GetAutoLeave() {
		return fmt.Errorf("MsgSnap configuration has learners or a joint state: membership is fixed by configuration")
	}
	voters := cs.GetVoters()
	if len(voters) != len(v.peers)+1 {
		return fmt.Errorf("MsgSnap configuration has %d voters, the cluster has %d nodes", len(voters), len(v.peers)+1)
	}
	seen := make(map[uint64]bool, len(voters))
	for _, id := range voters {
		_, known := v.peers[id]
		if (!known && id != v.self) || seen[id] {
			return fmt.Errorf("MsgSnap configuration voters %v differ from the configured cluster", voters)
		}
		seen[id] = true
	}
	return nil
}
