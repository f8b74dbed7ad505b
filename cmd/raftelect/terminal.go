package main

import (
	"io"
	"os"
)

// isTerminal tells whether w is a terminal that can take cursor movement
// (demo's live table, status --watch). It lives apart from demo.go so that
// the lean build, which leaves demo out, keeps status --watch.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}
