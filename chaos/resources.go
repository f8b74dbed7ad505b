//go:build linux

package chaos

import (
	"time"
)

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

// sampleAll reads the RSS of every running node.
func (c *cluster) sampleAll() {
	for i, p := range c.nodes {
		u, err := c.pc.Usage(i)
		p.mu.Lock()
		if err == nil {
			p.rss.add(u.RSS)
		}
		p.mu.Unlock()
	}
}

// markRSS remembers every node's RSS now, for growth after the mark.
func (c *cluster) markRSS() {
	c.sampleAll()
	for i, p := range c.nodes {
		running := c.pc.Running(i)
		p.mu.Lock()
		if !p.rss.marked {
			p.rss.marked, p.rss.markedSame = true, running
			p.rss.atMark, p.rss.maxAfter = p.rss.current, p.rss.current
		}
		p.mu.Unlock()
	}
}

// cpuTime is node i's CPU time over all its processes so far.
func (c *cluster) cpuTime(i int) time.Duration { return c.pc.CPU(i) }

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
