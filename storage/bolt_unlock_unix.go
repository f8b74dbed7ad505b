//go:build unix

package storage

import (
	"os"
	"syscall"
)

// unlockFile drops the flock bbolt took on f.
func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
