package transport

import (
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/connectivity"
)

// peerMetrics records drops and forgotten peers.
type peerMetrics struct {
	mu        sync.Mutex
	dropped   map[string]int
	forgotten []string
}

func (m *peerMetrics) Sent(string, raftpb.MessageType)     {}
func (m *peerMetrics) Received(string, raftpb.MessageType) {}
func (m *peerMetrics) SendFailed(string, error)            {}
func (m *peerMetrics) SendLatency(string, time.Duration)   {}
func (m *peerMetrics) Rejected(string)                     {}
func (m *peerMetrics) Dropped(peer string, _ raftpb.MessageType) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dropped == nil {
		m.dropped = map[string]int{}
	}
	m.dropped[peer]++
}
func (m *peerMetrics) ForgetPeer(peer string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgotten = append(m.forgotten, peer)
}
func (m *peerMetrics) get(peer string) (dropped int, forgotten bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dropped[peer], slices.Contains(m.forgotten, peer)
}

// without returns members without the one named name.
func without(members []Peer, name string) []Peer {
	return slices.DeleteFunc(slices.Clone(members), func(p Peer) bool { return p.Name == name })
}

func statNames(tr *Transport) []string {
	var out []string
	for _, s := range tr.Stats() {
		out = append(out, s.Name)
	}
	return out
}

// A member added at runtime is dialled and exchanges raft messages both
// ways, as if it had been in the list at Start: n1 and n2 start as a
// cluster of two, n3 knowing only itself; each is then given all three, n3
// last, after it refused n1 (its hello, when it adds n1, settles n1's
// verdict on it).
func TestSetPeers_AddedMemberExchangesMessages(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, func(i int, o *Options) {
		if i == 2 {
			o.Peers = nil // n3 knows only itself
		} else {
			o.Peers = without(o.Peers, "n3")
		}
	})
	require.Equal(t, []string{"n2"}, statNames(tn.trs[0]))
	require.NoError(t, tn.trs[0].SetPeers(tn.peers))
	require.NoError(t, tn.trs[1].SetPeers(tn.peers))
	require.Equal(t, []string{"n2", "n3"}, statNames(tn.trs[0]))
	// n3 has not added n1 yet: it refuses n1's hello as no member's.
	waitFor(t, 10*time.Second, "n3 to refuse n1", func() bool {
		return strings.Contains(statsOf(tn.trs[0], "n3").ConfigDetail, "refuses this node")
	})
	require.NoError(t, tn.trs[2].SetPeers(tn.peers))
	waitFor(t, 10*time.Second, "n1 and n3 to exchange heartbeats", func() bool {
		tn.trs[0].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 3, 1)})
		tn.trs[2].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeatResp, 3, 1, 1)})
		return tn.recs[2].countFrom(1) > 0 && tn.recs[0].countFrom(3) > 0
	})
	// Hedged heartbeats as at Start: n1 sent n3 heartbeats, so it has a
	// spare connection to it.
	waitFor(t, 10*time.Second, "n1's spare connection to n3", func() bool {
		return tn.trs[0].set().byID[3].spareReady.Load()
	})
	waitFor(t, 10*time.Second, "n3 to get n1's labels", func() bool {
		return statsOf(tn.trs[2], "n1").Labels["api"] == "https://n1.example"
	})
	// The lists agree now, whatever was refused while they did not.
	waitFor(t, 10*time.Second, "n3's view of n1 to agree", func() bool {
		s := statsOf(tn.trs[2], "n1")
		return !s.ConfigUnknown && len(s.ConfigMismatch) == 0
	})
}

