package election

import (
	"testing"

	"github.com/raftelect/raftelect/transport"
)

// The kinds Status reports are the transport's, which fills them in.
func TestMismatchKinds_AreTheTransports(t *testing.T) {
	got := []string{MismatchClusterID, MismatchMembership, MismatchTimings}
	if len(got) != len(transport.MismatchKinds) {
		t.Fatalf("election has %d kinds, transport %d: %v", len(got), len(transport.MismatchKinds), transport.MismatchKinds)
	}
	for i, k := range transport.MismatchKinds {
		if got[i] != k {
			t.Errorf("kind %d: election %q, transport %q", i, got[i], k)
		}
	}
}
