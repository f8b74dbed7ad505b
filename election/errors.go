package election

import "errors"

// Errors the Elector returns, for errors.Is. Messages of wrapped errors say
// more (which peer, what to do). ErrStoreMismatch is in cluster_identity.go.
var (
	// ErrNotRunning: the call needs a running node (Run not called yet, or
	// returned).
	ErrNotRunning = errors.New("election: not running")
	// ErrStopped: the node stopped while the call waited.
	ErrStopped = errors.New("election: stopped")
	// ErrRunTwice: an Elector runs once; make a new one to start again.
	ErrRunTwice = errors.New("election: Run called twice; make a new Elector to start again")
	// ErrNotLeader: the operation needs the leader, and this node is not it.
	ErrNotLeader = errors.New("election: this node is not the leader")
)
