package election

import (
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// stepGuard is the second half of inbound validation (the first, stateless
// half is transport's inboundValidator): the checks that depend on raft's
// state, run on the raft loop just before Step. Raft assumes its peers are
// correct and panics on some impossible inputs; a message that would reach
// one of those panics is rejected here instead.
type stepGuard struct {
	rn    *raft.RawNode
	store raft.Storage
	// voteGuardUntil: until then this node grants no vote or pre-vote. See
	// docs/safety.md: a restarted node may have acknowledged a leader (whose
	// lease counts on it) or, with lost state, voted in the current term.
	voteGuardUntil time.Time
	// liftOnLeader ends the guard once a leader's heartbeat or append resets
	// our election timer: raft's in-lease check takes over from there. Not
	// after a start without state, where the guard also covers a vote we
	// may have cast and forgotten.
	liftOnLeader bool
}

// leaderHeard is called when a heartbeat, append or snapshot from the
// leader of our term has reset raft's election timer.
func (g *stepGuard) leaderHeard() {
	if g.liftOnLeader {
		g.voteGuardUntil = time.Time{}
	}
}

// check returns skip=true for a message to drop quietly (a vote request
// during the vote guard) and an error for one that must be rejected. It may
// lower a heartbeat's commit index (see below).
func (g *stepGuard) check(m *raftpb.Message, now time.Time) (skip bool, err error) {
	switch m.GetType() {
	case raftpb.MsgVote, raftpb.MsgPreVote:
		if now.Before(g.voteGuardUntil) {
			return true, nil
		}
	case raftpb.MsgHeartbeat:
		// A heartbeat's commit beyond our last index makes raft panic. A
		// correct leader sends one to a node that lost its log (in-memory
		// store restarted, data directory emptied) until it learns the
		// node's real progress, so clamp rather than reject: commit only
		// says "at least this much is committed", and less is still true.
		last, err := g.store.LastIndex()
		if err != nil {
			return false, err
		}
		if m.GetCommit() > last {
			m.Commit = &last
		}
	case raftpb.MsgAppResp:
		// An acknowledgement beyond our log would make the leader believe
		// entries are replicated that do not exist.
		last, err := g.store.LastIndex()
		if err != nil {
			return false, err
		}
		if m.GetIndex() > last {
			return false, fmt.Errorf("MsgAppResp for index %d beyond our last index %d", m.GetIndex(), last)
		}
	case raftpb.MsgTimeoutNow:
		// Only the leader we follow may hand us leadership, in its term.
		st := g.rn.BasicStatus()
		if m.GetFrom() != st.Lead || m.GetTerm() != st.GetTerm() {
			return false, fmt.Errorf("MsgTimeoutNow from %x in term %d, but we follow %x in term %d", m.GetFrom(), m.GetTerm(), st.Lead, st.GetTerm())
		}
	}
	return false, nil
}
