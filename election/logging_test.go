package election_test

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/election"
	tc "github.com/raftelect/raftelect/internal/testcluster"
)

// TestRaftLogLinesNameNodesNotIDs: raft's own log lines (debug level) name
// members by name, as every other line does, never by raft ID in hex.
func TestRaftLogLinesNameNodesNotIDs(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 3)
	logs := make([]logRecorder, 3)
	for i := range c.Nodes {
		logs[i] = newLogRecorder()
		cfg := c.Config(i)
		cfg.Logger = slog.New(logs[i])
		c.SetConfig(i, cfg)
	}
	c.Start()
	l := c.WaitLeader(10 * time.Second)
	c.StopAll()
	became := logs[l].matching("became leader at term")
	require.NotEmpty(t, became, "raft's line for the election")
	require.True(t, strings.HasPrefix(became[0], c.Nodes[l].Name+" became leader"), "%q", became[0])
	for i := range c.Nodes {
		for _, n := range c.Nodes {
			hex := strconv.FormatUint(election.NodeID(n.Name), 16)
			require.Empty(t, logs[i].matching(hex), "%s's log names %s by its raft ID %s", c.Nodes[i].Name, n.Name, hex)
		}
	}
}
