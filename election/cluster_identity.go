package election

import (
	"errors"

	"github.com/raftelect/raftelect/internal/core"
)

// storeMismatchError marks an error of the core's store identity checks
// (internal/core, cluster_id.go) as ErrStoreMismatch and keeps its message,
// which says whose state the store holds and what to do.
type storeMismatchError struct{ err error }

func (e *storeMismatchError) Error() string   { return e.err.Error() }
func (e *storeMismatchError) Unwrap() []error { return []error{ErrStoreMismatch, e.err} }

// markStoreMismatch returns err marked as ErrStoreMismatch if it comes from
// the core's store identity checks, and err otherwise.
func markStoreMismatch(err error) error {
	if err != nil && errors.Is(err, core.ErrStoreMismatch) && !errors.Is(err, ErrStoreMismatch) {
		return &storeMismatchError{err}
	}
	return err
}

// currentClusterID is the cluster ID this node recorded ("" if none yet);
// the transport reads it from its own goroutines.
func (l *raftLoop) currentClusterID() string { return *l.clusterID.Load() }
