package storage

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

// entries makes entries lo..hi (inclusive) in term, with payloads of
// varying size so that maxSize limits fall between entries.
func entries(lo, hi, term uint64) []*raftpb.Entry {
	var ents []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		ents = append(ents, &raftpb.Entry{
			Term:  proto.Uint64(term),
			Index: proto.Uint64(i),
			Type:  raftpb.EntryType_EntryNormal.Enum(),
			Data:  bytes.Repeat([]byte{byte(i)}, int(i*7%23)),
		})
	}
	return ents
}

func snapshot(index, term uint64, voters ...uint64) *raftpb.Snapshot {
	return &raftpb.Snapshot{
		Data: []byte("snap"),
		Metadata: &raftpb.SnapshotMetadata{
			Index:     proto.Uint64(index),
			Term:      proto.Uint64(term),
			ConfState: &raftpb.ConfState{Voters: voters},
		},
	}
}

func confState(voters ...uint64) *raftpb.ConfState { return &raftpb.ConfState{Voters: voters} }

func openTestBolt(t testing.TB, dir string) *Bolt {
	t.Helper()
	b, err := OpenBolt(dir, BoltOptions{})
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	return b
}

// Each step builds its own arguments, so that neither store sees objects the
// other one may have touched (MemoryStorage fills in nil fields in place).
type step struct {
	name string
	do   func(s Store) error
}

func save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) func(Store) error {
	return func(s Store) error {
		var c []*raftpb.Entry
		for _, e := range ents {
			c = append(c, proto.Clone(e).(*raftpb.Entry))
		}
		var h *raftpb.HardState
		if hs != nil {
			h = proto.Clone(hs).(*raftpb.HardState)
		}
		var sn *raftpb.Snapshot
		if snap != nil {
			sn = proto.Clone(snap).(*raftpb.Snapshot)
		}
		return s.Save(h, c, sn, true)
	}
}

func compact(index uint64, cs *raftpb.ConfState) func(Store) error {
	return func(s Store) error {
		var c *raftpb.ConfState
		if cs != nil {
			c = proto.Clone(cs).(*raftpb.ConfState)
		}
		return s.Compact(index, c, nil)
	}
}

func concat(lists ...[]*raftpb.Entry) []*raftpb.Entry {
	var all []*raftpb.Entry
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}

// TestBoltBehavesLikeMemoryStorage runs the same operations on
// raft.MemoryStorage and on Bolt, and after every step (and again after
// reopening the Bolt file) compares every answer raft.Storage can give.
// Every step leaves a state raft could produce (commit inside the log, no
// entry of a term above the hard state's): Bolt refuses the others, which
// TestBoltSaveRefusesStatesRaftNeverProduces covers.
func TestBoltBehavesLikeMemoryStorage(t *testing.T) {
	scenarios := []struct {
		name  string
		steps []step
	}{
		{"empty store", nil},
		{"append, overwrite a conflicting suffix, extend", []step{
			{"hard state only", save(hardState(1, 1, 0), nil, nil)},
			{"append 1..5", save(hardState(1, 1, 2), entries(1, 5, 1), nil)},
			{"conflict at 3 truncates 4..5", save(hardState(2, 2, 2), entries(3, 3, 2), nil)},
			{"extend 4..6", save(nil, entries(4, 6, 2), nil)},
			{"rewrite same prefix 1..2 truncates 3..6", save(nil, entries(1, 2, 1), nil)},
			{"extend 3..6 again", save(nil, entries(3, 6, 2), nil)},
			{"empty hard state is ignored", save(&raftpb.HardState{}, nil, nil)},
			{"nothing at all", save(nil, nil, nil)},
			{"commit moves", save(hardState(2, 2, 6), nil, nil)},
		}},
		{"compaction", []step{
			{"append 1..10", save(hardState(3, 1, 5), concat(entries(1, 4, 1), entries(5, 10, 3)), nil)},
			{"compact 5", compact(5, confState(1, 2, 3))},
			{"compact below snapshot is a no-op", compact(3, confState(9))},
			{"compact at snapshot is a no-op", compact(5, confState(9))},
			{"append 4..8 drops compacted part, truncates 9..10", save(hardState(4, 2, 8), entries(4, 8, 4), nil)},
			{"append entirely below first index is a no-op", save(nil, entries(1, 3, 4), nil)},
			{"compact with nil ConfState keeps the old one", compact(8, nil)},
			{"append after compacting everything", save(hardState(5, 2, 11), entries(9, 11, 5), nil)},
			{"compact to last", compact(11, confState(1, 2))},
		}},
		{"snapshots", []step{
			{"snapshot 10", save(hardState(3, 1, 10), nil, snapshot(10, 3, 1, 2, 3))},
			{"same snapshot is out of date, entries and state untouched", save(hardState(9, 9, 9), entries(11, 12, 9), snapshot(10, 3, 1))},
			{"older snapshot is out of date", save(nil, nil, snapshot(5, 2))},
			{"append 11..13", save(nil, entries(11, 13, 3), nil)},
			{"snapshot 12 replaces the log, then 13..14", save(hardState(4, 2, 13), entries(13, 14, 4), snapshot(12, 3, 1, 2))},
			{"compact 13", compact(13, nil)},
		}},
		{"snapshot behind existing entries discards them", []step{
			{"append 1..10", save(hardState(1, 1, 4), entries(1, 10, 1), nil)},
			{"snapshot 4", save(nil, nil, snapshot(4, 1, 1))},
			{"append 5..6", save(hardState(2, 1, 4), entries(5, 6, 2), nil)},
		}},
		{"bootstrap-style empty snapshot is ignored", []step{
			{"empty snapshot with ConfState", save(nil, nil, &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{ConfState: confState(1)}})},
			{"append 1..3", save(hardState(1, 0, 0), entries(1, 3, 1), nil)},
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			dir := t.TempDir()
			mem := NewMemory()
			b := openTestBolt(t, dir)
			defer func() { _ = b.Close() }()
			compareStores(t, "initial", mem, b)
			for _, st := range sc.steps {
				memErr, boltErr := st.do(mem), st.do(b)
				if !sameErr(memErr, boltErr) {
					t.Fatalf("%s: memory error %v, bolt error %v", st.name, memErr, boltErr)
				}
				compareStores(t, st.name, mem, b)
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				b = openTestBolt(t, dir)
				compareStores(t, st.name+" (reopened)", mem, b)
			}
		})
	}
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return errors.Is(b, a)
}

