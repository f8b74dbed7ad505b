package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestVersionFlagPrintsTheBuildVersion: --version prints the version set
// with -X main.version (the image's tag is derived from it) and exits 0.
func TestVersionFlagPrintsTheBuildVersion(t *testing.T) {
	old := version
	defer func() { version = old }()
	version = "v9.8.7-test"
	var out, errb bytes.Buffer
	if code := execute([]string{"--version"}, &out, &errb); code != exitOK {
		t.Fatalf("--version exited %d: %s", code, errb.String())
	}
	if got := strings.TrimSpace(out.String()); got != "raftelect version v9.8.7-test" {
		t.Errorf("--version printed %q", got)
	}
}
