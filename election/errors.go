package election

import (
	"errors"

	"github.com/raftelect/raftelect/transport"
)

// Errors the Elector returns, for errors.Is. Messages of wrapped errors say
// more (which peer, what to do).
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
	// ErrUnknownPeer: the named node is not a peer of this one.
	ErrUnknownPeer = errors.New("election: not a peer")
	// ErrCertificate: this node's own certificate, key or CA cannot be used
	// (unreadable, expired, another CA, not this node's identity). New and
	// Run return it wrapped, with what is wrong and what to do; a restart
	// will not help.
	ErrCertificate = errors.New("election: this node's TLS material cannot be used")
	// ErrStoreMismatch: the raft store holds another node's state or
	// another cluster's (a data directory copied from elsewhere), which
	// would vote and acknowledge with a history that is not this node's.
	// Run returns it wrapped, with whose state it is and what to do; a
	// restart will not help.
	ErrStoreMismatch = errors.New("election: the raft store belongs to another node or cluster")
)

// certificateError marks an error of the transport's credential checks as
// ErrCertificate and keeps its message (which says what to do).
type certificateError struct{ err error }

func (e *certificateError) Error() string   { return e.err.Error() }
func (e *certificateError) Unwrap() []error { return []error{ErrCertificate, e.err} }

// markCertificate returns err marked as ErrCertificate if it comes from the
// transport's credential checks, and err otherwise.
func markCertificate(err error) error {
	var ce *transport.CertificateError
	if err != nil && errors.As(err, &ce) && !errors.Is(err, ErrCertificate) {
		return &certificateError{err}
	}
	return err
}
