package election_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/checker"
	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/eventlog"
	tc "github.com/raftelect/raftelect/internal/testcluster"
	"github.com/raftelect/raftelect/storage"
	"github.com/raftelect/raftelect/transport"
)

// differsLines counts, per node and peer, the log lines that report a peer's
// configuration as different.
type differsLines struct {
	mu    sync.Mutex
	count map[string]int // "node->peer"
}

func (d *differsLines) logger(node string) *slog.Logger {
	return slog.New(&differsHandler{d: d, node: node})
}

func (d *differsLines) get() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for k, v := range d.count {
		out[k] = v
	}
	return out
}

type differsHandler struct {
	d    *differsLines
	node string
}

func (h *differsHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *differsHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *differsHandler) WithGroup(string) slog.Handler            { return h }
func (h *differsHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "peer's configuration differs from this node's" {
		return nil
	}
	peer := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "peer" {
			peer = a.Value.String()
		}
		return true
	})
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	if h.d.count == nil {
		h.d.count = map[string]int{}
	}
	h.d.count[h.node+"->"+peer]++
	return nil
}

// sentCounter is an election.Metrics that counts the messages a node sent.
type sentCounter struct{ n atomic.Int64 }

func (s *sentCounter) Sent(string, string)               { s.n.Add(1) }
func (s *sentCounter) Received(string, string)           {}
func (s *sentCounter) Dropped(string, string)            {}
func (s *sentCounter) SendFailed(string, error)          {}
func (s *sentCounter) SendLatency(string, time.Duration) {}
func (s *sentCounter) Rejected(string)                   {}

func peerStatus(e *election.Elector, peer string) election.PeerStatus {
	for _, p := range e.Status().Peers {
		if p.Name == peer {
			return p
		}
	}
	return election.PeerStatus{}
}

// A rolling change of election_timeout (5 s on n1, 1 s on the others) is
// allowed: the cluster elects a leader, and each node reports the
// difference once per peer that differs, however many messages cross.
func TestDifferentTimings_ReportedOncePerPeerAndClusterStillElects(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 3)
	t.Cleanup(c.DumpEvents)
	lines := &differsLines{}
	sent := map[string]*sentCounter{}
	for i := range c.Nodes {
		cfg := c.Config(i)
		if cfg.Name == "n1" {
			cfg.ElectionTimeout = 5 * time.Second
		}
		cfg.Logger = lines.logger(cfg.Name)
		sent[cfg.Name] = &sentCounter{}
		cfg.Metrics = sent[cfg.Name]
		c.SetConfig(i, cfg)
	}
	c.Start()
	l := c.WaitLeader(20 * time.Second)
	leader := c.Nodes[l].Name

	want := map[string]int{"n1->n2": 1, "n1->n3": 1, "n2->n1": 1, "n3->n1": 1}
	c.WaitFor(10*time.Second, "every difference to be reported", func() bool {
		got := lines.get()
		for k := range want {
			if got[k] == 0 {
				return false
			}
		}
		return true
	})
	// Let plenty of messages cross after the reports: a report per message
	// (or per heartbeat) would show now.
	base := sent[leader].n.Load()
	c.WaitFor(20*time.Second, "100 more messages from the leader", func() bool { return sent[leader].n.Load() >= base+100 })
	require.Equal(t, want, lines.get())
	require.Equal(t, []string{transport.MismatchTimings}, peerStatus(c.Nodes[0].Elector, "n2").ConfigMismatch)
	require.Contains(t, peerStatus(c.Nodes[1].Elector, "n1").ConfigDetail, "election timeout 1s here, 5s on n1")
	require.Empty(t, peerStatus(c.Nodes[1].Elector, "n3").ConfigMismatch)
	t.Logf("leader %s; reports %v", leader, lines.get())
	c.StopAll()
	c.Check()
}

