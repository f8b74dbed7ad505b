//go:build !unix

package main

// runExecHelper: exec and its helper processes exist only on Unix.
func runExecHelper([]string) (int, bool) { return 0, false }
