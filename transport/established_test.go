package transport

import (
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
)

// Member lists are compared strictly unless both nodes are established.
// n1 lists n1, n2, n3 and n2 lists n1, n2 (a member n2 has not heard of):
// while neither is established they refuse each other's raft messages and
// each node is told (as before); so while only n1 is. Once both are, the
// difference is what a running membership change looks like: both report
// it (status, metrics, a log line saying raft messages are not refused),
// the nodes are told it no longer differs in the blocking sense, and
// messages flow both ways.
func TestAgreement_EstablishedNodeExchangesDespiteOtherMemberList(t *testing.T) {
	t.Parallel()
	logs := []*lineCounter{{}, {}}
	tn := newTestNet(t, 3, func(i int, o *Options) {
		if i < 2 {
			o.Logger = slog.New(logs[i])
		}
		if i == 1 {
			o.Peers = without(o.Peers, "n3")
		}
	})
	n1, n2 := tn.trs[0], tn.trs[1]
	// Brand new on both sides: refused both ways, as before.
	waitFor(t, 10*time.Second, "n1 and n2 to find each other's lists different", func() bool {
		heartbeatsBothWays(tn, 1)
		return slices.Contains(statsOf(n1, "n2").ConfigMismatch, MismatchMembership) &&
			slices.Contains(statsOf(n2, "n1").ConfigMismatch, MismatchMembership)
	})
	for i, peer := range []uint64{2, 1} {
		differs, ok := tn.recs[i].told(peer)
		require.True(t, ok && differs, "n%d was not told that n%d's list differs", i+1, peer)
	}
	heartbeatsBothWays(tn, 2)
	require.Zero(t, tn.recs[0].countFrom(2), "n1 stepped a brand-new node's messages with another list")
	require.Zero(t, tn.recs[1].countFrom(1), "n2 stepped a brand-new node's messages with another list")

	// One side established is not enough: n2 bootstrapped from its own
	// list, and would count votes over it (chaos peer-lists-5-first).
	n1.SetEstablished(true)
	waitFor(t, 10*time.Second, "n2 to judge n1's established description", func() bool {
		heartbeatsBothWays(tn, 3)
		return strings.Contains(statsOf(n2, "n1").ConfigDetail, "bootstrapped a cluster from its own list")
	})
	heartbeatsBothWays(tn, 4)
	require.Zero(t, tn.recs[0].countFrom(2), "n1 stepped the messages of a node that bootstrapped another list")
	require.Zero(t, tn.recs[1].countFrom(1), "n2 stepped an established node's messages with its own list never part of that cluster")
	differs, _ := tn.recs[1].told(1)
	require.True(t, differs, "n2 must hold elections while an established member's list differs")

	n2.SetEstablished(true)
	waitFor(t, 10*time.Second, "n1 and n2 to exchange heartbeats", func() bool {
		heartbeatsBothWays(tn, 3)
		return tn.recs[0].countFrom(2) > 0 && tn.recs[1].countFrom(1) > 0
	})
	// Still reported, no longer refused or held against elections.
	for i, peer := range []string{"n2", "n1"} {
		waitFor(t, 10*time.Second, "the difference to be reported as allowed", func() bool {
			return strings.Contains(statsOf(tn.trs[i], peer).ConfigDetail, "allowed: the cluster is established")
		})
		s := statsOf(tn.trs[i], peer)
		require.Equal(t, []string{MismatchMembership}, s.ConfigMismatch, "n%d's view of %s", i+1, peer)
		require.Contains(t, s.ConfigDetail, "allowed: the cluster is established")
		differs, _ := tn.recs[i].told(tn.peers[1-i].ID)
		require.False(t, differs, "n%d's node still told that %s's list blocks", i+1, peer)
		lines := logs[i].get(differsLine)
		require.Equal(t, "false", lines[len(lines)-1]["refusing_raft_messages"], "n%d's last report", i+1)
	}
}

// The cluster ID is refused both ways whether or not the nodes are
// established: two established clusters never mix.
func TestAgreement_ClusterIDRefusedEvenWhenEstablished(t *testing.T) {
	t.Parallel()
	ids := []string{"cluster-a", "cluster-b"}
	tn := newTestNet(t, 2, func(i int, o *Options) {
		o.ClusterID = func() string { return ids[i] }
		o.Established = true
	})
	waitFor(t, 10*time.Second, "n1 and n2 to judge each other", func() bool {
		heartbeatsBothWays(tn, 1)
		return slices.Contains(statsOf(tn.trs[0], "n2").ConfigMismatch, MismatchClusterID) &&
			slices.Contains(statsOf(tn.trs[1], "n1").ConfigMismatch, MismatchClusterID)
	})
	heartbeatsBothWays(tn, 2)
	require.Zero(t, tn.recs[0].count(raftpb.MsgHeartbeat))
	require.Zero(t, tn.recs[1].count(raftpb.MsgHeartbeat))
	require.Positive(t, tn.trs[0].set().byName["n2"].refusedOut.Load(), "n1 kept sending raft messages to n2")
}
