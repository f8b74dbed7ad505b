package chaos

import (
	"testing"
	"time"
)

func target(t *testing.T, r *BenchResult, prefix string) Target {
	t.Helper()
	for _, tg := range r.Targets {
		if len(tg.Figure) >= len(prefix) && tg.Figure[:len(prefix)] == prefix {
			return tg
		}
	}
	t.Fatalf("no target %q among %+v", prefix, r.Targets)
	return Target{}
}

// The bench judges a killed leader's failover by the mode the nodes ran
// in: a fraction of a heartbeat with the refusal fast path, an election
// timeout without it. A run without the option must not pass the fast
// target, nor fail for missing it.
func TestJudge_KillFailoverTargetFollowsTheFastPath(t *testing.T) {
	ms := func(d ...time.Duration) Dist { return newDist(d) }
	r := &BenchResult{Heartbeat: Millis(100 * time.Millisecond), ElectionTimeout: Millis(time.Second)}
	r.FailoverKill = ms(990*time.Millisecond, 1010*time.Millisecond, 1400*time.Millisecond)
	r.judge()
	if tg := target(t, r, "failover, leader process killed"); !tg.Holds || tg.Target != "p50 <= 1.2s, max <= 1.6s" {
		t.Errorf("without the fast path: %+v; want the election-timeout target, held", tg)
	}
	r.FastFailover = true
	r.judge()
	if tg := target(t, r, "failover, leader process killed"); tg.Holds || tg.Target != "p50 <= 200ms" {
		t.Errorf("with the fast path: %+v; want the 200ms target, missed", tg)
	}
	r.FailoverKill = ms(20*time.Millisecond, 30*time.Millisecond, 75*time.Millisecond)
	r.judge()
	if tg := target(t, r, "failover, leader process killed"); !tg.Holds {
		t.Errorf("with the fast path at p50 30ms: %+v; want held", tg)
	}
}

// Idle targets: the leader's and the followers' CPU have their own limits,
// judged on the scheduler's nanosecond counts where there are any, and the
// bytes per heartbeat come from the followers' traffic alone.
func TestJudge_IdleTargetsPerRole(t *testing.T) {
	r := &BenchResult{Heartbeat: Millis(100 * time.Millisecond), ElectionTimeout: Millis(time.Second)}
	r.Idle.Nodes = []IdleNode{
		{Name: "n1", Role: "leader", CPUPercent: 0.28, RSSMaxMB: 11, TxBytesPerSec: 3700, RxBytesPerSec: 2200},
		{Name: "n2", Role: "follower", CPUPercent: 0.5, OnCPUMsPerSec: 1.9, RSSMaxMB: 11, TxBytesPerSec: 1130, RxBytesPerSec: 1890},
	}
	r.judge()
	if tg := target(t, r, "idle CPU per node"); !tg.Holds {
		t.Errorf("leader 0.28 %%, follower 0.19 %% (schedstat; 0.5 %% in ticks): %+v; want held", tg)
	}
	if tg := target(t, r, "bytes per heartbeat"); tg.Holds || tg.Measured != "302 B" {
		t.Errorf("bytes: %+v; want 302 B from the follower alone, missed", tg)
	}
	r.Idle.Nodes[1].OnCPUMsPerSec = 2.5 // a follower above 0.2 %, below the leader's 0.3 %
	r.judge()
	if tg := target(t, r, "idle CPU per node"); tg.Holds {
		t.Errorf("follower at 0.25 %%: %+v; want missed", tg)
	}
}
