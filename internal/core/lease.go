package core

import (
	"math"
	"time"

	"go.etcd.io/raft/v3/quorum"
)

// leaseTracker decides whether the leader holds its lease: whether no other
// node can have been elected yet.
//
// A follower that steps a heartbeat or append from the leader of its term
// resets its election timer and, with CheckQuorum, refuses every vote (and
// starts no campaign) until that timer reaches its election timeout. It says
// so in its acknowledgement: "for P after stepping what you sent at s, I vote
// for no one", where P is its own election timeout less one tick (its first
// tick may come at once), measured on its own clock. So after an
// acknowledgement (s, P) no vote of that follower can go to another node
// before s + P: s is when we sent, and it stepped the batch later still.
//
// A new leader needs votes from a quorum, and every quorum contains one of
// the nodes bound by a promise once a quorum (us included: a leader votes
// for no one) is bound. With the promises' ends e_i = s_i + P_i, sorted
// latest first, the quorum-th (counting us) is when the lease ends. Each
// promise is shortened by the drift margin, for clocks that run at
// different rates; only durations cross machines, never instants, and all
// times here are this process's monotonic clock.
//
// Taking each follower's own promise, not our election timeout, is what
// keeps the lease safe while nodes run with different timings: a rolling
// change of the election timeout, or a node started with a shorter one. A
// promise longer than our own counts as ours: the lease is never longer
// than a leader with our timings would hold it. A
// peer of an older release states no promise (zero): it is taken to run
// with our timings, as that release assumed of every peer, so a rolling
// upgrade keeps its leases; timings must not change during an upgrade.
type leaseTracker struct {
	term      uint64
	notBefore time.Time            // acks of batches sent earlier do not count
	acks      map[uint64]ackCredit // peer -> its latest ack in term
	base      time.Time            // instants are counted from here (quorum code counts integers)
	margin    float64              // drift margin, a fraction of each promise
	own       time.Duration        // our own promise: a cluster of one
	// override, when set, replaces every peer's promise (after the margin):
	// only tests set it, to show the checker catches an unsafe lease.
	override time.Duration
}

// ackCredit is one peer's latest acknowledgement: when we sent what it
// acknowledged, and when its promise (less the margin) ends.
type ackCredit struct {
	sent, until time.Time
	promise     time.Duration
	legacy      bool // stated no promise: an older release
}

// maxPromise bounds what a peer's promise may buy: nobody runs an election
// timeout of an hour, and a number from the network is bounded before use.
const maxPromise = time.Hour

func newLeaseTracker(electionTimeout, tick time.Duration, driftMargin float64) *leaseTracker {
	return &leaseTracker{
		acks:   map[uint64]ackCredit{},
		margin: driftMargin,
		own:    electionTimeout - tick,
	}
}

// credit is how long a promise keeps us safe: the promise less the margin.
func (l *leaseTracker) credit(promise time.Duration) time.Duration {
	if l.override != 0 {
		return l.override
	}
	promise = min(promise, maxPromise)
	return promise - time.Duration(l.margin*float64(promise))
}

// reset forgets every acknowledgement and starts collecting for term. The
// raft loop calls it when this node becomes leader.
func (l *leaseTracker) reset(term uint64, now time.Time) {
	l.term = term
	// Every promise we will count ends after we became leader; base lies
	// well before, so every end is a positive count of nanoseconds.
	l.base = now.Add(-2 * maxPromise)
	// A fence guards the term of the transfer that set it: a stale
	// MsgTimeoutNow of an older term is refused by raft and by stepGuard.
	l.notBefore = time.Time{}
	clear(l.acks)
}

// fence discards every acknowledgement and counts only those of batches sent
// after notBefore. A leadership transfer calls it: peers grant the transferee
// their votes inside their own election timeouts (raft's forced campaign),
// so an acknowledgement from before the transfer proves nothing afterwards,
// until no forced vote can still be cast (see raftLoop.transfer).
func (l *leaseTracker) fence(notBefore time.Time) {
	l.notBefore = notBefore
	clear(l.acks)
}

// ack records that peer followed us in term after stepping what we sent at
// sentAt, and promised no vote for promise after that.
func (l *leaseTracker) ack(peer, term uint64, sentAt time.Time, promise time.Duration) {
	if term != l.term || promise < 0 || !sentAt.After(l.acks[peer].sent) || sentAt.Before(l.notBefore) {
		return
	}
	legacy := promise == 0
	if legacy {
		promise = l.own
	}
	promise = min(promise, maxPromise)
	// A promise longer than our own buys no more than ours: CheckQuorum
	// steps us down after our own election timeout anyway, and a cut-off
	// leader should stop acting within it (it is safe either way).
	l.acks[peer] = ackCredit{sent: sentAt, until: sentAt.Add(l.credit(min(promise, l.own))), promise: promise, legacy: legacy}
}

// expiry returns when the lease for term ends, given the acknowledgements so
// far; the zero time if a quorum has not acknowledged us in term. voters is
// the configuration raft applied: in a joint configuration the lease needs
// a quorum of each half, counted by raft's own quorum code with each
// promise's end as the "index" a voter acknowledged (we ourselves vote for
// no one while we lead: our entry never ends).
func (l *leaseTracker) expiry(term uint64, now time.Time, self uint64, voters quorum.JointConfig) time.Time {
	if term != l.term {
		return time.Time{}
	}
	idx := voters.CommittedIndex(promiseEnds{l: l, self: self})
	switch idx {
	case 0:
		return time.Time{} // no quorum acknowledged us
	case math.MaxUint64:
		return now.Add(l.credit(l.own)) // a cluster of one: us
	}
	return l.base.Add(time.Duration(idx - 1))
}

// promiseEnds presents each voter's promise end to raft's quorum code as
// nanoseconds since base, plus one (0 is "nothing acknowledged").
type promiseEnds struct {
	l    *leaseTracker
	self uint64
}

func (p promiseEnds) AckedIndex(id uint64) (quorum.Index, bool) {
	if id == p.self {
		return math.MaxUint64, true
	}
	a, ok := p.l.acks[id]
	if !ok {
		return 0, false
	}
	d := a.until.Sub(p.l.base)
	if d < 0 {
		d = 0
	}
	return quorum.Index(d) + 1, true
}

// lastAck returns when we sent what peer last acknowledged in the current
// term (zero if nothing).
func (l *leaseTracker) lastAck(peer uint64) time.Time {
	return l.acks[peer].sent
}

// longestPromise returns the longest promise a peer gave in this term, or
// our own if longer: a peer's timeouts, and so how long its forced votes
// after a transfer may still be on their way, scale with it.
func (l *leaseTracker) longestPromise() time.Duration {
	longest := l.own
	for _, a := range l.acks {
		longest = max(longest, a.promise)
	}
	return longest
}

// allCurrent reports whether every one of peers has acknowledged us in this
// term with a promise of its own, i.e. runs this release or a later one.
func (l *leaseTracker) allCurrent(peers []uint64) bool {
	for _, id := range peers {
		if a, ok := l.acks[id]; !ok || a.legacy {
			return false
		}
	}
	return true
}
