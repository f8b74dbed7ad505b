package core

import (
	"slices"
	"time"

	"go.etcd.io/raft/v3"
)

// The gone-leader logic: when the leader we follow falls silent for all of
// our promise to it (or, with FastFailoverOnRefusal, its connections are
// refused), campaign at once, staggered by rank, instead of waiting out
// raft's randomized election timeout.

// maxQuickCampaigns bounds the quick campaigns after a leader went silent.
const maxQuickCampaigns = 5

// leaderHeard renews our promise to the leader: the campaign timer is set
// for when it has run out (see campaignIfLeaderSilent).
func (n *Node) leaderHeard(now time.Time, leader uint64) {
	n.leaderHeardAt, n.goneLeader, n.campaigns, n.quick = now, leader, 0, false
	// An election that produced this leader is over: a vote request seen
	// during it must not hold back a campaign after this leader is gone.
	n.candidateSeenAt = time.Time{}
	n.adoptLeadersClusterID(now, leader)
	n.campaignAt = now.Add(n.electionTimeout + n.campaignDelay())
}

// PeerRefused acts on a refused connection to peer. Only the leader we
// follow matters, and only when Config.FastFailoverOnRefusal says that a
// refusal proves the leader's process is gone (docs/safety.md, "A leader
// that is gone"): then there is no lease to wait out. Forget it, so we grant
// (pre-)votes at once, and campaign soon (see campaignDelay). Without that
// option a refusal is only a hint: firewalls with reject rules, Service
// proxies and load balancers refuse connections for a leader that is alive
// and acting.
func (n *Node) PeerRefused(now time.Time, id uint64) error {
	st := n.rn.BasicStatus()
	if !n.cfg.FastFailoverOnRefusal || st.RaftState != raft.StateFollower || st.Lead != id || id == n.cfg.ID {
		return nil
	}
	n.log.Info("leader's connections refused: taking its process as gone (fast_failover_on_refusal)", "leader", n.name(id), "term", st.GetTerm())
	if err := n.rn.ForgetLeader(); err != nil {
		n.log.Warn("forget leader", "err", err)
	}
	n.goneLeader, n.campaigns, n.quick = id, 0, true
	n.campaignAt = now.Add(n.campaignDelay())
	return n.afterInput(now)
}

// campaignDelay staggers the followers of a leader that is gone, so they
// rarely split the vote: each waits its rank among the surviving nodes (by
// name, the same order everywhere) times half a heartbeat, plus up to a
// quarter heartbeat at random. A campaign that did not produce a leader is
// tried again a few times, before raft's election timeout takes over, with
// the stagger doubled each time: on links whose round trip is longer than
// half a heartbeat the first stagger is too short to let one candidate's
// requests arrive before the next one starts, and repeating it split the
// vote four times in a row in the chaos grow-shrink scenario at 50 ms each
// way.
func (n *Node) campaignDelay() time.Duration {
	c := n.conf()
	if !c.rankValid || c.rankGone != n.goneLeader {
		c.rank, c.rankGone, c.rankValid = 0, n.goneLeader, true
		for _, m := range n.Members() {
			if !m.Learner && !m.Witness && m.ID != n.goneLeader && m.ID != n.cfg.ID && m.Name < n.cfg.Name {
				c.rank++
			}
		}
		if len(n.confState.GetVotersOutgoing()) > 0 && !slices.Contains(n.confState.GetVoters(), n.cfg.ID) {
			// A change is removing us: the members that stay go first
			// (a leader being removed must hand leadership over, which
			// costs a round trip when it has just been elected).
			c.rank += len(n.confState.GetVoters())
		}
	}
	rank := c.rank
	stagger := n.cfg.Tick / 2 << min(n.campaigns, 3)
	return time.Duration(rank)*stagger + time.Duration(n.rand.Int64N(int64(stagger/2)+1))
}

// campaignIfLeaderSilent runs when the campaign timer fires: one election
// timeout (plus our rank's stagger) after we last heard the leader, or soon
// after it was taken as gone. Raft alone would wait a random 1-2 election
// timeouts; campaigning as soon as our promise to the old leader has run
// out is as safe (its lease counted on that promise, no longer) and,
// staggered by rank, rarely splits the vote. Peers still bound by their own
// promises refuse the pre-vote, and we try again a few times.
func (n *Node) campaignIfLeaderSilent(now time.Time) {
	st := n.rn.BasicStatus()
	if st.RaftState == raft.StateLeader || n.campaigns >= maxQuickCampaigns || now.Before(n.tickFrom) || n.isWitness() || !n.isVoter(n.cfg.ID) {
		return
	}
	switch {
	case n.quick && st.Lead == raft.None && st.RaftState == raft.StateCandidate && now.Sub(n.candidateAt) < n.electionTimeout/2:
		// Our pre-vote succeeded and the vote itself is under way: on a
		// slow or lossy link its answers may take a while. Restarting now
		// would abandon a candidacy that may be winning (the simulator
		// found schedules that went on so for seconds); look again later.
		n.campaignAt = n.candidateAt.Add(n.electionTimeout / 2)
		return
	case n.quick && st.Lead == raft.None:
		// Our quick campaign (or the refusal fast path) is under way and
		// no leader has come of it yet: try again.
	case st.RaftState == raft.StateFollower && st.Lead != raft.None && st.Lead == n.goneLeader &&
		now.Sub(n.leaderHeardAt) >= n.electionTimeout:
		// The leader we follow has been silent for all of our promise.
		n.quick = true
	case st.RaftState == raft.StateFollower && st.Lead == raft.None && n.leaderHeardAt.IsZero() &&
		!now.Before(n.guard.voteGuardUntil):
		// Started, heard no leader for an election timeout, and our vote
		// guard is over: a new cluster, or one restarting as a whole.
		n.quick = true
	default:
		return // a leader was heard, or an election we did not start is under way
	}
	if now.Sub(n.candidateSeenAt) < n.electionTimeout/2 {
		// Another node is campaigning: let its election finish rather
		// than split the vote, and look again a little later.
		n.campaignAt = now.Add(n.cfg.Tick + n.campaignDelay())
		return
	}
	n.campaigns++
	if err := n.rn.Campaign(); err != nil {
		n.log.Warn("campaign", "err", err)
	}
	n.campaignAt = now.Add(n.cfg.Tick + n.campaignDelay())
}
