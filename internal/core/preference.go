package core

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
)

// Preferred leaders: every member has a priority (its replicated record).
// Once the leader has held its lease for FailBackAfter without a break, and
// a voter of higher priority has acknowledged every heartbeat for as long
// (no gap of more than two heartbeats) and has our whole log, the leader
// hands leadership to it: after a failover, leadership returns to the
// primary region once that region is healthy again, and never while its
// links flap (a gap starts its healthy period over). A move goes only to a
// strictly higher priority, so moves cannot cycle.

type preference struct {
	heardAt      map[uint64]time.Time // per peer: when its last acknowledgement of us arrived
	healthySince map[uint64]time.Time // per peer: since when with no gap over two heartbeats
	lastMove     string               // why leadership last moved by preference
}

// heard records an acknowledgement of us as leader from peer at now.
func (p *preference) heard(peer uint64, now time.Time, tick time.Duration) {
	if p.heardAt == nil {
		p.heardAt, p.healthySince = map[uint64]time.Time{}, map[uint64]time.Time{}
	}
	if last, ok := p.heardAt[peer]; !ok || now.Sub(last) > 2*tick {
		p.healthySince[peer] = now
	}
	p.heardAt[peer] = now
}

// Preferred returns the member leadership should rest with: the voter of
// the highest priority that may lead (by name among equals), and whether
// any member has a priority at all.
func (n *Node) Preferred() (Member, bool) {
	var best Member
	found := false
	for _, m := range n.Members() {
		if m.Learner || m.Witness {
			continue
		}
		if !found || m.Priority > best.Priority {
			best, found = m, true
		}
	}
	if !found || best.Priority == 0 {
		return Member{}, false
	}
	return best, true
}

// LastPreferredMove says why leadership last moved by preference ("" if it
// never did on this node).
func (n *Node) LastPreferredMove() string { return n.pref.lastMove }

// considerFailBack moves leadership to a healthier-preferred voter if one
// qualifies (see above). It runs on every tick.
func (n *Node) considerFailBack(now time.Time) error {
	after := n.cfg.FailBackAfter
	if after <= 0 || !n.holding || now.Sub(n.leaseStart) < after {
		return nil
	}
	own := n.member(n.cfg.ID).Priority
	var cands []Member
	for _, m := range n.Members() {
		if m.ID == n.cfg.ID || m.Learner || m.Witness || m.Priority <= own {
			continue
		}
		heard, since := n.pref.heardAt[m.ID], n.pref.healthySince[m.ID]
		if heard.IsZero() || now.Sub(heard) > 2*n.cfg.Tick || now.Sub(since) < after {
			continue
		}
		cands = append(cands, m)
	}
	if len(cands) == 0 {
		return nil
	}
	st := n.rn.Status()
	if st.RaftState != raft.StateLeader {
		return nil
	}
	last := st.Progress[n.cfg.ID].Match
	slices.SortFunc(cands, func(a, b Member) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), cmp.Compare(a.Name, b.Name))
	})
	for _, m := range cands {
		if pr, ok := st.Progress[m.ID]; !ok || pr.Match < last {
			continue
		}
		reason := fmt.Sprintf("fail-back to preferred member %s (priority %d > %d): it has acknowledged every heartbeat for %s, and this leader held its lease for %s",
			m.Name, m.Priority, own, now.Sub(n.pref.healthySince[m.ID]).Round(time.Millisecond), now.Sub(n.leaseStart).Round(time.Millisecond))
		n.pref.lastMove = reason
		n.log.Info("moving leadership to the preferred member", "to", m.Name, "reason", reason)
		n.out.Events = append(n.out.Events, Event{Kind: EventPreferred, Role: n.role, Term: n.term, Vote: n.vote, Lead: n.lead, At: now, Reason: reason})
		return n.Transfer(now, m.ID, map[uint64]bool{m.ID: true})
	}
	return nil
}