// membershipSplit starts an n-node test cluster in which node i lists the
// members lists[i] (indexes; all n if absent). The nodes of first start
// before the others (and elect a leader among them first, if firstElects).
// It then watches for an observation window and checks that no leader was
// elected or followed by a node whose member list differs from the
// leader's, that leases never overlapped (the checker), and that every node
// reports every member it lists whose list differs.
func membershipSplit(t *testing.T, n int, lists map[int][]int, first []int, firstElects bool) {
	c := tc.New(t, n)
	t.Cleanup(c.DumpEvents)
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	listOf := func(i int) []int {
		if l, ok := lists[i]; ok {
			return l
		}
		return all
	}
	key := map[string]string{} // node name -> its list, as text
	for i := range c.Nodes {
		cfg := c.Config(i)
		var peers []election.PeerConfig
		var names []string
		for _, j := range listOf(i) {
			peers = append(peers, cfg.Peers[j])
			names = append(names, cfg.Peers[j].Name)
		}
		cfg.Peers = peers
		key[cfg.Name] = strings.Join(names, ",")
		c.SetConfig(i, cfg)
	}
	var second []int
	for i := range c.Nodes {
		if !slices.Contains(first, i) {
			second = append(second, i)
		}
	}
	anyLeader := func(among []int) bool {
		for _, i := range among {
			if c.Nodes[i].Elector.IsLeader() {
				return true
			}
		}
		return false
	}
	for _, i := range first {
		c.StartNode(i, nil)
	}
	if firstElects {
		c.WaitFor(20*time.Second, "a leader in the first group", func() bool { return anyLeader(first) })
	}
	for _, i := range second {
		c.StartNode(i, nil)
	}
	c.WaitFor(20*time.Second, "a leader", func() bool { return anyLeader(all) })
	// differing: every (node, member it lists) whose lists differ.
	var differing [][2]int
	for a := range c.Nodes {
		for _, b := range listOf(a) {
			if a != b && key[c.Nodes[a].Name] != key[c.Nodes[b].Name] {
				differing = append(differing, [2]int{a, b})
			}
		}
	}
	unreported := func() (out []string) {
		for _, d := range differing {
			if !slices.Contains(peerStatus(c.Nodes[d[0]].Elector, c.Nodes[d[1]].Name).ConfigMismatch, transport.MismatchMembership) {
				out = append(out, c.Nodes[d[0]].Name+" about "+c.Nodes[d[1]].Name)
			}
		}
		return out
	}
	for limit := time.Now().Add(20 * time.Second); len(unreported()) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(limit) {
			t.Fatalf("differences not reported after 20s: %v", unreported())
		}
	}
	// The observation window: a second group that could elect would do so
	// within its vote guard (2 election timeouts for a fresh node) plus an
	// election or two. c.Leader fails the test at once on two lease holders.
	deadline := time.Now().Add(5 * tc.ElectionTimeout)
	for time.Now().Before(deadline) {
		c.Leader()
		time.Sleep(20 * time.Millisecond)
	}
	// The leader there is keeps leading: holding elections costs it no
	// leadership (on a loaded machine its lease may lapse for a moment
	// between two acknowledgements, hence the poll).
	c.WaitFor(10*time.Second, "a lease holder after the window", func() bool { return c.Leader() >= 0 })
	for _, d := range differing {
		a, b := c.Nodes[d[0]], c.Nodes[d[1]]
		detail := peerStatus(a.Elector, b.Name).ConfigDetail
		if !slices.Contains(listOf(d[1]), d[0]) {
			require.Contains(t, detail, "refuses this node ("+a.Name+") as no member", "%s about %s", a.Name, b.Name)
			continue
		}
		for _, j := range all {
			if slices.Contains(listOf(d[0]), j) != slices.Contains(listOf(d[1]), j) {
				require.Contains(t, detail, c.Nodes[j].Name, "%s's report on %s does not name %s", a.Name, b.Name, c.Nodes[j].Name)
			}
		}
	}
	c.StopAll()
	c.Check()
	for _, v := range helpedBy(c.Events(), key) {
		t.Error(v)
	}
}

