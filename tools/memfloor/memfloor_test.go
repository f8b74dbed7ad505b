//go:build !memfloor_runtime && !memfloor_tls && !memfloor_grpc && !memfloor_full

// The tests need every layer and the driver: the build without level tags.

package main

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Every layer's stop waits for the goroutines it started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitExchanges polls until r has made n round trips; the limit is generous
// (a round trip is due every period), the check is the count.
func waitExchanges(t *testing.T, r running, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for r.exchanges() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d exchanges after 30 s, want %d", r.exchanges(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Each layer does its periodic work (an echoed TLS message, a health Check
// answered SERVING, a raft tick persisted and counted) and its stop leaves
// no goroutine (TestMain) and no file behind.
func TestLayers_DoTheirWorkAndStopClean(t *testing.T) {
	for i := 1; i < len(levels); i++ {
		t.Run(levels[i], func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			r, err := layers[i]()
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			waitExchanges(t, r, 3)
			if levels[i] == "full" {
				checkMetrics(t)
			}
			if err := r.stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}
			left, err := os.ReadDir(tmp)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) != 0 {
				t.Errorf("%s still holds %v after stop: the layer must remove what it made", tmp, left)
			}
		})
	}
}

// checkMetrics scrapes the full layer's registry: the raft term is 2 (1 is
// the bootstrap's, 2 the campaign's), the node's collectors are there and
// its ticks are counted.
func checkMetrics(t *testing.T) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + fullMetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	for _, want := range []string{"memfloor_raft_term 2\n", "go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(text, "memfloor_ticks_total 0\n") || !strings.Contains(text, "memfloor_ticks_total ") {
		t.Errorf("memfloor_ticks_total missing or 0 after 3 ticks")
	}
}

// run accepts a known level and a duration, and says what is wrong with
// anything else.
func TestRun_Arguments(t *testing.T) {
	if got := run([]string{"run", "--level", "runtime", "--duration", "10ms"}); got != 0 {
		t.Errorf("runtime level for 10ms: exit %d, want 0", got)
	}
	for _, args := range [][]string{
		{"run", "--level", "nope", "--duration", "1s"},
		{"run", "--level", "tls"},
		{"run", "--level", "tls", "--duration", "-1s"},
		{"run", "--level"},
	} {
		if got := run(args); got != 1 {
			t.Errorf("%q: exit %d, want 1", args, got)
		}
	}
}

// readSegments finds the three PT_LOAD segments of a Go executable (this
// test's), each inside the file.
func TestReadSegments_OfThisExecutable(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := readSegments(exe)
	if err != nil {
		t.Fatal(err)
	}
	if s.text == 0 || s.rodata == 0 || s.data == 0 {
		t.Errorf("segments %+v: want text, rodata and data each non-zero", s)
	}
	if s.text+s.rodata+s.data > uint64(s.file) {
		t.Errorf("segments %+v add up to more than the file", s)
	}
}
