package certs

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestIssuingNeverLeavesTheCAFileUnreadable: nodes read ca.crt while
// certificates are issued into the same directory (a node starting, a CA
// reload); at no moment may a reader find it empty or cut short.
func TestIssuingNeverLeavesTheCAFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.WriteNode(dir, "n1", []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ca.crt")
	var stop atomic.Bool
	var bad atomic.Int64
	var reads atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			b, err := os.ReadFile(path)
			reads.Add(1)
			blk, _ := pem.Decode(b)
			if err != nil || blk == nil {
				bad.Add(1)
				continue
			}
			if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
				bad.Add(1)
			}
		}
	})
	for i := range 200 {
		name := "n" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if i%2 == 0 {
			_, err = ca.WriteNode(dir, name, []string{"127.0.0.1"}, time.Hour)
		} else {
			_, err = ca.WriteOperator(dir, name, time.Hour)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d of %d reads of ca.crt found it empty or cut short while certificates were issued", bad.Load(), reads.Load())
	}
	t.Logf("%d reads of ca.crt while issuing", reads.Load())
}
