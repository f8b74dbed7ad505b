//go:build !lean

package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftelect/raftelect/chaos"
	"github.com/raftelect/raftelect/chaos/netns"
)

// TestBenchQuickProducesSaneJSON runs `raftelect bench --quick` for real
// (root, network namespaces) and checks that it completes and that its
// outputs hold every figure. Timings are not asserted: they are
// benchmarks (docs/benchmarks.md), not pass/fail criteria.
func TestBenchQuickProducesSaneJSON(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("%v", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "bench", "--quick", "--dir", dir).CombinedOutput()
	t.Logf("raftelect bench --quick:\n%s", out)
	if err != nil {
		t.Fatalf("raftelect bench --quick: %v", err)
	}
	if !strings.Contains(string(out), "targets (docs/benchmarks.md") {
		t.Errorf("no table of targets on the screen")
	}
	b, err := os.ReadFile(filepath.Join(dir, chaos.BenchResultFile))
	if err != nil {
		t.Fatal(err)
	}
	var r chaos.BenchResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", chaos.BenchResultFile, err)
	}
	if r.Nodes != 3 || r.Heartbeat <= 0 || r.ElectionTimeout <= 0 {
		t.Errorf("nodes %d, heartbeat %v, election timeout %v", r.Nodes, r.Heartbeat, r.ElectionTimeout)
	}
	for name, d := range map[string]chaos.Dist{
		"cold start": r.ColdStart, "kill": r.FailoverKill, "isolate": r.FailoverIsolate,
		"term": r.FailoverTerm, "rejoin": r.Rejoin, "asym heal": r.AsymHeal,
	} {
		if d.N == 0 || d.N != len(d.Samples) || d.Min > d.P50 || d.P50 > d.P90 || d.P90 > d.Max || d.Min < 0 {
			t.Errorf("%s: not a sane distribution: %+v", name, d)
		}
	}
	if r.Rolling.Restarts != 3 || r.Rolling.Window <= 0 {
		t.Errorf("rolling restart: %+v", r.Rolling)
	}
	if len(r.Idle.Nodes) != 3 {
		t.Errorf("idle: %d nodes, want 3", len(r.Idle.Nodes))
	}
	for _, n := range r.Idle.Nodes {
		if n.CPUMsPerSec < 0 || n.RSSMaxMB <= 0 || n.TxBytesPerSec <= 0 || n.RxBytesPerSec <= 0 {
			t.Errorf("idle %s: %+v", n.Name, n)
		}
	}
	if len(r.Soaks) != 2 {
		t.Fatalf("%d soaks, want idle and hung-peer", len(r.Soaks))
	}
	for _, s := range r.Soaks {
		for _, n := range s.Nodes {
			if n.GoroutinesStart <= 0 || n.GoroutinesEnd <= 0 || n.HeapInuseStartMB <= 0 || n.HeapInuseEndMB <= 0 {
				t.Errorf("soak %s, %s: %+v", s.Condition, n.Name, n)
			}
		}
	}
	if len(r.Profiles) != 12 {
		t.Errorf("%d profiles, want cpu, heap and goroutine of 2 nodes in 2 conditions", len(r.Profiles))
	}
	for _, p := range r.Profiles {
		if fi, err := os.Stat(filepath.Join(dir, p.File)); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", p.File, err)
		}
	}
	if len(r.Targets) == 0 {
		t.Errorf("no targets judged")
	}
	if len(r.Violations) > 0 {
		t.Errorf("checker: %v", r.Violations)
	}
	svg, err := os.ReadFile(filepath.Join(dir, chaos.BenchPlotFile))
	if err != nil || !strings.HasPrefix(string(svg), "<svg") || !strings.HasSuffix(string(svg), "</svg>\n") {
		t.Errorf("%s: not an SVG document (%v)", chaos.BenchPlotFile, err)
	}
}
