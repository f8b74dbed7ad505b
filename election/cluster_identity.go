package election

import (
	"errors"
	"fmt"
	"time"

	"github.com/raftelect/raftelect/internal/clusterid"
	"github.com/raftelect/raftelect/storage"
)

// ErrStoreMismatch is returned (wrapped, with what to do) by Run when the
// raft store holds another node's state or another cluster's: a copied data
// directory would vote and acknowledge with a history that is not this
// node's. Test for it with errors.Is.
var ErrStoreMismatch = errors.New("election: the raft store belongs to another node or cluster")

// checkStoreIdentity compares what the store recorded with the
// configuration.
func checkStoreIdentity(id storage.Identity, cfg Config) error {
	if id.Node != "" && id.Node != cfg.Name {
		return fmt.Errorf("%w: it holds the raft state of node %q, but this node is %q. A data directory copied from another node would vote and acknowledge with that node's history. Give %q its own empty data directory (it then rejoins as a node without state), or start %q from this one",
			ErrStoreMismatch, id.Node, cfg.Name, cfg.Name, id.Node)
	}
	if cfg.ClusterID != "" && id.ClusterID != "" && id.ClusterID != cfg.ClusterID {
		return fmt.Errorf("%w: it holds the state of cluster %s, but this node is configured for cluster %s. It comes from another cluster: give this node an empty data directory to join cluster %s, or correct cluster_id",
			ErrStoreMismatch, id.ClusterID, cfg.ClusterID, cfg.ClusterID)
	}
	return nil
}

// currentClusterID returns the cluster ID this node has applied, "" while it
// knows none. The transport carries it on every connection.
func (l *raftLoop) currentClusterID() string { return *l.clusterID.Load() }

// learnClusterID applies a cluster ID record from a committed entry or a
// snapshot. The first one applied wins: every node applies the same log in
// the same order, and snapshots carry the ID their log had, so all nodes
// agree on which is first. A later, different record (two leaders of a new
// cluster each proposed one) is ignored.
func (l *raftLoop) learnClusterID(data []byte) error {
	id, ok := clusterid.Parse(data)
	if !ok {
		return nil
	}
	switch cur := l.currentClusterID(); {
	case cur == id:
		return nil
	case cur != "":
		l.e.log.Debug("ignoring a later cluster ID record", "kept", cur, "ignored", id)
		return nil
	}
	if want := l.e.cfg.ClusterID; want != "" && want != id {
		return fmt.Errorf("%w: the cluster this node follows has ID %s, but this node is configured for cluster %s: its peers belong to another cluster; correct cluster_id or the peers",
			ErrStoreMismatch, id, want)
	}
	l.identity.ClusterID = id
	if err := l.store.SetIdentity(l.identity); err != nil {
		return err
	}
	l.clusterID.Store(&id)
	l.e.log.Info("cluster ID recorded", "cluster_id", id)
	return nil
}

// proposeClusterID runs on the leader: a cluster that has no ID yet (a new
// one, or one made by an older release) gets the configured one or a random
// one, once per term until one is applied. Only once every peer has shown
// in this term that it runs this release (its acknowledgements state a
// promise): an older release refuses appends that carry data, and one such
// follower would then refuse every batch with the ID in it.
func (l *raftLoop) proposeClusterID(term uint64) {
	if l.currentClusterID() != "" || l.idProposedTerm == term || !l.lease.allCurrent(len(l.e.names)-1) {
		return
	}
	l.idProposedTerm = term
	id := l.e.cfg.ClusterID
	if id == "" {
		id = l.peersClusterID()
	}
	if id == "" {
		id = clusterid.New()
	}
	if err := l.rn.Propose(clusterid.Record(id)); err != nil {
		l.e.log.Debug("propose cluster ID", "err", err) // a transfer is under way: next term
	}
}

// snapshotData is what a snapshot of the applied log carries: the cluster
// ID, so a node that catches up from a snapshot learns it too.
func (l *raftLoop) snapshotData() []byte {
	if id := l.currentClusterID(); id != "" {
		return clusterid.Record(id)
	}
	return nil
}

// lowerRecordedTimeout brings the recorded election timeout down to the
// current one once the previous run's longer promises have run out.
func (l *raftLoop) lowerRecordedTimeout(now time.Time) error {
	if l.lowerTimeoutAt.IsZero() || now.Before(l.lowerTimeoutAt) {
		return nil
	}
	l.lowerTimeoutAt = time.Time{}
	l.identity.ElectionTimeout = l.e.electionTimeout
	return l.store.SetIdentity(l.identity)
}

// peersClusterID returns the cluster ID most peers describe, "" if none
// describes one. A leader without an ID (its data was lost, or it lagged
// behind a snapshot) proposes the ID its cluster already has instead of a
// new one, which would split it from every node that has the old one.
// Peers that describe another ID than ours are refused by the transport,
// so they rarely disagree here.
func (l *raftLoop) peersClusterID() string {
	count := map[string]int{}
	best := ""
	for id := range l.e.names {
		if id == l.e.self {
			continue
		}
		if c := l.tr.PeerClusterID(id); c != "" && clusterid.Valid(c) {
			count[c]++
			if count[c] > count[best] || (count[c] == count[best] && c < best) {
				best = c
			}
		}
	}
	return best
}

// adoptLeadersClusterID runs when we step a heartbeat or append from the
// leader we follow: a node that knows no cluster ID takes the leader's.
// Raft never resends entries a follower acknowledged before it lost its
// data, so a node restarted without state may never apply the entry that
// carries the ID; the leader, which applied it, says which it is.
func (l *raftLoop) adoptLeadersClusterID(leader uint64) {
	if l.currentClusterID() != "" {
		return
	}
	id := l.tr.PeerClusterID(leader)
	if id == "" || !clusterid.Valid(id) {
		return
	}
	if err := l.learnClusterID(clusterid.Record(id)); err != nil {
		l.e.log.Warn("cluster ID of the leader", "leader", l.e.names[leader], "err", err)
	}
}
