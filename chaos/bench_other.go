//go:build !linux

package chaos

import (
	"context"
	"io"
	"time"
)

// BenchOptions say what a bench measures; see the Linux build.
type BenchOptions struct {
	Binary, Dir                                              string
	Nodes                                                    int
	HeartbeatInterval, ElectionTimeout                       time.Duration
	ColdStarts, Kills, Isolations, Terms, Rejoins, AsymHeals int
	Rolling                                                  bool
	Idle, Soak, Profile                                      time.Duration
	NodeEnv                                                  []string
	Progress                                                 io.Writer
}

// Bench fails: it needs Linux.
func Bench(context.Context, BenchOptions) (*BenchResult, error) { return nil, errLinuxOnly }