// A removed member's lanes stop, what was queued for it is dropped and
// reported as drops, its stats and metrics are forgotten, and nothing more
// is queued for it.
func TestSetPeers_RemovedMemberStoppedAndForgotten(t *testing.T) {
	t.Parallel()
	metrics := &peerMetrics{}
	tn := newTestNet(t, 3, func(i int, o *Options) {
		if i == 0 {
			o.Metrics = metrics
			// The append in flight to n3 must not time out (and take
			// the queue with it) while the test counts the queue.
			o.DataTimeout = time.Minute
		}
	})
	n1 := tn.trs[0]
	waitFor(t, 10*time.Second, "n1 connected to n3", func() bool { return n1.Connected(3) })
	// n3 hangs every inbound RPC: n1's appends to it stay queued.
	tn.hooks[2].BlockIngress(true)
	removed := n1.set().byID[3]
	n1.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 3, 1)})
	waitFor(t, 5*time.Second, "the lane to take the first append", func() bool { return removed.data.len() == 0 })
	// The lane waits for n3's answer to the first: these stay queued.
	for i := range 19 {
		n1.Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 3, uint64(i+2))})
	}
	require.Equal(t, 19, removed.data.len())
	queued := removed.data.len() + removed.control.len()
	require.NoError(t, n1.SetPeers(without(tn.peers, "n3")))

	require.Equal(t, []string{"n2"}, statNames(n1), "stats still name the removed peer")
	require.False(t, n1.Connected(3))
	dropped, forgotten := metrics.get("n3")
	require.Equal(t, queued, dropped, "queued messages to the removed peer not reported dropped")
	require.True(t, forgotten, "the removed peer's metrics were not forgotten")
	require.Equal(t, uint64(queued), removed.drops.Load())
	require.True(t, removed.removed.Load())
	waitFor(t, 5*time.Second, "the removed peer's connection to close", func() bool {
		return removed.conn.GetState() == connectivity.Shutdown
	})
	n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 3, 1)})
	require.Zero(t, removed.control.len(), "a message was queued to a removed peer")
	// n2 is untouched: the same peer. Until the cluster is established
	// (SetEstablished) lists must agree: n1 sends n2 nothing while n2
	// lists n3, and again as soon as n2 has the new list too (n2 tells n1
	// its new list: n1 sends nothing that would let it learn it).
	waitFor(t, 10*time.Second, "n1 to find n2's list different", func() bool {
		n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
		return slices.Contains(statsOf(n1, "n2").ConfigMismatch, MismatchMembership)
	})
	before := tn.recs[1].countFrom(1)
	require.NoError(t, tn.trs[1].SetPeers(without(tn.peers, "n3")))
	waitFor(t, 10*time.Second, "n2 to get n1's heartbeat", func() bool {
		n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 2)})
		return tn.recs[1].countFrom(1) > before
	})
}

// A member whose address changed is dialled again at the new one; one
// whose record did not change keeps its lanes and connection.
func TestSetPeers_ChangedAddressRedialledUnchangedKept(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	n1 := tn.trs[0]
	kept := n1.set().byID[3]
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	require.NoError(t, l.Close())
	moved := slices.Clone(tn.peers)
	moved[1].Addr = dead
	refused := tn.recs[0].refused.Load()
	require.NoError(t, n1.SetPeers(moved))
	require.Same(t, kept, n1.set().byID[3], "an unchanged peer was replaced")
	require.Equal(t, dead, statsOf(n1, "n2").Addr)
	waitFor(t, 10*time.Second, "n2's connection at the dead address to be refused", func() bool {
		n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
		return tn.recs[0].refused.Load() > refused
	})
	before := tn.recs[1].countFrom(1)
	require.NoError(t, n1.SetPeers(tn.peers)) // back where n2 listens
	waitFor(t, 10*time.Second, "n2 to get n1's heartbeat at its address", func() bool {
		n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 2)})
		return tn.recs[1].countFrom(1) > before
	})
	require.Same(t, kept, n1.set().byID[3])
}

// The same set again changes nothing: no new peer, no new stream.
func TestSetPeers_Idempotent(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, nil)
	n1 := tn.trs[0]
	p := n1.set().byID[2]
	waitFor(t, 10*time.Second, "a heartbeat to reach n2", func() bool {
		n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
		return tn.recs[1].countFrom(1) > 0
	})
	streams := p.streams.Load()
	digest := n1.local.Load().digest
	reversed := slices.Clone(tn.peers)
	slices.Reverse(reversed)
	for _, members := range [][]Peer{tn.peers, tn.peers, reversed} {
		require.NoError(t, n1.SetPeers(members))
	}
	require.Same(t, p, n1.set().byID[2])
	require.Equal(t, streams, p.streams.Load())
	require.Equal(t, digest, n1.local.Load().digest)
}

// Invalid lists are refused with an error naming the problem, and change
// nothing.
func TestSetPeers_InvalidListsRefused(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	n1 := tn.trs[0]
	before := n1.set()
	dup := func(f func(p *Peer)) []Peer {
		ps := slices.Clone(tn.peers)
		f(&ps[2])
		return ps
	}
	for _, tc := range []struct {
		name    string
		members []Peer
		want    string
	}{
		{"duplicate ID", dup(func(p *Peer) { p.ID = 2 }), "have the same ID"},
		{"duplicate name", dup(func(p *Peer) { p.Name = "n2" }), `"n2" appears twice`},
		{"empty address", dup(func(p *Peer) { p.Addr = "" }), `"n3" has no address`},
		{"zero ID", dup(func(p *Peer) { p.ID = 0 }), "has ID 0"},
		{"self missing", without(tn.peers, "n1"), "does not name this node (n1"},
		{"self renamed", func() []Peer { ps := slices.Clone(tn.peers); ps[0].Name = "n9"; return ps }(), "a node's name cannot change"},
		{"same identity", dup(func(p *Peer) { p.Identity = "n2" }), "have the same identity"},
		{"own certificate no longer identifies us", func() []Peer { ps := slices.Clone(tn.peers); ps[0].Identity = "other"; return ps }(), "certificate would no longer identify it"},
	} {
		err := n1.SetPeers(tc.members)
		require.Error(t, err, tc.name)
		require.Contains(t, err.Error(), tc.want, tc.name)
		require.Same(t, before, n1.set(), "%s: the set changed", tc.name)
	}
}

