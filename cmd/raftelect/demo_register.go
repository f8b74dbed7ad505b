//go:build unix && !lean

package main

// demo registers here, not in demo.go, so that the lean build (make lean)
// leaves the command out while the tests keep demo.go's local cluster
// (writeLocalCluster): nothing in a lean executable calls newDemoCmd, so
// the linker drops the demo's code.
func init() { addCommand(newDemoCmd) }
