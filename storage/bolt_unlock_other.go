//go:build !unix

package storage

import "os"

// unlockFile is a no-op where bbolt does not lock with flock.
func unlockFile(*os.File) error { return nil }
