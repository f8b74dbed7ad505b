//go:build !unix

package eventlog

import "time"

// processStart anchors Now on platforms without CLOCK_MONOTONIC.
var processStart = time.Now()

// Now returns nanoseconds on this process's monotonic clock. Unlike on
// unix, readings of different processes are not comparable, so the checker
// can order the events of nodes in one process only.
func Now() int64 { return int64(time.Since(processStart)) }
