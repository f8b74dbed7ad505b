package core

import (
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Configuration agreement: the transport compares every peer's
// configuration with ours on every connection and says when a peer's
// member list differs (MembershipDiffers); this file decides what follows.
//
// While any member's list differs from ours, this node takes no part in
// elections: it neither asks for votes nor gives them. Refusing raft
// messages between the two nodes of the pair (the transport does) is not
// enough: if n1 and n2 list {n1,n2,n3} and n3, n4 and n5 list {n1..n5},
// each group agrees within itself and holds a majority of its own list, so
// each could elect a leader. Any member common to both lists (here n3)
// sees the difference; as long as it and every other node that sees one
// stays out of elections, two lists whose majorities might not intersect
// cannot both elect. A leader that already leads keeps its lease from the
// followers that agree with it.

// MembershipDiffers records that peer's member list differs from ours, or
// agrees again.
func (n *Node) MembershipDiffers(now time.Time, peer uint64, differs bool) error {
	was := n.ElectionsHeld()
	if differs {
		n.differing[peer] = true
	} else {
		delete(n.differing, peer)
	}
	switch held := n.ElectionsHeld(); {
	case held && !was:
		n.log.Warn("members disagree on membership: this node takes no part in elections (neither asks for votes nor gives them) until they agree",
			"peer", n.name(peer))
	case !held && was:
		n.log.Info("members agree on membership again: this node takes part in elections again")
	}
	return n.afterInput(now)
}

// ElectionsHeld reports whether this node takes no part in elections because
// a member's list differs from ours.
func (n *Node) ElectionsHeld() bool { return len(n.differing) > 0 }

func isVoteRequest(t raftpb.MessageType) bool {
	return t == raftpb.MsgVote || t == raftpb.MsgPreVote
}

// withoutVoteRequests removes vote requests from msgs, in place.
func withoutVoteRequests(msgs []*raftpb.Message) []*raftpb.Message {
	out := msgs[:0]
	for _, m := range msgs {
		if !isVoteRequest(m.GetType()) {
			out = append(out, m)
		}
	}
	return out
}
