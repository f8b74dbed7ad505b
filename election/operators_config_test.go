package election_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/election"
)

// Operators must be named, unique and no member's identity (else a
// member's certificate would double as a tool's, or the reverse);
// connection limits must not lock members out.
func TestConfig_OperatorsAndConnectionLimitsValidated(t *testing.T) {
	ok := validConfig()
	ok.Operators = []string{"ops", "ops.example"}
	ok.ConnectionLimits = election.ConnectionLimits{MaxConns: 100, MaxConnsPerIdentity: 2, HandshakeTimeout: time.Second}
	require.NoError(t, ok.Validate())
	for _, tt := range []struct {
		name   string
		change func(*election.Config)
		want   string
	}{
		{"empty operator", func(c *election.Config) { c.Operators = []string{""} }, "operators[0]: empty"},
		{"operator twice", func(c *election.Config) { c.Operators = []string{"ops", "ops"} }, `operators[1]: "ops" appears twice`},
		{"operator is a member", func(c *election.Config) { c.Operators = []string{"b"} }, `operators[0]: "b" is the identity of member b`},
		{"operator is a member's identity", func(c *election.Config) {
			c.Peers[1].Identity = "b.example"
			c.Operators = []string{"b.example"}
		}, `"b.example" is the identity of member b`},
		{"negative cap", func(c *election.Config) { c.ConnectionLimits.MaxConnsPerSource = -1 }, "max connections per source -1 must be positive"},
		{"one connection per identity", func(c *election.Config) { c.ConnectionLimits.MaxConnsPerIdentity = 1 }, "max connections per identity 1 would refuse"},
		{"handshake timeout too short", func(c *election.Config) { c.ConnectionLimits.HandshakeTimeout = time.Millisecond }, "below 100ms"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}
