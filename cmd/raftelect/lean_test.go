package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// leanTags are the build tags of the node-only build (make lean;
// docs/operations.md "Building the executable that runs a node").
const leanTags = "lean,grpcnotrace"

// TestLeanBuildLeavesOutChaosBenchAndDemo: the node-only build links no
// chaos, bench or demo code, those commands are unknown to it (usage error,
// exit 2), and what a node and its operator need is still there.
func TestLeanBuildLeavesOutChaosBenchAndDemo(t *testing.T) {
	deps, err := exec.Command("go", "list", "-tags", leanTags, "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -tags %s -deps: %v\n%s", leanTags, err, deps)
	}
	for _, pkg := range strings.Fields(string(deps)) {
		for _, never := range []string{
			"github.com/raftelect/raftelect/chaos",
			"github.com/raftelect/raftelect/checker",
			"golang.org/x/net/trace", // gRPC's, left out by grpcnotrace
		} {
			if pkg == never || strings.HasPrefix(pkg, never+"/") {
				t.Errorf("the lean build links %s", pkg)
			}
		}
	}

	lean := filepath.Join(t.TempDir(), "raftelect-lean")
	if out, err := exec.Command("go", "build", "-tags", leanTags, "-o", lean, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %s: %v\n%s", leanTags, err, out)
	}
	// demo.go is compiled into every build (the tests use its local
	// cluster); only its registration is left out, so the linker must find
	// none of its code reachable.
	syms, err := exec.Command("go", "tool", "nm", lean).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool nm: %v\n%s", err, syms)
	}
	for _, line := range strings.Split(string(syms), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		switch name := f[len(f)-1]; {
		case name == "main.newDemoCmd", strings.HasPrefix(name, "main.(*demo)."),
			name == "main.newChaosCmd", name == "main.newBenchCmd":
			t.Errorf("the lean executable holds %s", name)
		}
	}

	run := func(args ...string) (string, int) {
		out, err := exec.Command(lean, args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run %v: %v", args, err)
		}
		return string(out), code
	}
	for _, cmd := range []string{"chaos", "bench", "demo"} {
		out, code := run(cmd, "--help")
		if code != exitUsage || !strings.Contains(out, `unknown command "`+cmd+`"`) {
			t.Errorf("lean %s --help: exit %d, want %d and unknown command; output:\n%s", cmd, code, exitUsage, out)
		}
	}
	for _, cmd := range []string{"run", "bootstrap", "status", "transfer", "certs", "exec"} {
		if out, code := run(cmd, "--help"); code != exitOK {
			t.Errorf("lean %s --help: exit %d, want 0; output:\n%s", cmd, code, out)
		}
	}
}
