package core

import (
	"errors"
	"fmt"
	"time"

	"github.com/raftelect/raftelect/internal/clusterid"
	"github.com/raftelect/raftelect/storage"
)

// The cluster identity: made once by the first leader, carried in the log
// (its only data entry) and in snapshots, recorded in every node's store.

// ErrStoreMismatch: the raft store holds the state of another node or
// another cluster.
var ErrStoreMismatch = errors.New("the raft store belongs to another node or cluster")

// CheckStoreIdentity refuses a store that holds another node's state, or
// another cluster's.
func CheckStoreIdentity(id storage.Identity, name, clusterID string) error {
	if id.Node != "" && id.Node != name {
		return fmt.Errorf("%w: it holds the raft state of node %q, but this node is %q. A data directory copied from another node would vote and acknowledge with that node's history. Give %q its own empty data directory (it then rejoins as a node without state), or start %q from this one",
			ErrStoreMismatch, id.Node, name, name, id.Node)
	}
	if clusterID != "" && id.ClusterID != "" && id.ClusterID != clusterID {
		return fmt.Errorf("%w: it holds the state of cluster %s, but this node is configured for cluster %s. It comes from another cluster: give this node an empty data directory to join cluster %s, or correct cluster_id",
			ErrStoreMismatch, id.ClusterID, clusterID, clusterID)
	}
	return nil
}

// learnClusterID records the cluster ID of a committed entry or snapshot,
// the first one only.
func (n *Node) learnClusterID(now time.Time, data []byte) error {
	id, ok := clusterid.Parse(data)
	if !ok {
		return nil
	}
	switch cur := n.identity.ClusterID; {
	case cur == id:
		return nil
	case cur != "":
		n.log.Debug("ignoring a later cluster ID record", "kept", cur, "ignored", id)
		return nil
	}
	if want := n.cfg.ClusterID; want != "" && want != id {
		return fmt.Errorf("%w: the cluster this node follows has ID %s, but this node is configured for cluster %s: its peers belong to another cluster; correct cluster_id or the peers",
			ErrStoreMismatch, id, want)
	}
	n.identity.ClusterID = id
	if err := n.store.SetIdentity(n.identity); err != nil {
		return err
	}
	n.log.Info("cluster ID recorded", "cluster_id", id)
	n.out.Events = append(n.out.Events, Event{Kind: EventClusterID, Role: n.role, Term: n.term, Vote: n.vote, Lead: n.lead, At: now, ClusterID: id})
	return nil
}

// proposeClusterID makes the cluster ID, once, when this node leads a
// cluster that has none: the configured one, or the one its peers describe
// (a leader that lost its store), or a new random one. Only once every peer
// has shown it runs this release (it states a promise), so no node of the
// previous release is sent an entry it cannot read.
func (n *Node) proposeClusterID(term uint64) {
	if n.identity.ClusterID != "" || n.idProposedTerm == term || !n.lease.allCurrent(n.peerVoters()) {
		return
	}
	n.idProposedTerm = term
	id := n.cfg.ClusterID
	if id == "" {
		id = n.peersClusterID()
	}
	if id == "" {
		id = clusterid.FromBits(n.rand.Uint64(), n.rand.Uint64())
	}
	if err := n.rn.Propose(clusterid.Record(id)); err != nil {
		n.log.Debug("propose cluster ID", "err", err) // a transfer is under way: next term
	}
}

// lowerRecordedTimeout records the current election timeout once the
// previous run's longer promises are over.
func (n *Node) lowerRecordedTimeout(now time.Time) error {
	if n.lowerTimeoutAt.IsZero() || now.Before(n.lowerTimeoutAt) {
		return nil
	}
	n.lowerTimeoutAt = time.Time{}
	n.identity.ElectionTimeout = n.electionTimeout
	return n.store.SetIdentity(n.identity)
}

// peersClusterID returns the cluster ID most peers describe ("" if none):
// a leader whose store was wiped must not make a new one.
func (n *Node) peersClusterID() string {
	if n.cfg.PeerClusterID == nil {
		return ""
	}
	count := map[string]int{}
	best := ""
	for _, id := range n.configIDs() {
		if id == n.cfg.ID {
			continue
		}
		if c := n.cfg.PeerClusterID(id); c != "" && clusterid.Valid(c) {
			count[c]++
			if count[c] > count[best] || (count[c] == count[best] && c < best) {
				best = c
			}
		}
	}
	return best
}

// adoptLeadersClusterID takes the cluster ID of the leader we follow if we
// have none: raft never resends entries a follower acknowledged before it
// lost its data, so a wiped node might otherwise never learn it.
func (n *Node) adoptLeadersClusterID(now time.Time, leader uint64) {
	if n.identity.ClusterID != "" || n.cfg.PeerClusterID == nil {
		return
	}
	id := n.cfg.PeerClusterID(leader)
	if id == "" || !clusterid.Valid(id) {
		return
	}
	if err := n.learnClusterID(now, clusterid.Record(id)); err != nil {
		n.log.Warn("cluster ID of the leader", "leader", n.name(leader), "err", err)
	}
}
