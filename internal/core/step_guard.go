package core

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// stepGuard is the second half of inbound validation (the first, stateless
// half is transport's inboundValidator): the checks that depend on raft's
// state, run on the raft loop just before Step. Raft assumes its peers are
// correct and panics on some impossible inputs; a message that would reach
// one of those panics is rejected here instead.
//
// Every check is made against raft's state as it is when the message is
// stepped, not as it was when the batch arrived: stepBatch hands raft's
// Ready to the loop after each message that may have changed the log, so
// the store the checks read is raft's log.
type stepGuard struct {
	rn    *raft.RawNode
	store raft.Storage
	// voteGuardUntil: until then this node grants no vote or pre-vote. See
	// docs/safety.md: a restarted node may have acknowledged a leader (whose
	// lease counts on it) or, with lost state, voted in the current term.
	voteGuardUntil time.Time
	// liftOnLeader ends the guard once a leader's heartbeat or append resets
	// our election timer: raft's in-lease check takes over from there. Not
	// after a start without state, where the guard also covers a vote we
	// may have cast and forgotten.
	liftOnLeader bool
	// terms is the term budget (see termBurst); the zero value has spent
	// nothing.
	terms termBudget
	// againstBatchStart puts a fixed bug back (Bugs.ChecksAgainstBatchStart):
	// no Ready is processed inside a batch, so the checks read the log as it
	// was before the batch.
	againstBatchStart bool
	// electionsHeld: a member's list differs from ours, so no vote request
	// is stepped (agreement.go).
	electionsHeld func() bool
	// isVoter: whether a node votes in our applied configuration.
	isVoter func(uint64) bool
	// stalledUntil: this node's inputs stopped for longer than any of its
	// timers allows (its process was stopped, or its disk or loop held it),
	// and until then MsgTimeoutNow is refused (Node.noteStall).
	stalledUntil time.Time
}

// mayWin reports whether a vote request could come to something, as far as
// we can tell: its candidate is a voter of our configuration and its log is
// at least as up to date as ours. Only such a campaign is worth waiting for
// instead of starting ours (campaign.go): a removed member's or a stale
// node's held every follower back by half an election timeout (chaos
// grow-shrink).
func (g *stepGuard) mayWin(m *raftpb.Message) bool {
	if g.isVoter != nil && !g.isVoter(m.GetFrom()) {
		return false
	}
	last, err := g.store.LastIndex()
	if err != nil {
		return true
	}
	lastTerm, err := g.store.Term(last)
	if err != nil {
		return true
	}
	return m.GetLogTerm() > lastTerm || m.GetLogTerm() == lastTerm && m.GetIndex() >= last
}

// The term budget: how far messages may move our term. The transport
// bounds every term by MaxTerm; this bounds how fast a peer can push us
// towards it, so that one holding a member's certificate cannot bring the
// cluster to the ceiling, where no election could happen any more. Since
// the node started, messages may have raised our term by at most termBurst
// plus termRefill per second of uptime.
//
// A correct cluster never meets the bound. A node hears of terms one
// election at a time, or all at once when it rejoins after a partition or
// starts without state; 2^32 elections (one every 10 ms for 16 months) is
// beyond any cluster's life, and no cluster sustains 65,536 elections a
// second (each takes a disk write and a round trip on every voter). A
// hostile member that spends the budget as fast as it grows needs 136
// years (2^32 seconds) of a node's uptime to bring it to MaxTerm (2^48).
//
// The allowance is not capped, on purpose: a cap would let a hostile
// member split honest nodes for good, pushing one of them further ahead of
// another than the other may ever jump. Uncapped, every node's allowance
// grows as fast as any peer can be pushed, so honest nodes always catch up
// with each other once the pushing stops; only a node restarted during the
// attack (its allowance starts again from termBurst) may have to wait, at
// most as long as the attack lasted beyond its first burst.
// TermBurst and TermRefill are the term budget's burst and refill per
// second (exported for tests that probe the bound).
const (
	TermBurst  = 1 << 32
	TermRefill = 1 << 16
)

const (
	termBurst  = TermBurst
	termRefill = TermRefill
)

// errTermBudget marks a message refused for moving our term too far.
var errTermBudget = errors.New("beyond the term budget")

// termBudget counts what messages raised our term since start.
type termBudget struct {
	start time.Time // the first check; zero until then
	spent uint64
}

