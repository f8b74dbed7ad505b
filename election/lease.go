package election

import (
	"slices"
	"sync"
	"time"
)

// leaseTracker decides whether the leader holds its lease: whether no other
// node can have been elected yet.
//
// A follower that steps a heartbeat or append from the leader of its term
// resets its election timer and, with CheckQuorum, refuses every vote until
// that timer reaches the election timeout. So when a peer acknowledges (in
// the SendResponse) that it followed us in term T after stepping messages we
// sent at time s, it grants no vote before s + electionTimeout - tick (its
// first tick may come at once). A new leader needs votes from a quorum, and
// every quorum contains one of the nodes that acknowledged us (we count
// ourselves: a leader votes for no one). Hence, with the quorum-th latest
// acknowledgement sent at s_q, no other leader can exist before
// s_q + electionTimeout - tick. The lease ends earlier still by a margin for
// clocks that run at different rates. All times are this process's monotonic
// clock; only durations cross machines, never instants.
type leaseTracker struct {
	mu        sync.Mutex
	term      uint64
	notBefore time.Time            // acks of batches sent earlier do not count
	acks      map[uint64]time.Time // peer -> send time of its latest ack in term
	quorum    int                  // votes needed, us included
	length    time.Duration        // how long an acknowledgement keeps us safe
}

func newLeaseTracker(clusterSize int, electionTimeout, tick time.Duration, driftMargin float64) *leaseTracker {
	length := electionTimeout - tick - time.Duration(driftMargin*float64(electionTimeout))
	return &leaseTracker{
		acks:   make(map[uint64]time.Time, clusterSize),
		quorum: clusterSize/2 + 1,
		length: length,
	}
}

// reset forgets every acknowledgement and starts collecting for term. The
// raft loop calls it when this node becomes leader.
func (l *leaseTracker) reset(term uint64) {
	l.mu.Lock()
	l.term = term
	// A fence guards the term of the transfer that set it: a stale
	// MsgTimeoutNow of an older term is refused by raft and by stepGuard.
	l.notBefore = time.Time{}
	clear(l.acks)
	l.mu.Unlock()
}

// fence discards every acknowledgement and counts only those of batches sent
// after notBefore. A leadership transfer calls it: peers grant the transferee
// their votes inside their own election timeouts (raft's forced campaign),
// so an acknowledgement from before the transfer proves nothing afterwards,
// until no forced vote can still be cast (see raftLoop.transfer).
func (l *leaseTracker) fence(notBefore time.Time) {
	l.mu.Lock()
	l.notBefore = notBefore
	clear(l.acks)
	l.mu.Unlock()
}

// ack records that peer followed us in term after stepping what we sent at
// sentAt. Called from the transport's sender goroutines; never blocks. The
// caller wakes the raft loop, which recomputes the lease.
func (l *leaseTracker) ack(peer, term uint64, sentAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if term != l.term || !sentAt.After(l.acks[peer]) || sentAt.Before(l.notBefore) {
		return
	}
	l.acks[peer] = sentAt
}

// expiry returns when the lease for term ends, given the acknowledgements so
// far; the zero time if a quorum has not acknowledged us in term.
func (l *leaseTracker) expiry(term uint64) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	need := l.quorum - 1 // we count ourselves
	if term != l.term {
		return time.Time{}
	}
	if need == 0 {
		return time.Now().Add(l.length) // a cluster of one
	}
	if len(l.acks) < need {
		return time.Time{}
	}
	var buf [16]time.Time
	sent := buf[:0]
	for _, t := range l.acks {
		sent = append(sent, t)
	}
	slices.SortFunc(sent, func(a, b time.Time) int { return b.Compare(a) }) // latest first
	return sent[need-1].Add(l.length)
}

// lastAck returns when peer last acknowledged us in the current term.
func (l *leaseTracker) lastAck(peer uint64) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acks[peer]
}
