package core

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/quorum"
)

// testLease is a lease tracker for a static cluster of size nodes, IDs 1
// (us) to size.
type testLease struct {
	*leaseTracker
	voters quorum.JointConfig
}

func newTestLease(size int, electionTimeout, tick time.Duration, margin float64) *testLease {
	l := &testLease{leaseTracker: newLeaseTracker(electionTimeout, tick, margin)}
	l.voters[0] = quorum.MajorityConfig{}
	for id := range uint64(size) {
		l.voters[0][id+1] = struct{}{}
	}
	return l
}

func (l *testLease) reset(term uint64) { l.leaseTracker.reset(term, time.Now()) }
func (l *testLease) expiry(term uint64, now time.Time) time.Time {
	return l.leaseTracker.expiry(term, now, 1, l.voters)
}

// promise is what a peer with the tests' timings promises: 1s - 100ms tick.
const promise = 900 * time.Millisecond

func TestLeaseTracker_ExpiryFollowsTheQuorumthLatestAck(t *testing.T) {
	// Five nodes: a quorum is three, us and two peers.
	l := newTestLease(5, time.Second, 100*time.Millisecond, 0.1)
	length := l.credit(promise)
	if length != 810*time.Millisecond {
		t.Fatalf("lease credit %v, want 900ms promise - 10%% = 810ms", length)
	}
	base := time.Now()
	l.reset(7)
	if !l.expiry(7, base).IsZero() {
		t.Fatal("a lease without acknowledgements")
	}
	l.ack(2, 7, base.Add(30*time.Millisecond), promise)
	if !l.expiry(7, base).IsZero() {
		t.Fatal("a lease with one peer of the two needed")
	}
	l.ack(3, 7, base.Add(10*time.Millisecond), promise)
	l.ack(4, 7, base.Add(20*time.Millisecond), promise)
	// Latest acks: 30, 20, 10 ms; the second latest counts.
	if got, want := l.expiry(7, base), base.Add(20*time.Millisecond+length); !got.Equal(want) {
		t.Fatalf("expiry %v after base, want %v", got.Sub(base), want.Sub(base))
	}
	l.ack(3, 7, base.Add(5*time.Millisecond), promise)  // older than what peer 3 acked: ignored
	l.ack(5, 6, base.Add(90*time.Millisecond), promise) // an old term: ignored
	if got, want := l.expiry(7, base), base.Add(20*time.Millisecond+length); !got.Equal(want) {
		t.Fatalf("stale acks moved the expiry to %v", got.Sub(base))
	}
	if !l.expiry(8, base).IsZero() {
		t.Fatal("acknowledgements of term 7 gave a lease in term 8")
	}
	l.reset(8)
	if !l.expiry(8, base).IsZero() {
		t.Fatal("acknowledgements survived a new term")
	}
}

// The lease must rest on what each follower promised, not on our own
// election timeout: a follower restarted with a shorter timeout (a rolling
// change) votes sooner, and the lease must end sooner with it.
func TestLeaseTracker_LeaseEndsWithTheFollowersOwnPromise(t *testing.T) {
	// Our election timeout is 5s; the only follower promises 900ms.
	l := newTestLease(3, 5*time.Second, 100*time.Millisecond, 0.1)
	base := time.Now()
	l.reset(3)
	l.ack(2, 3, base, 900*time.Millisecond)
	if got, want := l.expiry(3, base), base.Add(810*time.Millisecond); !got.Equal(want) {
		t.Fatalf("lease ends %v after the ack, want %v: the follower's promise, less the margin", got.Sub(base), want.Sub(base))
	}
	// Five nodes, promises of different lengths: the quorum-th latest end
	// counts, whatever order the sends were in.
	l = newTestLease(5, time.Second, 100*time.Millisecond, 0.1)
	l.reset(1)
	l.ack(3, 1, base, 4*time.Second) // counts as our own 900ms: ends 810ms
	if !l.expiry(1, base).IsZero() {
		t.Fatal("a lease with one of the two peers needed")
	}
	l.ack(2, 1, base.Add(50*time.Millisecond), 100*time.Millisecond) // ends 140ms
	if got, want := l.expiry(1, base), base.Add(140*time.Millisecond); !got.Equal(want) {
		t.Fatalf("lease ends %v, want %v: the shorter promise of the two binds", got.Sub(base), want.Sub(base))
	}
	l.ack(4, 1, base.Add(20*time.Millisecond), 800*time.Millisecond) // ends 740ms
	if got, want := l.expiry(1, base), base.Add(740*time.Millisecond); !got.Equal(want) {
		t.Fatalf("lease ends %v, want %v (the second latest promise end: 810, 740, 140ms)", got.Sub(base), want.Sub(base))
	}
	// A negative promise gives nothing; no promise from the network buys
	// more than maxPromise.
	l.reset(2)
	l.ack(3, 2, base, -time.Second)
	if !l.expiry(2, base).IsZero() {
		t.Fatal("a lease from an acknowledgement with a negative promise")
	}
	l.ack(4, 2, base, 1<<62)
	l.ack(5, 2, base, 1<<62)
	if got := l.expiry(2, base).Sub(base); got != l.credit(l.own) {
		t.Fatalf("huge promises from the network bought %v, want our own %v", got, l.credit(l.own))
	}
}