// available returns how far our term may rise at now.
func (b *termBudget) available(now time.Time) uint64 {
	if b.start.IsZero() {
		b.start = now
	}
	allowed := uint64(termBurst)
	if now.After(b.start) {
		allowed += uint64(now.Sub(b.start) / (time.Second / termRefill))
	}
	return allowed - min(allowed, b.spent)
}

// spend records that our term rose by n.
func (b *termBudget) spend(n uint64) { b.spent += n }

// leaderHeard is called when a heartbeat, append or snapshot from the
// leader of our term has reset raft's election timer.
func (g *stepGuard) leaderHeard() {
	if g.liftOnLeader {
		g.voteGuardUntil = time.Time{}
	}
}

// stepBatch steps one inbound batch into raft, in order, checking each
// message against raft's state right before it is stepped. A message that
// fails a check is passed to rejected and not stepped. ready must process
// raft's pending Ready (persist, send, advance); stepBatch calls it after a
// log-changing message (append or snapshot) that more messages follow,
// because an append may shorten raft's log (a conflicting suffix is
// replaced) and the next message's checks read the store. It returns the
// highest term of a stepped heartbeat, append or snapshot (0 if none), and
// ready's error.
//
// It also reports whether the batch carried a vote or pre-vote request,
// stepped or not (the vote guard may drop it): someone is campaigning.
func (g *stepGuard) stepBatch(msgs []*raftpb.Message, now time.Time, ready func() error, rejected func(*raftpb.Message, error)) (resetBy uint64, campaign bool, err error) {
	// MsgTimeoutNow must come from the leader we followed before this
	// batch: a heartbeat earlier in the batch may have made its sender our
	// "leader" a moment ago.
	before := g.rn.BasicStatus()
	term := before.GetTerm()
	for i, m := range msgs {
		if t := m.GetType(); (t == raftpb.MsgPreVote || t == raftpb.MsgVote) && g.mayWin(m) {
			campaign = true
		}
		skip, err := g.check(m, before, term, now)
		if err != nil {
			rejected(m, err)
			continue
		}
		if skip {
			continue
		}
		if err := g.rn.Step(m); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
			rejected(m, fmt.Errorf("raft refused it: %w", err))
			continue
		}
		// Only a higher term, or a message that can start our campaign,
		// raises our term; BasicStatus allocates, so ask only then.
		if t := m.GetType(); m.GetTerm() > term || t == raftpb.MsgTimeoutNow || t == raftpb.MsgPreVoteResp {
			if after := g.rn.BasicStatus().GetTerm(); after > term {
				g.terms.spend(after - term)
				term = after
			}
		}
		switch m.GetType() {
		case raftpb.MsgHeartbeat, raftpb.MsgApp, raftpb.MsgSnap:
			resetBy = max(resetBy, m.GetTerm())
		}
		if t := m.GetType(); (t == raftpb.MsgApp || t == raftpb.MsgSnap) && i < len(msgs)-1 && !g.againstBatchStart && g.rn.HasReady() {
			if err := ready(); err != nil {
				return resetBy, campaign, err
			}
		}
	}
	return resetBy, campaign, nil
}

// forcedCampaign is the context raft puts on a transferee's vote requests
// (raft's campaignTransfer), which voters grant inside their leases.
const forcedCampaign = "CampaignTransfer"

