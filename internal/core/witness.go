package core

import (
	"errors"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Witnesses: a voter that never leads, for a third site that only breaks
// ties between two regions. It votes, acknowledges and counts for quorums
// like any voter, but:
//   - it never asks for votes: its vote requests are dropped before they
//     leave (it still becomes a pre-candidate in raft's eyes, which forgets
//     the leader, so it grants votes to others as soon as its promise ends);
//   - it refuses to be the target of a transfer (MsgTimeoutNow is dropped,
//     and Transfer refuses it);
//   - if it ever wins anyway (a store from before it was a witness), it
//     takes no lease and hands leadership to a voter at its next tick.
//
// Whether a node is a witness is part of its replicated member record.

// errWitnessNoTransfer: a witness refused a MsgTimeoutNow.
var errWitnessNoTransfer = errors.New("a witness never takes leadership: transfer refused")

// isWitness reports whether this node is a witness.
func (n *Node) isWitness() bool { return n.member(n.cfg.ID).Witness }

// withoutTransfersToWitness drops MsgTimeoutNow if we are a witness.
func (n *Node) withoutTransfersToWitness(msgs []*raftpb.Message, rejected func(*raftpb.Message, error)) []*raftpb.Message {
	if !n.isWitness() {
		return msgs
	}
	out := make([]*raftpb.Message, 0, len(msgs))
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgTimeoutNow {
			rejected(m, errWitnessNoTransfer)
			continue
		}
		out = append(out, m)
	}
	return out
}

// handAwayIfWitness: a witness that leads hands leadership to the best voter.
func (n *Node) handAwayIfWitness(now time.Time) {
	if !n.isWitness() {
		return
	}
	all := map[uint64]bool{}
	for _, id := range n.configIDs() {
		all[id] = true
	}
	n.handLeadershipTo(now, all, "a witness won an election: handing leadership away")
}

// handLeadershipTo transfers leadership, if we lead and no transfer is under
// way, to the best of the peers in eligible (transferCandidates), ending and
// fencing the lease first as every transfer does.
func (n *Node) handLeadershipTo(now time.Time, eligible map[uint64]bool, why string) {
	st := n.rn.Status()
	if st.RaftState != raft.StateLeader || st.LeadTransferee != raft.None {
		return
	}
	c := n.transferCandidates(now, st, eligible)
	if len(c) == 0 {
		return
	}
	n.log.Info(why, "to", n.name(c[0]))
	n.endLease(now)
	n.fenceTransfer(now)
	n.rn.TransferLeader(c[0])
}

// leadable reports whether id may lead: a voter that is not a witness.
func (n *Node) leadable(id uint64) bool {
	return n.isVoter(id) && !n.member(id).Witness
}
