package storage

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/confchange"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// The checks in this file describe the raft states a node may start from.
// raft itself trusts its Storage: given a commit index outside the log it
// panics with a stack trace, given a term below its last entry's it carries
// on and may later append entries of a lower term after higher ones, which
// breaks the log matching property every safety argument rests on. So the
// store checks what it loads, and (defence in depth) what it is asked to
// save, against the same rules.

// ErrInconsistentState is the cause (test with errors.Is) of a refusal by
// OpenBolt (inside its *NotAStoreError) or by Save or Compact of a raft
// state that does not hold together: a commit index outside the log, a term
// below the log's, terms falling along the log, a term, commit or vote
// taken back.
var ErrInconsistentState = errors.New("storage: inconsistent raft state")

// inconsistentStateError says what is wrong with a raft state.
type inconsistentStateError struct{ what string }

func (e *inconsistentStateError) Error() string { return e.what }
func (e *inconsistentStateError) Unwrap() error { return ErrInconsistentState }

func inconsistent(format string, args ...any) error {
	return &inconsistentStateError{what: fmt.Sprintf(format, args...)}
}

// checkState checks a hard state (nil: none recorded) against the log it
// goes with: the snapshot and the last index and term (the snapshot's when
// the log above it is empty). Entry-by-entry rules (consecutive indexes,
// terms that never fall) are checked where the entries are read.
func checkState(hs *raftpb.HardState, snap *raftpb.SnapshotMetadata, lastIndex, lastTerm uint64) error {
	term, vote, commit := hs.GetTerm(), hs.GetVote(), hs.GetCommit()
	snapIndex, snapTerm := snap.GetIndex(), snap.GetTerm()
	switch {
	case snapIndex > 0 && snapTerm == 0:
		return inconsistent("snapshot at index %d has term 0", snapIndex)
	case commit > lastIndex:
		// raft: "state.commit %d is out of range", a panic.
		return inconsistent("commit index %d is beyond the last log index %d", commit, lastIndex)
	case commit < snapIndex:
		// raft starts with everything up to the snapshot committed and
		// panics on a hard state that commits less.
		return inconsistent("commit index %d is below the snapshot index %d", commit, snapIndex)
	case term < snapTerm:
		return inconsistent("term %d is below the snapshot's term %d", term, snapTerm)
	case term < lastTerm:
		// The node's term only grows, and it never stores an entry of a
		// term it has not reached.
		return inconsistent("term %d is below the term %d of log entry %d", term, lastTerm, lastIndex)
	case vote != 0 && term == 0:
		return inconsistent("vote for %x in term 0", vote)
	}
	return nil
}

// checkTransition checks that a hard state may follow the one before it
// (nil: none recorded): terms and commit indexes never fall, and a vote,
// once cast, is never changed within its term. A changed vote is the one
// thing raft's safety cannot survive: two leaders in one term.
func checkTransition(prev, next *raftpb.HardState) error {
	switch {
	case prev == nil:
		return nil
	case next.GetTerm() < prev.GetTerm():
		return inconsistent("term %d would replace the later term %d", next.GetTerm(), prev.GetTerm())
	case next.GetTerm() == prev.GetTerm() && prev.GetVote() != 0 && next.GetVote() != prev.GetVote():
		return inconsistent("vote for %x would replace the vote for %x in term %d", next.GetVote(), prev.GetVote(), prev.GetTerm())
	case next.GetCommit() < prev.GetCommit():
		return inconsistent("commit index %d would replace the higher commit index %d", next.GetCommit(), prev.GetCommit())
	}
	return nil
}

// checkEntryTerm checks one log entry against the term of the entry before
// it (the snapshot's term for the first): entries have a term, and terms
// never fall along the log.
func checkEntryTerm(index, term, prevTerm uint64) error {
	switch {
	case term == 0:
		return inconsistent("log entry %d has term 0", index)
	case term < prevTerm:
		return inconsistent("log entry %d has term %d, below the term %d of the entry before it", index, term, prevTerm)
	}
	return nil
}

// checkConfState checks that raft can restore cs, the configuration in the
// snapshot, as it does when it starts (a failure there is a panic).
func checkConfState(cs *raftpb.ConfState, lastIndex uint64) error {
	trk := tracker.MakeProgressTracker(1, 0)
	cfg, prs, err := confchange.Restore(confchange.Changer{Tracker: trk, LastIndex: lastIndex}, cs)
	if err != nil {
		return inconsistent("snapshot configuration %v cannot be restored: %v", cs, err)
	}
	trk.Config, trk.Progress = cfg, prs
	if err := cs.Equivalent(trk.ConfState()); err != nil {
		return inconsistent("snapshot configuration %v does not restore to itself: %v", cs, err)
	}
	return nil
}
