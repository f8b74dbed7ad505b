package election

import "github.com/raftelect/raftelect/internal/core"

// ErrStoreMismatch is returned (wrapped, with what to do) by Run when the
// raft store holds another node's state or another cluster's: a copied data
// directory would vote and acknowledge with a history that is not this
// node's. Test for it with errors.Is. The core (internal/core,
// cluster_id.go) makes, learns and records the cluster ID.
var ErrStoreMismatch = core.ErrStoreMismatch

// currentClusterID is the cluster ID this node recorded ("" if none yet);
// the transport reads it from its own goroutines.
func (l *raftLoop) currentClusterID() string { return *l.clusterID.Load() }
