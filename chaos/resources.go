//go:build linux

package chaos

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// rssSamples are the RSS readings of one node slot.
type rssSamples struct {
	max     uint64 // bytes, over the whole run
	current uint64
	// atMark is the reading when mark was called (the first fault), and
	// markedSame is true while the process that was read then still runs,
	// so growth compares one process with itself.
	atMark     uint64
	maxAfter   uint64
	marked     bool
	markedSame bool
}

func (r *rssSamples) restart() { r.markedSame = false }

func (r *rssSamples) add(v uint64) {
	r.current = v
	r.max = max(r.max, v)
	if r.markedSame {
		r.maxAfter = max(r.maxAfter, v)
	}
}

// growth is how much RSS grew after the mark, in bytes, and whether it is
// known (the process that was marked ran to the end).
func (r *rssSamples) growth() (int64, bool) {
	if !r.marked || !r.markedSame {
		return 0, false
	}
	return int64(r.maxAfter) - int64(r.atMark), true
}

// procStat reads utime+stime (clock ticks) of pid.
func procStat(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: fields
	// count from after the last ')'. utime and stime are fields 14 and 15
	// of the whole line, so 12 and 13 after it (state being 1).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return u + s, nil
}

// procRSS reads VmRSS of pid in bytes.
func procRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "12345 kB"
			if len(f) < 1 {
				break
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// sampleCPU reads node i's CPU time now (before a signal may end it).
func (c *cluster) sampleCPU(i int) {
	p := c.nodes[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	if t, err := procStat(p.cmd.pid); err == nil {
		p.lastTicks = t
	}
}

// sampleAll reads CPU and RSS of every running node.
func (c *cluster) sampleAll() {
	for _, p := range c.nodes {
		p.mu.Lock()
		if p.cmd != nil {
			if t, err := procStat(p.cmd.pid); err == nil {
				p.lastTicks = t
			}
			if r, err := procRSS(p.cmd.pid); err == nil {
				p.rss.add(r)
			}
		}
		p.mu.Unlock()
	}
}

// markRSS remembers every node's RSS now, for growth after the mark.
func (c *cluster) markRSS() {
	c.sampleAll()
	for _, p := range c.nodes {
		p.mu.Lock()
		if !p.rss.marked {
			p.rss.marked, p.rss.markedSame = true, p.cmd != nil
			p.rss.atMark, p.rss.maxAfter = p.rss.current, p.rss.current
		}
		p.mu.Unlock()
	}
}

// cpuTime is node i's CPU time over all its processes so far.
func (c *cluster) cpuTime(i int) time.Duration {
	p := c.nodes[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Duration(p.cpuTicks+p.lastTicks) * time.Second / clockTicks
}

func (c *cluster) nodeStats(from, to int64, cpuAtStart []time.Duration) []NodeStats {
	out := make([]NodeStats, len(c.nodes))
	secs := time.Duration(to - from).Seconds()
	for i, p := range c.nodes {
		cpu := c.cpuTime(i) - cpuAtStart[i]
		p.mu.Lock()
		st := NodeStats{Name: p.name, RSSMaxMB: mb(p.rss.max)}
		if g, ok := p.rss.growth(); ok {
			v := float64(g) / (1 << 20)
			st.RSSGrowthMB = &v
		}
		p.mu.Unlock()
		if secs > 0 {
			st.CPUPercent = 100 * cpu.Seconds() / secs
		}
		out[i] = st
	}
	return out
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }
