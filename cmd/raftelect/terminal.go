package main

import (
	"io"
	"os"
	"strings"
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

// paintScreen returns what redraws a terminal with lines: home, each line
// cut to the width and cleared to its end, then the rest of the screen
// cleared. No newline after the last line, so a full screen never scrolls.
func paintScreen(lines []string, cols int) string {
	var sb strings.Builder
	sb.WriteString("\x1b[H")
	for i, line := range lines {
		sb.WriteString(cut(line, cols) + "\x1b[K")
		if i < len(lines)-1 {
			sb.WriteString("\n")
		}
	}
	sb.WriteString("\x1b[J")
	return sb.String()
}

// cut shortens s to at most width runes, marking a cut with "…".
func cut(s string, width int) string {
	r := []rune(s)
	if len(r) <= width {
		return s
	}
	if width < 1 {
		return ""
	}
	return string(r[:width-1]) + "…"
}
