package core

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
)

// Leadership transfers, and the fence that keeps a lease from being founded
// on acknowledgements a transfer may have made stale.

// Transfer ends the lease and asks raft to hand leadership to `to` (0: the
// best candidate, see transferCandidates; the others are kept, in order, as
// fallbacks for RetargetTransfer). reachable says which peers the transport
// can reach now (their last send succeeded and their connection is up).
func (n *Node) Transfer(now time.Time, to uint64, reachable map[uint64]bool) error {
	st := n.rn.Status()
	if st.RaftState != raft.StateLeader {
		return ErrNotLeader
	}
	n.fallbacks = nil
	if to != 0 && !n.leadable(to) {
		what := "not a voter"
		if n.member(to).Witness {
			what = "a witness, which never leads"
		}
		return fmt.Errorf("cannot transfer to %s: it is %s; pick another member", n.name(to), what)
	}
	if to != 0 && !reachable[to] {
		return fmt.Errorf("cannot transfer to %s: it is not reachable from this leader now; check it runs, or let the leader choose", n.name(to))
	}
	if to == 0 {
		c := n.transferCandidates(now, st, reachable)
		if len(c) == 0 {
			return errors.New("no reachable peer has acknowledged this leader recently; nobody to transfer to")
		}
		to, n.fallbacks = c[0], c[1:]
	}
	// End the lease before anyone else can be told to campaign: the
	// transferee campaigns at once and peers grant it votes inside their
	// own leases. observe also ends it (LeadTransferee is set), but the
	// order must not depend on that.
	n.endLease(now)
	n.fenceTransfer(now)
	n.log.Info("transferring leadership", "to", n.name(to))
	n.rn.TransferLeader(to)
	return n.afterInput(now)
}

// StartGracefulStop hands leadership to a peer if we lead a cluster of more
// than one; it reports whether there is a transfer to wait for.
func (n *Node) StartGracefulStop(now time.Time, reachable map[uint64]bool) bool {
	if n.rn.BasicStatus().RaftState != raft.StateLeader || len(n.peerVoters()) == 0 {
		return false
	}
	if err := n.Transfer(now, 0, reachable); err != nil {
		n.log.Warn("no leadership transfer before stop", "err", err)
		return false
	}
	return true
}

// transferCandidates lists the peers a transfer may go to, best first.
// Only a peer that is reachable and acknowledged us within an election
// timeout qualifies: one that went away a moment ago cannot take over, and
// waiting for it costs a whole election timeout. Among those: acknowledged
// within the last few heartbeats first (a live peer acknowledges every
// heartbeat; an older acknowledgement means a slow or dying link), then
// caught up with our log (raft can send MsgTimeoutNow at once), then the
// most recent acknowledgement, then the lowest ID (so the order never
// depends on map iteration).
func (n *Node) transferCandidates(now time.Time, st raft.Status, reachable map[uint64]bool) []uint64 {
	last := st.Progress[n.cfg.ID].Match
	type cand struct {
		id         uint64
		fresh, cur bool
		ack        time.Time
	}
	var cs []cand
	for id, pr := range st.Progress {
		ack := n.lease.lastAck(id)
		if id == n.cfg.ID || !reachable[id] || now.Sub(ack) > n.electionTimeout || !n.leadable(id) {
			continue
		}
		cs = append(cs, cand{id: id, fresh: now.Sub(ack) <= recentAckTicks*n.cfg.Tick, cur: pr.Match >= last, ack: ack})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		switch {
		case a.fresh != b.fresh:
			return boolFirst(a.fresh)
		case a.cur != b.cur:
			return boolFirst(a.cur)
		case !a.ack.Equal(b.ack):
			return b.ack.Compare(a.ack)
		default:
			return cmp.Compare(a.id, b.id)
		}
	})
	out := make([]uint64, len(cs))
	for i, c := range cs {
		out[i] = c.id
	}
	return out
}

// recentAckTicks: a peer that acknowledged us within this many heartbeats
// is heard from recently. The leader sends every heartbeat and a peer's
// answer comes one round trip later (at most about one heartbeat on a link
// the timeouts are chosen for), so a live peer's last acknowledgement is at
// most two heartbeats old; three leave room for jitter.
const recentAckTicks = 3

func boolFirst(a bool) int {
	if a {
		return -1
	}
	return 1
}

// RetargetTransfer runs on every pass of a graceful stop: if the
// transferee is no longer reachable (it stopped after we chose it), or raft
// gave the transfer up, hand over to the next candidate at once instead of
// waiting out the stop's election timeout for a transfer that cannot
// complete.
func (n *Node) RetargetTransfer(now time.Time, reachable map[uint64]bool) error {
	st := n.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || len(n.fallbacks) == 0 {
		return nil
	}
	if cur := st.LeadTransferee; cur != raft.None && reachable[cur] {
		return nil
	}
	for len(n.fallbacks) > 0 {
		next := n.fallbacks[0]
		n.fallbacks = n.fallbacks[1:]
		if !reachable[next] {
			continue
		}
		// As in Transfer: no acknowledgement founds a lease until this
		// transfer's MsgTimeoutNow and forced votes are over.
		n.fenceTransfer(now)
		n.log.Info("transferring leadership to the next candidate", "to", n.name(next), "unreachable", n.name(st.LeadTransferee))
		n.rn.TransferLeader(next)
		return n.afterInput(now)
	}
	return nil
}

// fenceTransfer keeps acknowledgements from founding a lease while a
// transfer's messages may still act. If raft gives the transfer up (after
// at most an election timeout) we stay leader in this term, but
// MsgTimeoutNow may be on its way: it can wait half an election timeout in
// a queue and half in flight, and so can the transferee's forced vote
// requests, which peers grant inside their leases. Until all of that is
// over: 3 election timeouts from now, the longest of anyone's (a peer's
// timeouts follow its promise, its own election timeout less a tick).
func (n *Node) fenceTransfer(now time.Time) {
	longest := max(n.electionTimeout, n.lease.longestPromise()+n.cfg.Tick)
	n.lease.fence(now.Add(3 * longest))
}
