//go:build unix

package eventlog

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Now returns the CLOCK_MONOTONIC reading in nanoseconds: one clock for
// every process on the machine, so the checker can order events of
// several nodes' logs.
func Now() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err)) // cannot fail on Linux
	}
	return ts.Nano()
}
