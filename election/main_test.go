package election_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test leaves no goroutine behind: nodes stop everything they start.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
