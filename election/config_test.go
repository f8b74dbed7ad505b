package election_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/election"
)

func validConfig() election.Config {
	return election.Config{
		Name: "a",
		Peers: []election.PeerConfig{
			{Name: "a", Address: "10.0.0.1:7000"},
			{Name: "b", Address: "10.0.0.2:7000"},
			{Name: "c", Address: "10.0.0.3:7000"},
		},
		TLS: election.TLSConfig{CAFile: "ca.crt", CertFile: "a.crt", KeyFile: "a.key"},
	}
}

func TestConfig_ValidationNamesEachProblem(t *testing.T) {
	require.NoError(t, validConfig().Validate())
	for _, tt := range []struct {
		name   string
		change func(*election.Config)
		want   string
	}{
		{"no name", func(c *election.Config) { c.Name = "" }, "name: empty"},
		{"not among peers", func(c *election.Config) { c.Name = "z" }, `this node "z" is not among the peers`},
		{"no peers", func(c *election.Config) { c.Peers = nil }, "peers: empty"},
		{"duplicate name", func(c *election.Config) { c.Peers[2].Name = "b" }, `name "b" appears twice`},
		{"duplicate address", func(c *election.Config) { c.Peers[2].Address = "10.0.0.2:7000" }, "is also the address of b"},
		{"empty peer name", func(c *election.Config) { c.Peers[1].Name = "" }, "peers[1]: name is empty"},
		{"bad address", func(c *election.Config) { c.Peers[1].Address = "nohost" }, `"nohost" is not host:port`},
		{"empty address", func(c *election.Config) { c.Peers[1].Address = "" }, "address is empty"},
		{"election timeout too short", func(c *election.Config) {
			c.HeartbeatInterval, c.ElectionTimeout = 100*time.Millisecond, 150*time.Millisecond
		}, "election timeout 150ms must be more than twice the heartbeat interval 100ms"},
		{"heartbeat too fast", func(c *election.Config) { c.HeartbeatInterval = time.Millisecond }, "below 10ms"},
		{"negative heartbeat", func(c *election.Config) { c.HeartbeatInterval = -time.Second }, "must be positive"},
		{"drift margin", func(c *election.Config) { c.LeaseDriftMargin = 0.9 }, "lease drift margin 0.9"},
		{"no TLS", func(c *election.Config) { c.TLS = election.TLSConfig{} }, "tls: CA, certificate and key files are all required"},
		{"huge label", func(c *election.Config) { c.Labels = map[string]string{"k": string(make([]byte, 2000))} }, "values at most 1024 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
			_, err = election.New(c)
			require.ErrorContains(t, err, tt.want, "New must refuse what Validate refuses")
		})
	}
	c := validConfig()
	c.TLS = election.TLSConfig{}
	c.Insecure = true
	require.NoError(t, c.Validate(), "Insecure is the explicit switch for no TLS")
}

func TestConfig_ReportsAllProblemsAtOnce(t *testing.T) {
	c := validConfig()
	c.Name = ""
	c.Peers[1].Address = "bad"
	c.TLS = election.TLSConfig{}
	err := c.Validate()
	require.ErrorContains(t, err, "name: empty")
	require.ErrorContains(t, err, "is not host:port")
	require.ErrorContains(t, err, "tls:")
}

// Raft IDs derive from names and must never change between versions: a
// node's persisted state and its peers' progress are keyed by them.
func TestNodeID_IsStable(t *testing.T) {
	require.Equal(t, uint64(0x08b37b07b558d4c0), election.NodeID("n1"), "64-bit FNV-1a of \"n1\", computed independently")
	require.Equal(t, uint64(0xcbf29ce484222325), election.NodeID(""), "FNV-1a offset basis")
	require.NotEqual(t, election.NodeID("n1"), election.NodeID("n2"))
}

// Leader work that fails while the lease holds is started again after a
// backoff; labels reach every peer's Status.
func TestLeaderWork_RestartedOnErrorWhileLeading_AndLabelsReachPeers(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 3)
	c.StopAll()
	var runs atomic.Int32
	for i := range c.Nodes {
		cfg := c.Config(i)
		cfg.Labels = map[string]string{"api": "https://" + cfg.Name + ".example"}
		c.SetConfig(i, cfg)
		c.StartNode(i, func(e *election.Elector) {
			e.RunWhileLeader(func(ctx context.Context, _ election.Lease) error {
				if runs.Add(1) <= 2 {
					return errors.New("transient failure")
				}
				<-ctx.Done()
				return nil
			})
		})
	}
	_ = l
	l = c.WaitLeader(10 * time.Second)
	c.WaitFor(5*time.Second, "leader work to be restarted twice", func() bool { return runs.Load() >= 3 })
	c.WaitFor(5*time.Second, "labels of every peer in every node's status", func() bool {
		for _, n := range c.Nodes {
			for _, p := range n.Elector.Status().Peers {
				if p.Labels["api"] != "https://"+p.Name+".example" {
					return false
				}
			}
		}
		return true
	})
	require.Equal(t, l, c.Leader())
	c.StopAll()
}

func TestConfig_IdentitiesMustTellNodesApart(t *testing.T) {
	c := validConfig()
	c.Peers[1].Identity = "a" // node a's name, and so its default identity
	require.ErrorContains(t, c.Validate(), `identity "a" is also the identity of a`)
	c = validConfig()
	c.Peers[1].Identity, c.Peers[2].Identity = "x.example", "x.example"
	require.ErrorContains(t, c.Validate(), `identity "x.example" is also the identity of b`)
	c = validConfig()
	c.Peers[1].Identity = "b.eu-west.example"
	require.NoError(t, c.Validate())
}
