package transport

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/confchange"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
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
//     configuration (one entry per node, term 1, at most MaxMembers), the
//     empty entry raft appends for each elected leader, the cluster ID
//     record, which a leader proposes at most once per term until one is
//     applied (internal/core/cluster_id.go), and membership changes, up to
//     three entries each (a learner added, its promotion, and leaving the
//     joint configuration of a replacement), one change at a time. So an
//     entry of term t sits at index at most MaxMembers+(2+3c)t for c
//     changes per term, and MaxIndexAt allows IndexesPerTerm per term:
//     twenty changes in one leader's term. An index is therefore only as
//     hostile as the term that comes with it, and the term's movement is
//     bounded too (the step guard's term budget, internal/core/step_guard.go).
//     MaxIndexAt(MaxTerm) is below 2^55: no sum raft makes overflows. A
//     leader that makes more changes in one term than the bound allows has
//     its appends refused; it loses its quorum, and the next term's bound
//     admits them.
const (
	MaxTerm        = 1 << 48
	IndexesPerTerm = 64
	// MaxMembers bounds a membership: a leader election of a handful of
	// sites, with room to spare.
	MaxMembers = 64
)

// MaxIndexAt is the highest log index a member may name in a message of
// term `term` (see MaxTerm). nodes is kept for callers that know their
// cluster's size; the bound uses MaxMembers, as members change.
func MaxIndexAt(term uint64, nodes int) uint64 {
	return uint64(max(nodes, MaxMembers)) + IndexesPerTerm*min(term, MaxTerm)
}

// MaxConfContextBytes bounds a configuration change's context: the records
// of the members it adds (internal/core, membership.go), a few hundred
// bytes each.
const MaxConfContextBytes = 64 << 10

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
	if req.GetHeartbeat() != nil {
		// A stream makes it a raft message before this check: here it
		// came on a unary Send, or from a caller that is no member.
		return errors.New("a compact heartbeat outside a member's stream (send it as a raft message)")
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
		case raftpb.EntryConfChangeV2:
			if err := validateConfChangeV2(e); err != nil {
				return fmt.Errorf("MsgApp entry %d: %w", i, err)
			}
		default:
			return fmt.Errorf("MsgApp entry %d has type %v, which this cluster never proposes", i, e.GetType())
		}
	}
	return nil
}

// validateBootstrapConfChange accepts only the configuration entries every
// node writes when it bootstraps: adding one voter, in term 1, within the
// first MaxMembers indexes. (Members change later with ConfChangeV2
// entries; the bootstrap's voters may have been removed since.)
func (v *inboundValidator) validateBootstrapConfChange(e *raftpb.Entry) error {
	if e.GetIndex() > MaxMembers || e.GetTerm() != 1 {
		return fmt.Errorf("legacy configuration change at index %d in term %d: only the bootstrap (term 1) writes those", e.GetIndex(), e.GetTerm())
	}
	var cc raftpb.ConfChange
	if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
		return fmt.Errorf("malformed configuration change: %v", err)
	}
	if cc.GetType() != raftpb.ConfChangeAddNode || cc.GetNodeId() == 0 {
		return fmt.Errorf("bootstrap configuration change %v of node %x: a bootstrap only adds voters", cc.GetType(), cc.GetNodeId())
	}
	if len(cc.GetContext()) > MaxConfContextBytes {
		return fmt.Errorf("configuration change context of %d bytes, at most %d", len(cc.GetContext()), MaxConfContextBytes)
	}
	return nil
}

// validateConfChangeV2 checks a membership change's shape: what the core
// reads from it (its records, internal/core/membership.go) and what raft
// can apply is checked when it is applied, where a change raft refuses is
// skipped, never a crash.
func validateConfChangeV2(e *raftpb.Entry) error {
	var cc raftpb.ConfChangeV2
	if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
		return fmt.Errorf("malformed configuration change: %v", err)
	}
	if n := len(cc.GetChanges()); n > 2*MaxMembers {
		return fmt.Errorf("configuration change of %d changes, at most %d", n, 2*MaxMembers)
	}
	for _, c := range cc.GetChanges() {
		if c.GetNodeId() == 0 {
			return fmt.Errorf("configuration change names node 0")
		}
		switch c.GetType() {
		case raftpb.ConfChangeAddNode, raftpb.ConfChangeRemoveNode, raftpb.ConfChangeAddLearnerNode:
		default:
			return fmt.Errorf("configuration change of type %v, which this cluster never proposes", c.GetType())
		}
	}
	if len(cc.GetContext()) > MaxConfContextBytes {
		return fmt.Errorf("configuration change context of %d bytes, at most %d", len(cc.GetContext()), MaxConfContextBytes)
	}
	return nil
}

// validateSnapshot checks that a snapshot is well formed and its
// membership plausible (the core reads its records when it applies it).
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
	if len(s.GetData()) > MaxConfContextBytes {
		return fmt.Errorf("MsgSnap carries %d bytes of data, at most %d (a cluster ID and member records)", len(s.GetData()), MaxConfContextBytes)
	}
	cs := md.GetConfState()
	if len(cs.GetVoters()) == 0 {
		return fmt.Errorf("MsgSnap configuration has no voter")
	}
	for _, l := range [][]uint64{cs.GetVoters(), cs.GetVotersOutgoing(), cs.GetLearners(), cs.GetLearnersNext()} {
		if len(l) > MaxMembers {
			return fmt.Errorf("MsgSnap configuration lists %d nodes in one set, at most %d", len(l), MaxMembers)
		}
		seen := make(map[uint64]bool, len(l))
		for _, id := range l {
			if id == 0 || seen[id] {
				return fmt.Errorf("MsgSnap configuration %v lists node 0 or a node twice", l)
			}
			seen[id] = true
		}
	}
	// Raft restores a snapshot's configuration with its own change code
	// and panics if the result is not the configuration it was given (a
	// voter that is also a learner, say: FuzzInbound found one). Run the
	// same restore here, where a failure is a refusal.
	trk := tracker.MakeProgressTracker(1, 0)
	cfg, prs, err := confchange.Restore(confchange.Changer{Tracker: trk, LastIndex: md.GetIndex()}, cs)
	if err != nil {
		return fmt.Errorf("MsgSnap configuration cannot be restored: %v", err)
	}
	trk.Config, trk.Progress = cfg, prs
	if err := cs.Equivalent(trk.ConfState()); err != nil {
		return fmt.Errorf("MsgSnap configuration is not what restoring it gives: %v", err)
	}
	return nil
}
