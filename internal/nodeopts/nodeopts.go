// Package nodeopts holds the switches of an election node that only this
// module sets: its tests, the chaos harness and the CLI's chaos repro. They
// are test and fault-injection switches (a listener opened by the caller,
// fault hooks on the inbound path, synchronous sends, the vote guard turned
// off), kept out of election.Config's exported fields so that the public API
// has none of them, and in an internal package so that no code outside
// this repository's import path (github.com/raftelect/raftelect/...) can set
// them.
//
// An election.Config carries them in an unexported field; package election
// installs the accessor (Of) when it is initialised, since this package
// cannot import election (election imports it):
//
//	cfg := election.Config{...}
//	nodeopts.Of(&cfg).FaultHooks = &transport.FaultHooks{}
package nodeopts

import (
	"net"

	"github.com/raftelect/raftelect/transport"
)

// Options are the switches. The zero value is a production node.
type Options struct {
	// Listener, if set, is used instead of listening on the node's address.
	// It serves one Run: the node closes it when Run returns.
	Listener net.Listener
	// FaultHooks inject faults into the node's inbound path.
	FaultHooks *transport.FaultHooks
	// UnsafeSyncSend sends every message synchronously from the raft loop,
	// as the reference system did before its fix. It exists to show that the
	// fault tests catch that bug; it breaks the cluster under a silent peer.
	UnsafeSyncSend bool
	// NoVoteGuard turns the vote guard off, to show what it prevents.
	NoVoteGuard bool
}

var of func(cfg any) *Options

// Install is called once, by package election's init, with the function
// that returns the Options held in an *election.Config.
func Install(f func(cfg any) *Options) { of = f }

// Of returns the Options of cfg, which must be an *election.Config, for
// reading and setting. They are held by value: a copy of the Config copies
// them.
func Of(cfg any) *Options { return of(cfg) }
