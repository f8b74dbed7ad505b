//go:build unix && !linux

package proccluster

import (
	"errors"
	"syscall"
	"time"
)

// Only Linux can tie a child's life to its parent's, and has /proc.
func setParentDeathSignal(*syscall.SysProcAttr, syscall.Signal) {}

// Usage is what /proc says about one process.
type Usage struct {
	CPU               time.Duration
	RSS, RSSAnon, PSS uint64
}

var errNoProc = errors.New("proccluster: no /proc on this system")

// ReadUsage needs Linux's /proc.
func ReadUsage(int) (Usage, error) { return Usage{}, errNoProc }

// NetDev needs Linux's /proc.
func NetDev(int, string) (rx, tx uint64, err error) { return 0, 0, errNoProc }

// CPU is the CPU time of the processes slot i has run that have ended.
func (c *Cluster) CPU(i int) time.Duration {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cpuDone
}

// Usage needs Linux's /proc.
func (c *Cluster) Usage(int) (Usage, error) { return Usage{}, errNoProc }
