package proccluster

import (
	"fmt"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// userHZ is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100
// on every Linux architecture Go supports.
const userHZ = 100

func setParentDeathSignal(a *syscall.SysProcAttr, sig syscall.Signal) { a.Pdeathsig = sig }

// Usage is what /proc says about one process.
type Usage struct {
	// CPU is its user and system time so far.
	CPU time.Duration
	// RSS is its resident set now; RSSAnon the anonymous part of it.
	RSS, RSSAnon uint64
	// PSS is its proportional set size now (0 if smaps_rollup cannot be
	// read).
	PSS uint64
}

// ReadUsage reads pid's CPU time and memory from /proc.
func ReadUsage(pid int) (Usage, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return Usage{}, err
	}
	st, err := p.Stat()
	if err != nil {
		return Usage{}, err
	}
	status, err := p.NewStatus()
	if err != nil {
		return Usage{}, err
	}
	u := Usage{
		CPU:     time.Duration(st.UTime+st.STime) * time.Second / userHZ,
		RSS:     status.VmRSS,
		RSSAnon: status.RssAnon,
	}
	if r, err := p.ProcSMapsRollup(); err == nil {
		u.PSS = r.Pss
	}
	return u, nil
}

// NetDev reads the bytes received and sent on iface in pid's network
// namespace.
func NetDev(pid int, iface string) (rx, tx uint64, err error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, 0, err
	}
	nd, err := p.NetDev()
	if err != nil {
		return 0, 0, err
	}
	l, ok := nd[iface]
	if !ok {
		return 0, 0, fmt.Errorf("proccluster: /proc/%d/net/dev has no %s", pid, iface)
	}
	return l.RxBytes, l.TxBytes, nil
}

// CPU is the CPU time of every process slot i has run: those that ended
// (as the kernel reported at their exit) and the current one (from /proc).
func (c *Cluster) CPU(i int) time.Duration {
	n := c.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	cpu := n.cpuDone
	if p := n.proc; p != nil && !p.Exited() {
		if u, err := ReadUsage(p.Pid); err == nil {
			cpu += u.CPU
		}
	}
	return cpu
}

// Usage reads slot i's current process from /proc; an error if none runs.
func (c *Cluster) Usage(i int) (Usage, error) {
	p := c.Process(i)
	if p == nil || p.Exited() {
		return Usage{}, fmt.Errorf("proccluster: %s is not running", c.nodes[i].Name)
	}
	return ReadUsage(p.Pid)
}
