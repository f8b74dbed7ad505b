package election_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/election"
	tc "github.com/raftelect/raftelect/internal/testcluster"
)

// voters lists the voters node i applied, by name.
func voters(c *tc.Cluster, i int) []string {
	var out []string
	for _, m := range c.Nodes[i].Elector.Members() {
		if !m.Learner {
			out = append(out, m.Name)
		}
	}
	return out
}

// Bad requests are refused with errors that say what is wrong, and change
// nothing: a witness with a priority, a member without an address, removing
// or replacing a name that is no member, and removing the leader itself.
func TestMembers_BadRequestsAreRefused(t *testing.T) {
	c, l := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := c.Nodes[l].Elector
	require.ErrorContains(t, e.AddMember(ctx, election.Member{Name: "w", Address: "127.0.0.1:1", Witness: true, Priority: 3}), "witness")
	require.ErrorContains(t, e.AddMember(ctx, election.Member{Name: "x"}), "address")
	require.ErrorIs(t, e.RemoveMember(ctx, "nobody"), election.ErrUnknownPeer)
	require.ErrorIs(t, e.ReplaceMember(ctx, "nobody", election.Member{Name: "y", Address: "127.0.0.1:1"}), election.ErrUnknownPeer)
	err := e.RemoveMember(ctx, c.Nodes[l].Name)
	require.ErrorContains(t, err, "transfer leadership")
	require.Len(t, e.Members(), 3)
	require.False(t, errors.Is(err, election.ErrNotLeader))
	c.StopAll()
	c.Check()
}
