// Package restarttest holds the tests and benchmarks that run raftelect nodes
// as real processes (internal/testnode), kill them with SIGKILL and restart
// them on the same (or an emptied) data directory, then check every node's
// event log with the checker. It has no code of its own outside tests.
package restarttest