func compareStores(t *testing.T, when string, mem *Memory, b *Bolt) {
	t.Helper()
	mhs, mcs, merr := mem.InitialState()
	bhs, bcs, berr := b.InitialState()
	if !sameErr(merr, berr) || !proto.Equal(mhs, bhs) || !proto.Equal(mcs, bcs) {
		t.Fatalf("%s: InitialState memory (%v, %v, %v), bolt (%v, %v, %v)", when, mhs, mcs, merr, bhs, bcs, berr)
	}
	mfirst, _ := mem.FirstIndex()
	bfirst, err := b.FirstIndex()
	if err != nil || mfirst != bfirst {
		t.Fatalf("%s: FirstIndex memory %d, bolt %d (%v)", when, mfirst, bfirst, err)
	}
	mlast, _ := mem.LastIndex()
	blast, err := b.LastIndex()
	if err != nil || mlast != blast {
		t.Fatalf("%s: LastIndex memory %d, bolt %d (%v)", when, mlast, blast, err)
	}
	msnap, merr := mem.Snapshot()
	bsnap, berr := b.Snapshot()
	if !sameErr(merr, berr) || !proto.Equal(msnap, bsnap) {
		t.Fatalf("%s: Snapshot memory (%v, %v), bolt (%v, %v)", when, msnap, merr, bsnap, berr)
	}
	for i := uint64(0); i <= mlast+2; i++ {
		mt, merr := mem.Term(i)
		bt, berr := b.Term(i)
		if mt != bt || !sameErr(merr, berr) {
			t.Fatalf("%s: Term(%d) memory (%d, %v), bolt (%d, %v)", when, i, mt, merr, bt, berr)
		}
	}
	// MemoryStorage panics on hi > last+1 and lo > hi, so stay inside.
	for lo := uint64(0); lo <= mlast+1; lo++ {
		for hi := lo; hi <= mlast+1; hi++ {
			for _, maxSize := range []uint64{0, 1, 20, 45, 100, math.MaxUint64} {
				ments, merr := mem.Entries(lo, hi, maxSize)
				bents, berr := b.Entries(lo, hi, maxSize)
				if !sameErr(merr, berr) || !sameEntries(ments, bents) {
					t.Fatalf("%s: Entries(%d, %d, %d) memory (%v, %v), bolt (%v, %v)", when, lo, hi, maxSize, ments, merr, bents, berr)
				}
			}
		}
	}
}