// helpedBy lists every leader that a node whose member list differs from
// the leader's helped: with its vote, or by following it (a follower's
// acknowledgements are what the leader's lease is built on).
func helpedBy(events []eventlog.Event, lists map[string]string) []string {
	type key struct {
		node string
		term uint64
	}
	leaders := map[key]bool{}
	for _, e := range events {
		if e.Kind == eventlog.KindState && e.Role == "leader" {
			leaders[key{e.Node, e.Term}] = true
		}
	}
	var out []string
	seen := map[string]bool{}
	add := func(v string) {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	for _, e := range events {
		if e.Vote != "" && e.Vote != e.Node && leaders[key{e.Vote, e.Term}] && lists[e.Vote] != lists[e.Node] {
			add(fmt.Sprintf("%s (peers %s) became leader of term %d with the vote of %s (peers %s)", e.Vote, lists[e.Vote], e.Term, e.Node, lists[e.Node]))
		}
		if e.Kind == eventlog.KindState && e.Leader != "" && e.Leader != e.Node && lists[e.Leader] != lists[e.Node] {
			add(fmt.Sprintf("%s (peers %s) followed %s (peers %s) in term %d", e.Node, lists[e.Node], e.Leader, lists[e.Leader], e.Term))
		}
	}
	return out
}

// Peer lists that differ ({n1,n2,n3} on some nodes, {n1..n5} on others)
// never give a leader elected with the help of a node that disagrees on
// membership (its vote, or its acknowledgements as a follower), nor two
// lease holders, whichever group starts first; and the
// difference is reported. Two splits: the short list on n1..n3 (n4 and n5
// are no members to them), and on n1, n2 only, where each group holds a
// majority of its own list and only the election hold keeps one of them
// from electing.
func TestDifferentMembership_NoLeaderElectedWithHelpOfADisagreeingNode(t *testing.T) {
	t.Parallel()
	short, long := []int{0, 1, 2}, []int{0, 1, 2, 3, 4}
	for _, tt := range []struct {
		name        string
		n           int
		lists       map[int][]int
		first       []int
		firstElects bool
	}{
		{"n1-n3 short, short first", 5, map[int][]int{0: short, 1: short, 2: short}, []int{0, 1, 2}, true},
		{"n1-n3 short, long first", 5, map[int][]int{0: short, 1: short, 2: short}, []int{3, 4}, false},
		{"n1-n2 short, short first", 5, map[int][]int{0: short, 1: short, 2: long}, []int{0, 1}, true},
		{"n1-n2 short, long first", 5, map[int][]int{0: short, 1: short, 2: long}, []int{2, 3, 4}, true},
		// n4..n7 list {n3..n7}; n3 does not list them, so it refuses them
		// as non-members and never compares lists with them.
		{"n3 common, not listing the others", 7, map[int][]int{0: short, 1: short, 2: short, 3: {2, 3, 4, 5, 6}, 4: {2, 3, 4, 5, 6}, 5: {2, 3, 4, 5, 6}, 6: {2, 3, 4, 5, 6}}, []int{0, 1, 2}, true},
	} {
		t.Run(tt.name, func(t *testing.T) { membershipSplit(t, tt.n, tt.lists, tt.first, tt.firstElects) })
	}
}

// A node started with another cluster's data directory (its store names
// another cluster ID) is refused both ways: it never follows this cluster's
// leader nor takes part in its elections, the leader keeps its lease, and
// both sides report the two cluster IDs.
func TestOtherClusterID_RefusedBothWaysAndReported(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 3)
	t.Cleanup(c.DumpEvents)
	c.Start()
	l := c.WaitLeader(20 * time.Second)
	leader := c.Nodes[l].Name
	c.WaitFor(10*time.Second, "every node to know the cluster ID", func() bool {
		for _, n := range c.Nodes {
			if n.Elector.Status().ClusterID == "" {
				return false
			}
		}
		return true
	})
	id := c.Nodes[l].Elector.Status().ClusterID
	other := (l + 1) % 3
	name := c.Nodes[other].Name
	c.StopNode(other)
	st := storage.NewMemory()
	require.NoError(t, st.SetIdentity(storage.Identity{Node: name, ClusterID: "another-cluster"}))
	cfg := c.Config(other)
	cfg.Storage = st
	c.SetConfig(other, cfg)
	since := eventlog.Now()
	c.StartNode(other, nil)

	c.WaitFor(10*time.Second, "both sides to see the other cluster ID", func() bool {
		return slices.Contains(peerStatus(c.Nodes[l].Elector, name).ConfigMismatch, transport.MismatchClusterID) &&
			slices.Contains(peerStatus(c.Nodes[other].Elector, leader).ConfigMismatch, transport.MismatchClusterID)
	})
	require.Contains(t, peerStatus(c.Nodes[l].Elector, name).ConfigDetail,
		fmt.Sprintf("%s belongs to cluster %q, this node (%s) to cluster %q", name, "another-cluster", leader, id))
	// The observation window: past the restarted node's vote guard (two
	// election timeouts without state) and a campaign or two of its own.
	deadline := time.Now().Add(4 * tc.ElectionTimeout)
	for time.Now().Before(deadline) {
		require.Equal(t, l, c.Leader(), "the leader lost its lease")
		time.Sleep(20 * time.Millisecond)
	}
	c.StopAll()
	// After its restart the node has another cluster's history (its term
	// starts again from that store's): check it apart from this cluster's.
	var ours []eventlog.Event
	for _, e := range c.Events() {
		switch {
		case e.Node != name || e.Mono < since:
			ours = append(ours, e)
		case e.Leader != "" || e.Role == "leader":
			t.Errorf("%s (another cluster) took part: %+v", name, e)
		}
	}
	if r := checker.Check(ours, checker.Options{}); !r.OK() {
		t.Errorf("checker found violations:\n%s", r.Summary())
	}
}
