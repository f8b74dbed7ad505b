package core

import (
	"testing"

	"go.uber.org/goleak"
)

// The core starts no goroutine; goleak checks it stays so.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