func sameEntries(a, b []*raftpb.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestBoltRestartRestoresEverything(t *testing.T) {
	dir := t.TempDir()
	b := openTestBolt(t, dir)
	if !b.Fresh() {
		t.Fatal("a new store must be Fresh")
	}
	steps := []error{
		b.Save(hardState(1, 1, 0), entries(1, 20, 1), nil, true),
		b.Save(hardState(2, 3, 15), entries(18, 25, 2), nil, false),
		b.Compact(10, confState(1, 2, 3), nil),
		b.Save(hardState(2, 3, 25), nil, nil, true),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openTestBolt(t, dir)
	defer func() { _ = b.Close() }()
	if b.Fresh() {
		t.Error("a store with state must not be Fresh after reopening")
	}
	hs, cs, err := b.InitialState()
	if err != nil || !proto.Equal(hs, hardState(2, 3, 25)) || !proto.Equal(cs, raftpb.EnsureConfState(confState(1, 2, 3))) {
		t.Errorf("InitialState = %v, %v, %v", hs, cs, err)
	}
	first, _ := b.FirstIndex()
	last, _ := b.LastIndex()
	if first != 11 || last != 25 {
		t.Errorf("FirstIndex, LastIndex = %d, %d; want 11, 25", first, last)
	}
	snap, _ := b.Snapshot()
	if snap.GetMetadata().GetIndex() != 10 || snap.GetMetadata().GetTerm() != 1 {
		t.Errorf("snapshot metadata = %v", snap.GetMetadata())
	}
	if term, err := b.Term(10); term != 1 || err != nil {
		t.Errorf("Term(10) at the snapshot = %d, %v; want 1", term, err)
	}
	got, err := b.Entries(11, 26, math.MaxUint64)
	want := concat(entries(11, 17, 1), entries(18, 25, 2))
	if err != nil || !sameEntries(got, want) {
		t.Errorf("Entries(11, 26) = %v, %v; want %v", got, err, want)
	}
}

func TestBoltFreshOnlyWhenOpenedEmpty(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(*Bolt) error
		fresh bool
	}{
		{"nothing written", func(*Bolt) error { return nil }, true},
		{"hard state", func(b *Bolt) error { return b.Save(hardState(1, 1, 0), nil, nil, true) }, false},
		{"entries", func(b *Bolt) error { return b.Save(hardState(1, 0, 0), entries(1, 1, 1), nil, true) }, false},
		{"snapshot", func(b *Bolt) error { return b.Save(hardState(1, 0, 3), nil, snapshot(3, 1, 1), true) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := openTestBolt(t, dir)
			if err := tc.write(b); err != nil {
				t.Fatal(err)
			}
			if !b.Fresh() {
				t.Error("Fresh must describe the store as opened, not as written since")
			}
			_ = b.Close()
			b = openTestBolt(t, dir)
			defer func() { _ = b.Close() }()
			if b.Fresh() != tc.fresh {
				t.Errorf("Fresh() = %v after reopening, want %v", b.Fresh(), tc.fresh)
			}
		})
	}
}

func TestBoltCreatesDataDirPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	b := openTestBolt(t, dir)
	defer func() { _ = b.Close() }()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, "raft.db.new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("raft.db.new left behind: %v", err)
	}
}

func TestBoltCloseIsIdempotentAndFinal(t *testing.T) {
	b := openTestBolt(t, t.TempDir())
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.LastIndex(); !errors.Is(err, ErrClosed) {
		t.Errorf("LastIndex after Close: %v, want ErrClosed", err)
	}
	if err := b.Save(hardState(1, 1, 0), nil, nil, true); !errors.Is(err, ErrClosed) {
		t.Errorf("Save after Close: %v, want ErrClosed", err)
	}
}

// Where raft.MemoryStorage panics on a caller's mistake, Bolt returns an
// error and changes nothing.
func TestBoltReturnsErrorsWhereMemoryStoragePanics(t *testing.T) {
	b := openTestBolt(t, t.TempDir())
	defer func() { _ = b.Close() }()
	if err := b.Save(hardState(1, 0, 3), entries(1, 3, 1), nil, true); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(nil, entries(5, 6, 1), nil, true); err == nil {
		t.Error("append leaving a gap after 3 succeeded")
	}
	if err := b.Save(nil, []*raftpb.Entry{entries(4, 4, 1)[0], entries(6, 6, 1)[0]}, nil, true); err == nil {
		t.Error("append of non-consecutive entries succeeded")
	}
	if err := b.Compact(4, nil, nil); err == nil {
		t.Error("compact beyond the last index succeeded")
	}
	if _, err := b.Entries(1, 5, math.MaxUint64); err == nil {
		t.Error("Entries beyond the last index succeeded")
	}
	if _, err := b.Entries(3, 2, math.MaxUint64); err == nil {
		t.Error("Entries with lo > hi succeeded")
	}
	if last, _ := b.LastIndex(); last != 3 {
		t.Errorf("LastIndex = %d after failed calls, want 3", last)
	}
}

func TestBoltSecondOpenOfDataDirFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	b := openTestBolt(t, dir)
	start := time.Now()
	b2, err := OpenBolt(dir, BoltOptions{})
	elapsed := time.Since(start)
	if err == nil {
		_ = b2.Close()
		_ = b.Close()
		t.Fatal("second OpenBolt of a locked data dir succeeded")
	}
	var inUse *DataDirInUseError
	if !errors.As(err, &inUse) {
		t.Errorf("error %T %v, want *DataDirInUseError", err, err)
	}
	want := "data directory " + dir + " is in use by another raftelect process (raft.db is locked); stop it or choose another --data-dir"
	if err.Error() != want {
		t.Errorf("error %q\nwant      %q", err, want)
	}
	if elapsed > 2*time.Second {
		t.Errorf("second open took %v; it must fail at once", elapsed)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openTestBolt(t, dir) // the lock goes with Close
	_ = b.Close()
}

const lockChildEnv = "RAFTELECT_TEST_BOLT_OPEN_DIR"

// The lock must hold against another process too: this test re-executes
// the test binary, whose copy of this test opens the same data dir.
func TestBoltDataDirLockedAgainstOtherProcess(t *testing.T) {
	if dir := os.Getenv(lockChildEnv); dir != "" {
		b, err := OpenBolt(dir, BoltOptions{})
		if err == nil {
			_ = b.Close()
			os.Stdout.WriteString("CHILD-OPENED\n")
			return
		}
		os.Stdout.WriteString("CHILD-ERROR: " + err.Error() + "\n")
		return
	}
	dir := t.TempDir()
	b := openTestBolt(t, dir)
	defer func() { _ = b.Close() }()

	cmd := exec.Command(os.Args[0], "-test.run=^TestBoltDataDirLockedAgainstOtherProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CHILD-ERROR: data directory "+dir+" is in use by another raftelect process") {
		t.Fatalf("child process was not refused:\n%s", out)
	}
}

// A file that is not a healthy store must be refused with an error naming
// the file and what to do, and must never panic or crash the process.
func TestBoltRefusesForeignOrCorruptFile(t *testing.T) {
	// A real store large enough to span many pages, to truncate.
	goodDir := t.TempDir()
	good := openTestBolt(t, goodDir)
	for i := uint64(1); i <= 200; i += 10 {
		if err := good.Save(hardState(1, 1, i), entries(i, i+9, 1), nil, true); err != nil {
			t.Fatal(err)
		}
	}
	_ = good.Close()
	goodBytes, err := os.ReadFile(filepath.Join(goodDir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 64<<10)
	_, _ = rand.Read(random)

	boltFile := func(fill func(tx *bolt.Tx) error) func(path string) error {
		return func(path string) error {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				return err
			}
			if err := db.Update(fill); err != nil {
				_ = db.Close()
				return err
			}
			return db.Close()
		}
	}
	must := func(f func(path string) error) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			if err := f(path); err != nil {
				t.Fatal(err)
			}
		}
	}
	bytesFile := func(b []byte) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	goodFile := func(edit func(tx *bolt.Tx) error) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			bytesFile(goodBytes)(t, path)
			must(boltFile(edit))(t, path)
		}
	}

	// bbolt grows the file ahead of use; what it needs is the high-water mark.
	var needed int
	if err := boltFile(func(tx *bolt.Tx) error { needed = int(tx.Size()); return nil })(filepath.Join(goodDir, "raft.db")); err != nil {
		t.Fatal(err)
	}
	t.Logf("good store: %d bytes, %d in use", len(goodBytes), needed)

	cases := []struct {
		name   string
		make   func(t *testing.T, path string)
		reason string
	}{
		{"random bytes", bytesFile(random), "invalid bbolt database"},
		{"small random bytes", bytesFile(random[:100]), "invalid bbolt database"},
		{"empty file", bytesFile(nil), "empty file"},
		{"foreign bbolt file without buckets", must(boltFile(func(*bolt.Tx) error { return nil })), `bucket "raftelect" missing`},
		{"foreign bbolt file with other buckets", must(boltFile(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("users"))
			return err
		})), `bucket "raftelect" missing`},
		{"newer format version", goodFile(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("raftelect")).Put([]byte("version"), []byte("3"))
		}), `format version "3", this build reads "2" and upgrades "1"`},
		{"entries bucket missing", goodFile(func(tx *bolt.Tx) error {
			return tx.DeleteBucket([]byte("entries"))
		}), `bucket "entries" missing`},
		{"gap in the log", goodFile(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("entries")).Delete(binary.BigEndian.AppendUint64(nil, 50))
		}), "where index 50 was expected"},
		{"hard state too short for its checksum", goodFile(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("raftelect")).Put([]byte("hardstate"), []byte{0xff, 0xff})
		}), "hard state record damaged: checksum missing"},
		{"garbage hard state with a valid checksum", goodFile(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("raftelect")).Put([]byte("hardstate"), sealRecord([]byte("hardstate"), []byte{0xff, 0xff}))
		}), "bad hard state"},
		{"truncated to one page", bytesFile(goodBytes[:4096]), ""},
		{"truncated by one page", bytesFile(goodBytes[:needed-4096]), "truncated"},
	}
	// Every cut below the high-water mark; some make bbolt read pages past
	// the end of the file (SIGBUS/SIGSEGV) or panic on a garbled page.
	for size := 2 * 4096; size < needed; size += 4096 {
		cases = append(cases, struct {
			name   string
			make   func(t *testing.T, path string)
			reason string
		}{fmt.Sprintf("truncated to %d bytes", size), bytesFile(goodBytes[:size]), ""})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "raft.db")
			tc.make(t, path)
			b, err := OpenBolt(dir, BoltOptions{})
			if err == nil {
				_ = b.Close()
				t.Fatal("OpenBolt accepted the file")
			}
			var notStore *NotAStoreError
			if !errors.As(err, &notStore) {
				t.Fatalf("error %T %v, want *NotAStoreError", err, err)
			}
			msg := err.Error()
			for _, want := range []string{path + ": not a raftelect store this node can trust (", tc.reason, "move the data directory " + dir + " away", "docs/safety.md"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
			t.Log(msg)
			// The failed open must not keep the file locked.
			db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 100 * time.Millisecond, ReadOnly: true})
			if errors.Is(err, os.ErrDeadlineExceeded) || (err != nil && err.Error() == "timeout") {
				t.Errorf("file still locked after the failed open")
			}
			if db != nil {
				_ = db.Close()
			}
		})
	}
}

