package election

import (
	"testing"
	"time"
)

func TestLeaseTracker_ExpiryFollowsTheQuorumthLatestAck(t *testing.T) {
	// Five nodes: a quorum is three, us and two peers.
	l := newLeaseTracker(5, time.Second, 100*time.Millisecond, 0.1)
	if l.length != 800*time.Millisecond {
		t.Fatalf("lease length %v, want 1s - 100ms tick - 10%% = 800ms", l.length)
	}
	base := time.Now()
	l.reset(7)
	if !l.expiry(7).IsZero() {
		t.Fatal("a lease without acknowledgements")
	}
	l.ack(2, 7, base.Add(30*time.Millisecond))
	if !l.expiry(7).IsZero() {
		t.Fatal("a lease with one peer of the two needed")
	}
	l.ack(3, 7, base.Add(10*time.Millisecond))
	l.ack(4, 7, base.Add(20*time.Millisecond))
	// Latest acks: 30, 20, 10 ms; the second latest counts.
	if got, want := l.expiry(7), base.Add(20*time.Millisecond+l.length); !got.Equal(want) {
		t.Fatalf("expiry %v after base, want %v", got.Sub(base), want.Sub(base))
	}
	l.ack(3, 7, base.Add(5*time.Millisecond))  // older than what peer 3 acked: ignored
	l.ack(5, 6, base.Add(90*time.Millisecond)) // an old term: ignored
	if got, want := l.expiry(7), base.Add(20*time.Millisecond+l.length); !got.Equal(want) {
		t.Fatalf("stale acks moved the expiry to %v", got.Sub(base))
	}
	if !l.expiry(8).IsZero() {
		t.Fatal("acknowledgements of term 7 gave a lease in term 8")
	}
	l.reset(8)
	if !l.expiry(8).IsZero() {
		t.Fatal("acknowledgements survived a new term")
	}
}

func TestLeaseTracker_SingleNodeHoldsItsOwnLease(t *testing.T) {
	l := newLeaseTracker(1, time.Second, 100*time.Millisecond, 0.1)
	l.reset(1)
	if l.expiry(1).Before(time.Now()) {
		t.Fatal("a cluster of one must hold the lease")
	}
}

func TestLeaseTracker_FenceDiscardsEarlierAcks(t *testing.T) {
	l := newLeaseTracker(3, time.Second, 100*time.Millisecond, 0.1)
	base := time.Now()
	l.reset(4)
	l.ack(2, 4, base)
	if l.expiry(4).IsZero() {
		t.Fatal("no lease after a quorum's acknowledgement")
	}
	l.fence(base.Add(3 * time.Second))
	if !l.expiry(4).IsZero() {
		t.Fatal("a lease survived the fence")
	}
	l.ack(2, 4, base.Add(2*time.Second)) // sent before the fence ends
	if !l.expiry(4).IsZero() {
		t.Fatal("an acknowledgement of a batch sent inside the fence counted")
	}
	l.ack(2, 4, base.Add(3*time.Second+time.Millisecond))
	if l.expiry(4).IsZero() {
		t.Fatal("an acknowledgement after the fence did not count")
	}
}

func TestLeaseTracker_FenceEndsWithItsTerm(t *testing.T) {
	l := newLeaseTracker(3, time.Second, 100*time.Millisecond, 0.1)
	base := time.Now()
	l.reset(4)
	l.fence(base.Add(3 * time.Second))
	l.reset(6) // leader again, in a later term
	l.ack(2, 6, base.Add(time.Millisecond))
	if l.expiry(6).IsZero() {
		t.Fatal("the fence of term 4 held back the lease of term 6")
	}
}
