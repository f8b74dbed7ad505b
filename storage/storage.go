// Package storage holds the raft state a node must not lose: HardState (term,
// vote, commit), log entries and the latest snapshot with its ConfState.
//
// The election loop reads through raft.Storage and writes one Ready at a time
// through Save, before that Ready's messages leave the node (persist before
// send). Two implementations exist: Memory for tests and ephemeral use, and a
// durable one on bbolt.
package storage

import (
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Store is the raft state of one node.
type Store interface {
	raft.Storage

	// Save persists one Ready: the snapshot first (if non-nil and non-empty),
	// then the entries (replacing any conflicting suffix), then the hard state
	// (if non-nil and non-empty). All of it is one atomic write. When sync is
	// true the write is durable before Save returns (raft's Ready.MustSync).
	Save(hs *raftpb.HardState, entries []*raftpb.Entry, snap *raftpb.Snapshot, sync bool) error

	// Compact makes a snapshot at index (which must be applied) with the given
	// ConfState and data (the state the applied log built: the cluster ID)
	// and discards the log up to and including index, so the log stays small
	// over years of elections.
	Compact(index uint64, cs *raftpb.ConfState, data []byte) error

	// Fresh reports whether the store held no raft state when it was opened:
	// a new node, or one whose data was lost.
	Fresh() bool

	// Identity returns whose state this is: the node name and the cluster
	// ID recorded when the node bootstrapped or joined. The zero Identity
	// means none was recorded yet (a fresh store).
	Identity() (Identity, error)

	// SetIdentity records id durably. A node calls it once, when it
	// bootstraps or joins a cluster; afterwards it compares the recorded
	// identity with its configuration at every start.
	SetIdentity(id Identity) error

	// Close releases the store. It is safe to call once.
	Close() error
}

// Identity says whose raft state a store holds, so that a data directory
// copied from another node, or one of another cluster, is refused at start
// instead of joining with a log and votes that are not its own.
type Identity struct {
	Node      string // the node's name
	ClusterID string // made once, when the cluster was bootstrapped
	// ElectionTimeout is the longest election timeout the node may have
	// run with before this start. Its promises to a leader (no vote for an
	// election timeout after a heartbeat) outlive a restart, so a node
	// restarted with a shorter timeout keeps its votes back for the longer
	// one first (docs/safety.md).
	ElectionTimeout time.Duration `json:",omitempty"`
	// NeverRan is set by an explicit bootstrap of a brand-new cluster
	// (`raftelect bootstrap`, MarkNeverRan) and cleared at the node's first
	// start: a node that never ran has cast no vote and made no promise, so
	// it needs no vote guard, and its cluster's first election takes about
	// one election timeout instead of two to three.
	NeverRan bool `json:",omitempty"`
}

// MarkNeverRan records in a store that has never held raft state that its
// node has never run, for a brand-new cluster's first start (see
// Identity.NeverRan). It refuses a store with state or with an identity: a
// node that ran may have voted, and marking it would let it vote twice.
func MarkNeverRan(s Store, node string) error {
	id, err := s.Identity()
	if err != nil {
		return err
	}
	if !s.Fresh() || !id.IsZero() {
		return fmt.Errorf("storage: refusing to mark the store of %q as never run: it holds raft state or an identity (node %q, cluster %q), so this node has run and may have voted; start it as it is", node, id.Node, id.ClusterID)
	}
	return s.SetIdentity(Identity{Node: node, NeverRan: true})
}

// IsZero reports whether nothing was recorded.
func (id Identity) IsZero() bool { return id == Identity{} }
