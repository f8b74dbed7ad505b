//go:build linux

package chaos

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/config"
)

// fakeCluster is a cluster's configs and certificates, without a network
// or processes.
func fakeCluster(t *testing.T, cc clusterConfig) *cluster {
	t.Helper()
	c := &cluster{cfg: cc, tlsDir: filepath.Join(cc.dir, "tls")}
	ca, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cc.nodes {
		p := &proc{index: i, name: nodeName(i), ip: netip.AddrFrom4([4]byte{10, 9, 9, byte(i + 1)}),
			config: filepath.Join(cc.dir, nodeName(i)+".yaml"), events: filepath.Join(cc.dir, nodeName(i)+".events.jsonl")}
		if i < len(cc.nodeConfig) {
			p.conf = cc.nodeConfig[i]
		}
		if _, err := ca.WriteNode(c.tlsDir, p.name, []string{p.ip.String()}, time.Hour); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, p)
	}
	return c
}

// loadConfig writes node i's config file and loads it as `raftelect run`
// would.
func loadConfig(t *testing.T, c *cluster, i int) *config.Node {
	t.Helper()
	if err := c.writeConfig(c.nodes[i]); err != nil {
		t.Fatal(err)
	}
	n, err := config.Load(c.nodes[i].config, config.LoadOptions{})
	if err != nil {
		t.Fatalf("%s's config does not load: %v", c.nodes[i].name, err)
	}
	return n
}

// TestEveryNodeListsTheSamePeers: unless a scenario changes a peer list,
// every node's file lists the same members at the same addresses, with or
// without latency proxies; nodes compare their lists, addresses included,
// and refuse peers whose list differs.
func TestEveryNodeListsTheSamePeers(t *testing.T) {
	for _, proxy := range []bool{false, true} {
		c := fakeCluster(t, clusterConfig{nodes: 3, dir: t.TempDir(), heartbeat: 100 * time.Millisecond, electionTimeout: time.Second, proxy: proxy})
		var first string
		for i := range c.nodes {
			n := loadConfig(t, c, i)
			list := fmt.Sprintf("%+v", n.Peers)
			if i == 0 {
				first = list
				continue
			}
			if list != first {
				t.Errorf("proxy=%v: %s lists %s, n1 lists %s", proxy, n.Name, list, first)
			}
		}
	}
}

// TestNodeConfigFilesCarryEachNodesOverrides: the file a node starts from
// lists exactly the peers its scenario gives it, with its own timings and
// keepalive, is valid for `raftelect run`, and a reconfigure before a
// restart changes only what it names, keeping earlier overrides.
func TestNodeConfigFilesCarryEachNodesOverrides(t *testing.T) {
	dir := t.TempDir()
	s, err := ParseScenario([]byte(`name: x
nodes: 5
duration: 10s
config: {election_timeout: 5s}
node_config:
  n1: {peers: [n1, n2, n3], keepalive_time: 20s, fast_failover_on_refusal: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := s.nodeConfigs(5)
	if err != nil {
		t.Fatal(err)
	}
	c := fakeCluster(t, clusterConfig{nodes: 5, dir: dir, heartbeat: 100 * time.Millisecond, electionTimeout: time.Second, nodeConfig: nc})
	load := func(i int) *config.Node { return loadConfig(t, c, i) }
	peers := func(n *config.Node) []string {
		var out []string
		for _, p := range n.Peers {
			out = append(out, p.Name)
		}
		return out
	}

	n1 := load(0)
	if got := peers(n1); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Errorf("n1 lists %v, want [n1 n2 n3]", got)
	}
	if n1.ElectionTimeout.D() != 5*time.Second || n1.HeartbeatInterval.D() != 100*time.Millisecond || n1.Transport.KeepaliveTime.D() != 20*time.Second || !n1.FastFailoverOnRefusal {
		t.Errorf("n1: election timeout %v, heartbeat %v, keepalive %v, fast failover %v; want 5s, 100ms, 20s, true", n1.ElectionTimeout, n1.HeartbeatInterval, n1.Transport.KeepaliveTime, n1.FastFailoverOnRefusal)
	}
	n4 := load(3)
	if got := peers(n4); len(got) != 5 || n4.FastFailoverOnRefusal {
		t.Errorf("n4 lists %v, fast failover %v; want all 5, false", got, n4.FastFailoverOnRefusal)
	}

	if err := c.reconfigure(0, NodeConfig{ElectionTimeout: config.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	n1, err = config.Load(c.nodes[0].config, config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := peers(n1); n1.ElectionTimeout.D() != time.Second || !slices.Equal(got, []string{"n1", "n2", "n3"}) || n1.Transport.KeepaliveTime.D() != 20*time.Second {
		t.Errorf("after reconfigure n1 has election timeout %v, peers %v, keepalive %v; want 1s, [n1 n2 n3], 20s", n1.ElectionTimeout, got, n1.Transport.KeepaliveTime)
	}
	if c.electionTimeout(0) != time.Second || c.electionTimeout(3) != 5*time.Second {
		t.Errorf("electionTimeout: n1 %v, n4 %v; want 1s, 5s", c.electionTimeout(0), c.electionTimeout(3))
	}
}

// TestScenarioNodeNamesMustExist: a peer list, node_config or start that
// names a node the cluster lacks, or a peer list without the node itself,
// is an error before anything starts.
func TestScenarioNodeNamesMustExist(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"node_config: {n4: {election_timeout: 1s}}", `no node "n4"`},
		{"start: [n1, n9]", `no node "n9"`},
		{"node_config: {n1: {peers: [n2, n3]}}", "leave out n1 itself"},
		{"node_config: {n1: {peers: [n1, n7]}}", `name "n7"`},
		{"node_config: {n1: {peers: [n1, x]}}", `name "x"`},
	} {
		s, err := ParseScenario([]byte(fmt.Sprintf("name: x\nduration: 10s\n%s\n", tc.yaml)))
		if err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		if _, err := s.nodeConfigs(3); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error mentioning %s", tc.yaml, err, tc.want)
		}
	}
}
