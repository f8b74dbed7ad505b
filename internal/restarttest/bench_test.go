package restarttest

import (
	"testing"
	"time"

	"github.com/raftelect/raftelect/eventlog"
)

// BenchmarkRestartFollowerToLeaderKnown is restart time as an operator sees
// it: a follower of a healthy three-node cluster (bbolt, mTLS, heartbeat
// 100 ms) is killed with SIGKILL and started again; one op is the time from
// exec to the moment the new process knows the leader (the first event in
// its log that names one), taken from the event log's own timestamps.
// Killing and waiting for the cluster to settle are not timed.
//
// For the cost of one persisted Ready (one bbolt transaction with fsync),
// see storage's BenchmarkBoltSaveHardStateSync.
//
//	go test -run '^$' -bench RestartFollower -benchtime 20x ./internal/restarttest/
func BenchmarkRestartFollowerToLeaderKnown(b *testing.B) {
	c := newCluster(b, 3, true)
	c.startAll()
	leader := c.waitLeader(leaderWait)
	var toStart, toLeader time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		victim := (leader + 1 + i%2) % len(c.nodes)
		c.kill(victim)
		b.StartTimer()
		execAt := c.start(victim)
		knownAt := c.waitKnowsLeader(victim, execAt, leaderWait)
		b.StopTimer()
		toStart += time.Duration(c.startEvent(victim, execAt) - execAt)
		toLeader += time.Duration(knownAt - execAt)
		if l := c.waitLeader(leaderWait); l != leader {
			b.Fatalf("restarting follower %s moved leadership from %s to %s", c.nodes[victim].Name, c.nodes[leader].Name, c.nodes[l].Name)
		}
	}
	// ns/op includes polling the log file (1 ms); these come from the
	// node's own timestamps.
	b.ReportMetric(float64(toLeader.Milliseconds())/float64(b.N), "ms-to-leader/op")
	b.ReportMetric(float64(toStart.Milliseconds())/float64(b.N), "ms-to-start-event/op")
	c.killAll()
}

// startEvent returns the time of node i's first start event at or after mono.
func (c *cluster) startEvent(i int, mono int64) int64 {
	for _, e := range c.readEvents(i) {
		if e.Kind == eventlog.KindStart && e.Mono >= mono {
			return e.Mono
		}
	}
	return mono
}
