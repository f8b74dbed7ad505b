//go:build !linux

package chaos

import (
	"context"
	"errors"
	"io"
	"time"
)

// Options are the parts of a run that are not the scenario; see the Linux
// build.
type Options struct {
	Binary, Dir                        string
	Nodes                              int
	HeartbeatInterval, ElectionTimeout time.Duration
	SyncSend                           bool
	Progress                           io.Writer
}

var errLinuxOnly = errors.New("chaos: needs Linux (network namespaces and nftables)")

// Available reports that chaos runs need Linux.
func Available() error { return errLinuxOnly }

// Run fails: chaos runs need Linux.
func Run(context.Context, *Scenario, Options) (*Result, error) { return nil, errLinuxOnly }
