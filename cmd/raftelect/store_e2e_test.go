package main

import (
	"bytes"
	"context"
	bin "encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftelect/raftelect/config"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// runToExit runs the binary and waits for it to exit by itself; one that
// is still running after limit (it accepted what it should have refused)
// is killed and fails the test.
func runToExit(t *testing.T, limit time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("raftelect %v still running after %v (killed); stderr:\n%s", args, limit, errb.String())
	}
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("raftelect %v: %v", args, err)
	}
	return r
}

// oneNodeWithState starts node n1 of a three-node cluster whose peers are
// absent, waits until it has persisted its first hard state (bootstrap,
// term 1) and stops it. It returns the config and the store file.
func oneNodeWithState(t *testing.T) (cfg, db string) {
	t.Helper()
	dir := t.TempDir()
	events := filepath.Join(dir, "n1.events")
	cfg, _ = loneNodeConfig(t, dir, func(n *config.Node) { n.EventLog = events })
	p := &proc{name: "n1", cfg: cfg, log: filepath.Join(dir, "n1.log")}
	p.start(t)
	t.Cleanup(p.kill)
	eventually(t, 20*time.Second, "n1 to persist its first hard state", func() error {
		b, err := os.ReadFile(events)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte(`"kind":"state"`)) {
			return errors.New("no state event yet")
		}
		return nil
	})
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("n1 did not stop within 20s of SIGTERM")
	}
	if p.exitCode != 0 {
		b, _ := os.ReadFile(p.log)
		t.Fatalf("n1 exited %d after SIGTERM:\n%s", p.exitCode, b)
	}
	return cfg, filepath.Join(dir, "data", "raft.db")
}

// storedHardState returns the hard state record of a store (payload and
// its 4-byte checksum, storage format 2).
func storedHardState(t *testing.T, db string) []byte {
	t.Helper()
	d, err := bolt.Open(db, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close() }()
	var rec []byte
	if err := d.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte("raftelect"))
		if meta == nil {
			return errors.New("no raftelect bucket")
		}
		rec = append([]byte(nil), meta.Get([]byte("hardstate"))...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(rec) < 5 {
		t.Fatalf("hard state record %x too short", rec)
	}
	return rec
}

// A damaged store makes the node refuse to start, exit 1, with a message
// that names the file, what is wrong and what to do, and never a panic: a
// bit flipped in the stored term, and a commit index beyond the log (which
// raft itself panics on, exit 2 with a stack trace, if it is given one).
func TestDamagedStoreIsRefusedWithoutAPanic(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, db string, rec []byte)
		reason string
	}{
		{"a bit flipped in the stored term", func(t *testing.T, db string, rec []byte) {
			// The file itself, as the disk would: every copy of the record
			// (bbolt may keep an old page), the term's varint 1 -> 3.
			data, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			var hs raftpb.HardState
			if err := proto.Unmarshal(rec[:len(rec)-4], &hs); err != nil || hs.GetTerm() != 1 || rec[0] != 0x08 {
				t.Fatalf("hard state %x (%v, %v): want term 1 first", rec, &hs, err)
			}
			n := bytes.Count(data, rec)
			if n == 0 {
				t.Fatal("hard state record not found in the file")
			}
			data = bytes.ReplaceAll(data, rec, append([]byte{rec[0], rec[1] ^ 0x02}, rec[2:]...))
			if err := os.WriteFile(db, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "hard state record damaged: checksum mismatch"},
		{"a commit index beyond the log, with a valid checksum", func(t *testing.T, db string, rec []byte) {
			// As a bug or a hand-edited file would leave it: the record is
			// sound (format 2: payload, then CRC-32C of key and payload).
			p, err := proto.Marshal(&raftpb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(99)})
			if err != nil {
				t.Fatal(err)
			}
			key := []byte("hardstate")
			sum := crc32.Update(crc32.Checksum(key, crc32.MakeTable(crc32.Castagnoli)), crc32.MakeTable(crc32.Castagnoli), p)
			d, err := bolt.Open(db, 0o600, &bolt.Options{Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = d.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("raftelect")).Put(key, bin.BigEndian.AppendUint32(p, sum))
			})
			if cerr := d.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
		}, "hard state does not fit the log: commit index 99 is beyond the last log index"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, db := oneNodeWithState(t)
			tc.damage(t, db, storedHardState(t, db))
			r := runToExit(t, 30*time.Second, "run", "--config", cfg)
			if r.code != 1 {
				t.Fatalf("exit code %d, want 1; stderr:\n%s", r.code, r.stderr)
			}
			for _, want := range []string{db + ": not a raftelect store this node can trust (" + tc.reason,
				"move the data directory " + filepath.Dir(db) + " away", "docs/safety.md"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("stderr shows a panic:\n%s", r.stderr)
			}
		})
	}
}

// copyDir copies the regular files of src into a new directory dst (the
// data directory holds only raft.db).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop within 20s of SIGTERM", p.name)
	}
	if p.exitCode != 0 {
		t.Fatalf("%s exited %d after SIGTERM", p.name, p.exitCode)
	}
}

// A data directory copied from another node of the cluster is refused at
// start (exit 2, as for a bad configuration: restarting will not help),
// with a message naming both nodes and what to do; the node's own data
// directory, put back, starts and rejoins.
func TestDataDirCopiedFromAnotherNodeIsRefused(t *testing.T) {
	c := startCluster(t)
	n1, n2 := c.node("n1"), c.node("n2")
	// Both stores must hold their full identity: the node name (written at
	// start) and the cluster ID (written when the first leader's ID record
	// is applied).
	for _, p := range []*proc{n1, n2} {
		eventually(t, 30*time.Second, p.name+" to record the cluster ID", func() error {
			b, err := os.ReadFile(p.log)
			if err != nil {
				return err
			}
			if !bytes.Contains(b, []byte(`"cluster ID recorded"`)) {
				return errors.New("not yet")
			}
			return nil
		})
	}
	n2.stop(t)
	n1.stop(t)
	data := filepath.Join(c.dir, "data")
	own := filepath.Join(data, "n2.own")
	if err := os.Rename(filepath.Join(data, "n2"), own); err != nil {
		t.Fatal(err)
	}
	copyDir(t, filepath.Join(data, "n1"), filepath.Join(data, "n2"))
	n1.start(t) // n1 and n3: the cluster carries on without n2

	r := runToExit(t, 30*time.Second, "run", "--config", n2.cfg)
	t.Logf("n2 on n1's data directory: exit %d, stderr:\n%s", r.code, r.stderr)
	if r.code != 2 {
		t.Fatalf("exit code %d, want 2", r.code)
	}
	for _, want := range []string{`"n1"`, `"n2"`, "data_dir", "empty data directory"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Errorf("stderr shows a panic")
	}

	// The control: the same binary and configuration on n2's own state.
	if err := os.RemoveAll(filepath.Join(data, "n2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(own, filepath.Join(data, "n2")); err != nil {
		t.Fatal(err)
	}
	n2.start(t)
	eventually(t, 30*time.Second, "n2 on its own data directory to rejoin (/readyz 200)", func() error {
		code, body, err := n2.get("/readyz")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
}