// Term and Entries must be answered from the cache for the indexes raft
// asks about most, and never allocate a transaction for LastIndex.
func TestBoltTermOfLastAndSnapshotNeedNoRead(t *testing.T) {
	b := openTestBolt(t, t.TempDir())
	defer func() { _ = b.Close() }()
	if err := b.Save(hardState(1, 1, 10), entries(1, 10, 1), nil, true); err != nil {
		t.Fatal(err)
	}
	if err := b.Compact(5, confState(1), nil); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = b.LastIndex()
		_, _ = b.FirstIndex()
		_, _ = b.Term(10)
		_, _ = b.Term(5)
	})
	if allocs != 0 {
		t.Errorf("%v allocations for cached reads, want 0", allocs)
	}
	if _, err := b.Term(7); err != nil {
		t.Errorf("Term(7) from the file: %v", err)
	}
	if term, _ := b.Term(4); term != 0 {
		t.Errorf("Term(4) below snapshot = %d", term)
	}
	if _, err := b.Term(4); !errors.Is(err, raft.ErrCompacted) {
		t.Errorf("Term(4) below snapshot: %v, want ErrCompacted", err)
	}
}

// raft reads (Term, Entries) while the Ready loop saves and compacts; a
// reader must always see a consistent log (run with -race).
func TestBoltConcurrentReadsSeeConsistentLog(t *testing.T) {
	b := openTestBolt(t, t.TempDir())
	defer func() { _ = b.Close() }()
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			select {
			case <-done:
				return
			default:
			}
			first, _ := b.FirstIndex()
			last, _ := b.LastIndex()
			if last < first {
				continue
			}
			ents, err := b.Entries(first, last+1, math.MaxUint64)
			if err != nil && !errors.Is(err, raft.ErrCompacted) {
				errc <- err
				return
			}
			for i, e := range ents {
				if e.GetIndex() != ents[0].GetIndex()+uint64(i) {
					errc <- fmt.Errorf("entries not consecutive: %v", ents)
					return
				}
			}
			if _, err := b.Term(last); err != nil && !errors.Is(err, raft.ErrCompacted) && !errors.Is(err, raft.ErrUnavailable) {
				errc <- err
				return
			}
		}
	}()
	for i := uint64(1); i <= 200; i += 5 {
		if err := b.Save(hardState(1, 1, i), entries(i, i+4, 1), nil, false); err != nil {
			t.Fatal(err)
		}
		if i > 50 {
			if err := b.Compact(i-40, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