// check returns skip=true for a message to drop quietly (a vote request
// during the vote guard) and an error for one that must be rejected. before
// is raft's status when the batch arrived, term our term now. It may lower
// a heartbeat's commit index (see below).
func (g *stepGuard) check(m *raftpb.Message, before raft.BasicStatus, term uint64, now time.Time) (skip bool, err error) {
	if m.GetTerm() > term {
		if jump, budget := m.GetTerm()-term, g.terms.available(now); jump > budget {
			return false, fmt.Errorf("term %d is %d above ours (%d), more than the %d terms a peer may move us now: %w", m.GetTerm(), jump, term, budget, errTermBudget)
		}
		// A response in a higher term moves raft to that term with no
		// leader, and a node with no leader grants votes at once. A
		// follower has asked nothing (a response is stale: to a campaign it
		// gave up on hearing the leader, or to a leadership it lost), and it
		// may have just promised the leader it follows no vote for an
		// election timeout: stepping the response would break that promise,
		// and the lease built on it. The simulator found it (seed 12786: a
		// pre-candidate hears the leader, acknowledges it, then steps the
		// rejection of its pre-vote in term 3 and votes for another node 21
		// ms after its promise). Drop it; raft loses nothing it needs, and
		// the node learns the term from the next leader or, once its
		// promise is over, from a vote request.
		if isResponse(m.GetType()) && g.rn.BasicStatus().RaftState == raft.StateFollower {
			return true, nil
		}
	}
	switch m.GetType() {
	case raftpb.MsgVote, raftpb.MsgPreVote:
		if now.Before(g.voteGuardUntil) || g.electionsHeld != nil && g.electionsHeld() {
			return true, nil
		}
		// A transferee's forced vote request bypasses our promise to the
		// leader, as MsgTimeoutNow does (below): read just after a stall,
		// it may be older than the leader's transfer fence.
		if now.Before(g.stalledUntil) && bytes.Equal(m.GetContext(), []byte(forcedCampaign)) {
			return false, fmt.Errorf("a forced (transfer) vote request from %x read just after this node stalled: it may be older than the leader's transfer fence", m.GetFrom())
		}
	case raftpb.MsgHeartbeat:
		// A heartbeat's commit beyond our last index makes raft panic. A
		// correct leader sends one to a node that lost its log (in-memory
		// store restarted, data directory emptied) until it learns the
		// node's real progress, so clamp rather than reject: commit only
		// says "at least this much is committed", and less is still true.
		last, err := g.store.LastIndex()
		if err != nil {
			return false, err
		}
		if m.GetCommit() > last {
			m.Commit = &last
		}
	case raftpb.MsgAppResp:
		// An acknowledgement beyond our log would make the leader believe
		// entries are replicated that do not exist.
		last, err := g.store.LastIndex()
		if err != nil {
			return false, err
		}
		if m.GetIndex() > last {
			return false, fmt.Errorf("MsgAppResp for index %d beyond our last index %d", m.GetIndex(), last)
		}
		// A refusal of entries the peer acknowledged before means it lost
		// its state (an emptied data directory, an in-memory store). Raft
		// never lowers what it knows a peer holds, so it would answer
		// every such refusal with the same append, at the round-trip rate,
		// for as long as it leads (the simulator found the storm). Drop it:
		// raft can do nothing with it, and the peer catches up from the
		// next leader, which starts from what the peer really holds.
		if m.GetReject() && before.RaftState == raft.StateLeader {
			if pr, ok := g.rn.Status().Progress[m.GetFrom()]; ok && pr.Match >= m.GetIndex() {
				return true, nil
			}
		}
	case raftpb.MsgTimeoutNow:
		// Only the leader we followed before this batch may hand us
		// leadership, in its term.
		if m.GetFrom() != before.Lead || m.GetTerm() != before.GetTerm() {
			return false, fmt.Errorf("MsgTimeoutNow from %x in term %d, but we followed %x in term %d", m.GetFrom(), m.GetTerm(), before.Lead, before.GetTerm())
		}
		// Its forced votes bypass every voter's promise, which the leader's
		// transfer fence covers for 3 election timeouts only. Just after a
		// stall it may have waited here for longer, the leader having
		// given the transfer up and renewed its lease (docs/safety.md).
		if now.Before(g.stalledUntil) {
			return false, fmt.Errorf("MsgTimeoutNow from %x read just after this node stalled: it may be older than the leader's transfer fence", m.GetFrom())
		}
	}
	return false, nil
}

// ackTerm reports whether an acknowledgement of our heartbeats in term
// (from a Send response, which a peer writes) may be stepped as that peer's
// MsgHeartbeatResp: only in our own term. A correct follower acknowledges
// us only in a term we lead, so any other term is stale or hostile, and a
// higher one would make raft adopt it unchecked.
func (g *stepGuard) ackTerm(term uint64) bool {
	return term == g.rn.BasicStatus().GetTerm()
}

// isResponse says whether t answers something this node sent.
func isResponse(t raftpb.MessageType) bool {
	switch t {
	case raftpb.MsgAppResp, raftpb.MsgHeartbeatResp, raftpb.MsgVoteResp, raftpb.MsgPreVoteResp:
		return true
	}
	return false
}