// SetPeers races with Send, the lanes and inbound RPCs: -race finds any
// unsynchronized access, goleak (TestMain) any goroutine left behind, and
// the final set works.
func TestSetPeers_ConcurrentWithSendAndInbound(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	n1 := tn.trs[0]
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for term := uint64(1); !stop.Load(); term++ {
				n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, term), msg(raftpb.MsgApp, 1, 3, term)})
				tn.trs[1+i].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeatResp, uint64(2+i), 1, term)})
				_ = n1.Stats()
				_ = n1.Connected(3)
				time.Sleep(time.Millisecond) // pacing only: the senders are not synchronised by it
			}
		}()
	}
	for i := range 40 {
		members := tn.peers
		switch i % 3 {
		case 0:
			members = without(tn.peers, "n3")
		case 1:
			members = without(tn.peers, "n2")
		}
		require.NoError(t, n1.SetPeers(members))
	}
	stop.Store(true)
	wg.Wait()
	require.NoError(t, n1.SetPeers(tn.peers))
	before := tn.recs[2].countFrom(1)
	waitFor(t, 10*time.Second, "n3 to get n1's messages after the churn", func() bool {
		n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 3, 1000)})
		return tn.recs[2].countFrom(1) > before
	})
	require.ElementsMatch(t, []string{"n2", "n3"}, statNames(n1))
	require.False(t, strings.Contains(strings.Join(statNames(n1), ","), "n1"))
}

// A peer's announcement of its new member list can be lost. n1 has removed
// n3 and judged n2's list (which names n3) different, so it sends n2 no raft
// messages; n2 then removes n3 too, but its announcement to n1 hangs until
// it times out. n2 has nothing else to send n1, so n1 must ask: its
// refused sends are replaced by an announcement of its own (at most one
// per control timeout), whose answer carries n2's new list.
func TestSetPeers_LostAnnouncementRecovered(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	n1, n2 := tn.trs[0], tn.trs[1]
	waitFor(t, 10*time.Second, "the hellos to be answered", func() bool {
		return !statsOf(n1, "n2").ConfigUnknown && !statsOf(n2, "n1").ConfigUnknown
	})
	// No raft message goes from n1 to n2 before the end (the answer to one
	// would carry n2's new list): n1 learns n2's old list from the answer
	// to its own announcement.
	require.NoError(t, n1.SetPeers(without(tn.peers, "n3")))
	waitFor(t, 10*time.Second, "n1 to find n2's list different", func() bool {
		return slices.Contains(statsOf(n1, "n2").ConfigMismatch, MismatchMembership)
	})
	tn.hooks[0].BlockFrom("n2", true) // n1 hangs n2's RPCs
	failures := statsOf(n2, "n1").SendErrors
	require.NoError(t, n2.SetPeers(without(tn.peers, "n3")))
	waitFor(t, 10*time.Second, "n2's announcement to n1 to time out", func() bool {
		return statsOf(n2, "n1").SendErrors > failures
	})
	tn.hooks[0].BlockFrom("n2", false)
	before := tn.recs[1].countFrom(1)
	waitFor(t, 10*time.Second, "n2 to get n1's heartbeat", func() bool {
		n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 2)})
		return tn.recs[1].countFrom(1) > before
	})
	require.Empty(t, statsOf(n1, "n2").ConfigMismatch)
}

// memberConns counts the connections the limiter keyed as member name's.
func memberConns(tr *Transport, name string) int {
	l := tr.limiter
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.byAddr {
		if c.identity != nil && c.identity.identity == "member "+name {
			n++
		}
	}
	return n
}

// The connections a removed member made to us are closed, not only ours to
// it: whatever it sends after comes on a new connection, identified (and
// refused) by the new set.
func TestSetPeers_RemovedMembersInboundConnectionsClosed(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	n1 := tn.trs[0]
	waitFor(t, 10*time.Second, "n2's and n3's connections to n1", func() bool {
		return memberConns(n1, "n2") > 0 && memberConns(n1, "n3") > 0
	})
	require.NoError(t, n1.SetPeers(without(tn.peers, "n3")))
	require.Zero(t, memberConns(n1, "n3"), "n3's connections to n1 still open as a member's")
	require.Positive(t, memberConns(n1, "n2"), "n2's connections were closed too")
}