// A peer of an older release states no promise: it is taken to run with
// our timings (that release's assumption), so a rolling upgrade keeps its
// leases, and it does not count as current.
func TestLeaseTracker_APeerWithoutAPromiseIsTakenToShareOurTimings(t *testing.T) {
	l := newTestLease(3, time.Second, 100*time.Millisecond, 0.1)
	base := time.Now()
	l.reset(1)
	l.ack(2, 1, base, 0)
	if got, want := l.expiry(1, base), base.Add(l.credit(900*time.Millisecond)); !got.Equal(want) {
		t.Fatalf("lease ends %v after the ack, want %v", got.Sub(base), want.Sub(base))
	}
	if l.allCurrent([]uint64{2, 3}) {
		t.Fatal("a peer without a promise counted as current")
	}
	l.ack(3, 1, base.Add(time.Millisecond), 900*time.Millisecond)
	if l.allCurrent([]uint64{2, 3}) {
		t.Fatal("one legacy peer of two, yet all current")
	}
	l.ack(2, 1, base.Add(2*time.Millisecond), 900*time.Millisecond)
	if !l.allCurrent([]uint64{2, 3}) {
		t.Fatal("both peers state promises, yet not all current")
	}
}

func TestLeaseTracker_SingleNodeHoldsItsOwnLease(t *testing.T) {
	l := newTestLease(1, time.Second, 100*time.Millisecond, 0.1)
	l.reset(1)
	now := time.Now()
	if l.expiry(1, now).Before(now) {
		t.Fatal("a cluster of one must hold the lease")
	}
}

func TestLeaseTracker_FenceDiscardsEarlierAcks(t *testing.T) {
	l := newTestLease(3, time.Second, 100*time.Millisecond, 0.1)
	base := time.Now()
	l.reset(4)
	l.ack(2, 4, base, promise)
	if l.expiry(4, base).IsZero() {
		t.Fatal("no lease after a quorum's acknowledgement")
	}
	l.fence(base.Add(3 * time.Second))
	if !l.expiry(4, base).IsZero() {
		t.Fatal("a lease survived the fence")
	}
	l.ack(2, 4, base.Add(2*time.Second), promise) // sent before the fence ends
	if !l.expiry(4, base).IsZero() {
		t.Fatal("an acknowledgement of a batch sent inside the fence counted")
	}
	l.ack(2, 4, base.Add(3*time.Second+time.Millisecond), promise)
	if l.expiry(4, base).IsZero() {
		t.Fatal("an acknowledgement after the fence did not count")
	}
}

func TestLeaseTracker_FenceEndsWithItsTerm(t *testing.T) {
	l := newTestLease(3, time.Second, 100*time.Millisecond, 0.1)
	base := time.Now()
	l.reset(4)
	l.fence(base.Add(3 * time.Second))
	l.reset(6) // leader again, in a later term
	l.ack(2, 6, base.Add(time.Millisecond), promise)
	if l.expiry(6, base).IsZero() {
		t.Fatal("the fence of term 4 held back the lease of term 6")
	}
}

// In a joint configuration a lease needs a quorum of each half: a quorum
// of the new voters alone can be disjoint from every quorum of the old
// ones, and a rival counting over the old configuration would need none of
// the promises the new quorum gave.
func TestLeaseTracker_JointConfigurationNeedsAQuorumOfEachHalf(t *testing.T) {
	l := newLeaseTracker(time.Second, 100*time.Millisecond, 0.1)
	base := time.Now()
	l.reset(4, base)
	// Old {1,2,3}, new {1,4,5}: us (1) in both.
	var jc quorum.JointConfig
	jc[0] = quorum.MajorityConfig{1: {}, 4: {}, 5: {}}
	jc[1] = quorum.MajorityConfig{1: {}, 2: {}, 3: {}}
	l.ack(4, 4, base, promise)
	l.ack(5, 4, base, promise)
	if got := l.expiry(4, base, 1, jc); !got.IsZero() {
		t.Fatalf("a lease from the new half alone (ends %v after base); the old half {1,2,3} has only us", got.Sub(base))
	}
	l.ack(3, 4, base.Add(5*time.Millisecond), promise)
	if got, want := l.expiry(4, base, 1, jc), base.Add(l.credit(promise)); !got.Equal(want) {
		t.Fatalf("lease ends %v, want %v: both halves have a quorum, the earlier end binds", got.Sub(base), want.Sub(base))
	}
	// Once the configuration is {1,4,5} alone, the old half no longer counts.
	var next quorum.JointConfig
	next[0] = jc[0]
	next[1] = quorum.MajorityConfig{}
	l.reset(5, base)
	l.ack(4, 5, base.Add(time.Millisecond), promise)
	if got, want := l.expiry(5, base, 1, next), base.Add(time.Millisecond+l.credit(promise)); !got.Equal(want) {
		t.Fatalf("lease ends %v, want %v", got.Sub(base), want.Sub(base))
	}
	// A leader that is not a voter of the incoming half (it replaces
	// itself) needs a quorum of that half without counting itself.
	var self quorum.JointConfig
	self[0] = quorum.MajorityConfig{2: {}, 3: {}, 4: {}}
	self[1] = quorum.MajorityConfig{1: {}, 2: {}, 3: {}}
	l.reset(6, base)
	l.ack(2, 6, base, promise)
	if got := l.expiry(6, base, 1, self); !got.IsZero() {
		t.Fatal("a lease with one of {2,3,4}: the incoming half needs two")
	}
	l.ack(3, 6, base, promise)
	if got := l.expiry(6, base, 1, self); got.IsZero() {
		t.Fatal("no lease with 2 and 3: a quorum of both halves")
	}
}
