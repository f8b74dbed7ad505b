package storage

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// rawStore writes a format-2 store with exactly the given records,
// bypassing Save and its checks, as a damaged or forged file would hold
// them. A nil hs or snap leaves the record out.
func rawStore(t *testing.T, dir string, hs *raftpb.HardState, snap *raftpb.Snapshot, ents []*raftpb.Entry) string {
	t.Helper()
	b := openTestBolt(t, dir)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, boltFileName)
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		meta, bucket := tx.Bucket(bucketMeta), tx.Bucket(bucketEntries)
		if hs != nil {
			v, _ := marshalRecord(keyHardState, hs)
			if err := meta.Put(keyHardState, v); err != nil {
				return err
			}
		}
		if snap != nil {
			v, _ := marshalRecord(keySnapshot, snap)
			if err := meta.Put(keySnapshot, v); err != nil {
				return err
			}
		}
		for _, e := range ents {
			k := indexKey(e.GetIndex())
			v, _ := marshalRecord(k, e)
			if err := bucket.Put(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	return path
}

func rawUpdate(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func rawView(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.View(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// mustRefuse opens dir and requires a *NotAStoreError whose message holds
// every one of want.
func mustRefuse(t *testing.T, dir string, want ...string) *NotAStoreError {
	t.Helper()
	b, err := OpenBolt(dir, BoltOptions{})
	if err == nil {
		_ = b.Close()
		t.Fatalf("OpenBolt accepted the store; want a refusal naming %q", want)
	}
	var notStore *NotAStoreError
	if !errors.As(err, &notStore) {
		t.Fatalf("error %T %v, want *NotAStoreError", err, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q lacks %q", err, w)
		}
	}
	return notStore
}

// raftPanicsOn reports whether raft, given this state in a MemoryStorage
// (which checks nothing), panics when the node starts.
func raftPanicsOn(hs *raftpb.HardState, snap *raftpb.Snapshot, ents []*raftpb.Entry) (panicked bool) {
	ms := raft.NewMemoryStorage()
	if snap != nil {
		_ = ms.ApplySnapshot(proto.Clone(snap).(*raftpb.Snapshot))
	}
	if len(ents) > 0 {
		var c []*raftpb.Entry
		for _, e := range ents {
			c = append(c, proto.Clone(e).(*raftpb.Entry))
		}
		_ = ms.Append(c)
	}
	if hs != nil {
		_ = ms.SetHardState(proto.Clone(hs).(*raftpb.HardState))
	}
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	_, _ = raft.NewRawNode(&raft.Config{
		ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: ms, MaxInflightMsgs: 16, MaxSizePerMsg: 1 << 20,
		Applied: snap.GetMetadata().GetIndex(),
		Logger:  &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)},
	})
	return false
}

func entryOf(index, term uint64) *raftpb.Entry {
	return &raftpb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Type: raftpb.EntryType_EntryNormal.Enum()}
}

// A stored raft state that raft would panic on, or would trust and then
// break the log matching property with, is refused at open with an error
// that says what is wrong and what to do; it never reaches raft.
func TestBoltRefusesRaftStateThatDoesNotFitTheLog(t *testing.T) {
	cases := []struct {
		name       string
		hs         *raftpb.HardState
		snap       *raftpb.Snapshot
		ents       []*raftpb.Entry
		reason     string
		raftPanics bool // what raft does with it when nobody checks
	}{
		{"commit beyond the last entry", hardState(2, 1, 12), nil, entries(1, 10, 2),
			"commit index 12 is beyond the last log index 10", true},
		{"commit with no log at all", hardState(1, 1, 3), nil, nil,
			"commit index 3 is beyond the last log index 0", true},
		{"commit beyond the snapshot, log empty", hardState(3, 1, 8), snapshot(7, 2, 1), nil,
			"commit index 8 is beyond the last log index 7", true},
		{"commit below the snapshot", hardState(3, 1, 4), snapshot(7, 2, 1), entries(8, 9, 3),
			"commit index 4 is below the snapshot index 7", true},
		{"term below the last entry's", hardState(2, 1, 5), nil, concat(entries(1, 5, 2), entries(6, 7, 3)),
			"term 2 is below the term 3 of log entry 7", false},
		{"term below the snapshot's", hardState(2, 1, 7), snapshot(7, 3, 1), nil,
			"term 2 is below the snapshot's term 3", false},
		{"no hard state but a log", nil, nil, entries(1, 3, 1),
			"term 0 is below the term 1 of log entry 3", false},
		{"vote in term 0", hardState(0, 2, 0), nil, nil,
			"vote for 2 in term 0", false},
		{"terms fall along the log", hardState(3, 1, 2), nil, concat(entries(1, 2, 1), entries(3, 4, 3), entries(5, 5, 2)),
			"log entry 5 has term 2, below the term 3 of the entry before it", false},
		{"first entry's term below the snapshot's", hardState(3, 1, 5), snapshot(5, 3, 1), entries(6, 6, 2),
			"log entry 6 has term 2, below the term 3 of the entry before it", false},
		{"entry of term 0", hardState(1, 1, 1), nil, concat(entries(1, 1, 1), entries(2, 2, 0)),
			"log entry 2 has term 0", false},
		{"snapshot of term 0", hardState(1, 1, 5), snapshot(5, 0, 1), nil,
			"snapshot at index 5 has term 0", false},
		{"snapshot configuration raft cannot restore", hardState(2, 1, 5),
			&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(5), Term: proto.Uint64(2),
				ConfState: &raftpb.ConfState{Voters: []uint64{1}, Learners: []uint64{1}}}}, nil,
			"snapshot configuration", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := raftPanicsOn(tc.hs, tc.snap, tc.ents); got != tc.raftPanics {
				t.Errorf("raft panics on this state: %v, expected %v", got, tc.raftPanics)
			}
			dir := t.TempDir()
			rawStore(t, dir, tc.hs, tc.snap, tc.ents)
			err := mustRefuse(t, dir, tc.reason, "move the data directory "+dir+" away")
			if !errors.Is(err, ErrInconsistentState) {
				t.Errorf("errors.Is(%v, ErrInconsistentState) is false", err)
			}
			t.Log(err)
		})
	}
}

// An entry stored under another index (a misdirected write, or a record
// copied between keys) is refused: the key is part of the checksum, and
// the index inside must match the key.
func TestBoltRefusesEntryUnderAnotherIndex(t *testing.T) {
	dir := t.TempDir()
	path := rawStore(t, dir, hardState(1, 1, 3), nil, entries(1, 3, 1))
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		ents := tx.Bucket(bucketEntries)
		return ents.Put(indexKey(2), append([]byte(nil), ents.Get(indexKey(3))...))
	})
	mustRefuse(t, dir, "log entry 2 damaged: checksum mismatch")

	// Same, with the checksum recomputed for the new key.
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		ents := tx.Bucket(bucketEntries)
		v := ents.Get(indexKey(3))
		return ents.Put(indexKey(2), sealRecord(indexKey(2), v[:len(v)-recordSumLen]))
	})
	mustRefuse(t, dir, "log entry at key 2 has index 3")
}

// flipBit flips bit i of every occurrence of rec in data (a record can
// also linger in pages bbolt has freed) and reports how many it found.
func flipBit(data, rec []byte, i int) int {
	n := 0
	for off := 0; ; {
		j := bytes.Index(data[off:], rec)
		if j < 0 {
			return n
		}
		data[off+j+i/8] ^= 1 << (i % 8)
		off += j + len(rec)
		n++
	}
}

// Every single-bit flip in any stored record (hard state, snapshot,
// identity, log entry: payload or checksum) is detected when the store is
// opened, and the store is refused; none reaches raft as a plausible
// different value, and none makes the open panic.
func TestBoltDetectsEveryBitFlipInAStoredRecord(t *testing.T) {
	dir := t.TempDir()
	b := openTestBolt(t, dir)
	steps := []error{
		b.SetIdentity(Identity{Node: "n1", ClusterID: "c-5eed"}),
		b.Save(hardState(7, 3, 6), concat(entries(1, 4, 2), entries(5, 9, 7)), nil, true),
		b.Compact(3, confState(1, 2, 3), nil),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, boltFileName)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	records := []struct {
		name   string
		bucket []byte
		key    []byte
		reason string
		decode func(p []byte) error // how format 1 read the payload
	}{
		{"hard state", bucketMeta, keyHardState, "hard state record damaged: checksum mismatch",
			func(p []byte) error { return proto.Unmarshal(p, &raftpb.HardState{}) }},
		{"snapshot", bucketMeta, keySnapshot, "snapshot record damaged: checksum mismatch",
			func(p []byte) error { return proto.Unmarshal(p, &raftpb.Snapshot{}) }},
		{"identity", bucketMeta, keyIdentity, "identity record damaged: checksum mismatch",
			func(p []byte) error { var id Identity; return jsonUnmarshal(p, &id) }},
		{"log entry 6", bucketEntries, indexKey(6), "log entry 6 damaged: checksum mismatch",
			func(p []byte) error { return proto.Unmarshal(p, &raftpb.Entry{}) }},
	}
	for _, rec := range records {
		t.Run(rec.name, func(t *testing.T) {
			var stored []byte
			rawView(t, path, func(tx *bolt.Tx) error {
				stored = append([]byte(nil), tx.Bucket(rec.bucket).Get(rec.key)...)
				return nil
			})
			if len(stored) <= recordSumLen {
				t.Fatalf("record %q is %d bytes", rec.key, len(stored))
			}
			plausible := 0 // flips that would have read back as another valid value
			for i := 0; i < 8*len(stored); i++ {
				data := append([]byte(nil), good...)
				if n := flipBit(data, stored, i); n == 0 {
					t.Fatalf("record %q not found in the file", rec.key)
				}
				if p := stored[:len(stored)-recordSumLen]; i < 8*len(p) {
					flipped := append([]byte(nil), p...)
					flipped[i/8] ^= 1 << (i % 8)
					if rec.decode(flipped) == nil {
						plausible++
					}
				}
				d := t.TempDir()
				if err := os.WriteFile(filepath.Join(d, boltFileName), data, 0o600); err != nil {
					t.Fatal(err)
				}
				b, err := OpenBolt(d, BoltOptions{})
				if err == nil {
					_ = b.Close()
					t.Fatalf("bit %d of the %d-byte record flipped: the store was accepted", i, len(stored))
				}
				var notStore *NotAStoreError
				if !errors.As(err, &notStore) || !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), rec.reason) {
					t.Fatalf("bit %d flipped: error %v, want a *NotAStoreError for ErrChecksumMismatch with %q", i, err, rec.reason)
				}
			}
			t.Logf("%d bit flips of the %d-byte record all refused; %d of them decode as a different valid %s (format 1 took those)",
				8*len(stored), len(stored), plausible, rec.name)
		})
	}
}

// A record damaged while the store is open (the disk changed under the
// mapping) is reported by the read that meets it, as an error, never as a
// wrong value and never as a panic.
func TestBoltReadsDetectARecordDamagedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	b := openTestBolt(t, dir)
	defer func() { _ = b.Close() }()
	ents := entries(1, 8, 1)
	ents[4].Data = []byte("entry five, damaged later")
	if err := b.Save(hardState(1, 1, 8), ents, nil, true); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, boltFileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := bytes.Index(data, ents[4].Data)
	if off < 0 || bytes.Index(data[off+1:], ents[4].Data) >= 0 {
		t.Fatal("entry 5's payload is not in the file exactly once")
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte{data[off] ^ 0x20}, int64(off)) // "entry" -> "Entry"
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	want := "log entry 5 damaged: checksum mismatch"
	if got, err := b.Entries(3, 9, math.MaxUint64); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Entries(3, 9) = %d entries, %v; want an error with %q", len(got), err, want)
	}
	if got, err := b.Entries(1, 5, math.MaxUint64); err != nil || len(got) != 4 {
		t.Errorf("Entries(1, 5) below the damage = %d entries, %v; want 4, nil", len(got), err)
	}
	if term, err := b.Term(5); !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), want) {
		t.Errorf("Term(5) = %d, %v; want an error with %q", term, err, want)
	}
	if err := b.Compact(5, nil, nil); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Compact(5) = %v; want an error with %q", err, want)
	}
	if first, _ := b.FirstIndex(); first != 1 {
		t.Errorf("FirstIndex = %d after the failed Compact, want 1", first)
	}
}

// openV1Fixture puts the format-1 store written by the previous release
// (testdata/mkv1) into a new data directory.
func openV1Fixture(t *testing.T) (dir, path string) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "v1.db.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	path = filepath.Join(dir, boltFileName)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

func storedVersion(t *testing.T, path string) string {
	var v string
	rawView(t, path, func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bucketMeta).Get(keyVersion))
		return nil
	})
	return v
}

// A store written by the previous release (format 1, no checksums) opens
// with all its state, and is upgraded in place to format 2: every record
// carries its checksum from then on.
func TestBoltUpgradesFormat1StoreInPlace(t *testing.T) {
	dir, path := openV1Fixture(t)
	if v := storedVersion(t, path); v != "1" {
		t.Fatalf("fixture has format %q, want 1", v)
	}
	fixtureEntry := func(index, term uint64) *raftpb.Entry { // as testdata/mkv1 wrote them
		e := entryOf(index, term)
		e.Data = []byte(fmt.Sprintf("entry %d of term %d", index, term))
		return e
	}
	check := func(when string, b *Bolt) {
		t.Helper()
		if b.Fresh() {
			t.Errorf("%s: an upgraded store with state is Fresh", when)
		}
		hs, cs, err := b.InitialState()
		if err != nil || !proto.Equal(hs, hardState(4, 2, 11)) || !proto.Equal(cs, raftpb.EnsureConfState(confState(1, 2, 3))) {
			t.Errorf("%s: InitialState = %v, %v, %v; want term 4, vote 2, commit 11, voters 1 2 3", when, hs, cs, err)
		}
		first, _ := b.FirstIndex()
		last, _ := b.LastIndex()
		if first != 6 || last != 12 {
			t.Errorf("%s: FirstIndex, LastIndex = %d, %d; want 6, 12", when, first, last)
		}
		if term, err := b.Term(5); term != 2 || err != nil {
			t.Errorf("%s: Term(5) at the snapshot = %d, %v; want 2", when, term, err)
		}
		want := []*raftpb.Entry{fixtureEntry(6, 2), fixtureEntry(7, 2), fixtureEntry(8, 3),
			fixtureEntry(9, 4), fixtureEntry(10, 4), fixtureEntry(11, 4), fixtureEntry(12, 4)}
		if got, err := b.Entries(6, 13, math.MaxUint64); err != nil || !sameEntries(got, want) {
			t.Errorf("%s: Entries(6, 13) = %v, %v; want %v", when, got, err, want)
		}
		if id, err := b.Identity(); err != nil || id != (Identity{Node: "n1", ClusterID: "c-0123"}) {
			t.Errorf("%s: Identity = %+v, %v; want n1 of c-0123", when, id, err)
		}
	}
	b := openTestBolt(t, dir)
	check("upgraded", b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if v := storedVersion(t, path); v != "2" {
		t.Fatalf("format %q after the upgrade, want 2", v)
	}
	records := 0
	rawView(t, path, func(tx *bolt.Tx) error {
		for _, bucket := range [][]byte{bucketMeta, bucketEntries} {
			err := tx.Bucket(bucket).ForEach(func(k, v []byte) error {
				if bytes.Equal(k, keyVersion) {
					return nil
				}
				records++
				_, err := openRecord(k, v)
				return err
			})
			if err != nil {
				return fmt.Errorf("bucket %s: %w", bucket, err)
			}
		}
		return nil
	})
	if records != 3+7 {
		t.Errorf("%d records verified after the upgrade, want 10 (hard state, snapshot, identity, 7 entries)", records)
	}
	b = openTestBolt(t, dir)
	defer func() { _ = b.Close() }()
	check("reopened", b)
	if err := b.Save(hardState(5, 0, 12), entries(13, 13, 5), nil, true); err != nil {
		t.Errorf("Save on the upgraded store: %v", err)
	}
}

// The upgrade and the checks are one transaction: a format-1 store that
// fails a check is refused and left byte for byte as it was, so the
// previous release can still open it and nothing was half upgraded.
func TestBoltFormat1StoreThatFailsACheckIsLeftUntouched(t *testing.T) {
	for _, tc := range []struct {
		name   string
		key    []byte
		value  []byte
		reason string
	}{
		{"commit beyond the log", keyHardState, mustMarshal(t, hardState(4, 2, 99)), "commit index 99 is beyond the last log index 12"},
		{"garbage hard state", keyHardState, []byte{0xff, 0xff}, "bad hard state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, path := openV1Fixture(t)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(tc.key, tc.value) })
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			mustRefuse(t, dir, tc.reason)
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Errorf("the refused format-1 file was changed (format now %q)", storedVersion(t, path))
			}
		})
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	v, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The identity recorded by SetIdentity is what Identity returns after a
// reopen, and a fresh store has none.
func TestBoltIdentitySurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	b := openTestBolt(t, dir)
	if id, err := b.Identity(); err != nil || !id.IsZero() {
		t.Fatalf("fresh store: Identity = %+v, %v; want the zero Identity", id, err)
	}
	want := Identity{Node: "n2", ClusterID: "9f0c6e1a"}
	if err := b.SetIdentity(want); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openTestBolt(t, dir)
	if id, err := b.Identity(); err != nil || id != want {
		t.Errorf("after reopen: Identity = %+v, %v; want %+v", id, err, want)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Identity(); !errors.Is(err, ErrClosed) {
		t.Errorf("Identity after Close: %v, want ErrClosed", err)
	}
}

// Save refuses, changing nothing, a state raft never produces: one that
// OpenBolt would refuse to load, or one that takes back a term, a commit
// or a vote. raft.MemoryStorage accepts all of these.
func TestBoltSaveRefusesStatesRaftNeverProduces(t *testing.T) {
	base := func(b *Bolt) error {
		return b.Save(hardState(3, 2, 4), concat(entries(1, 2, 1), entries(3, 6, 3)), nil, true)
	}
	cases := []struct {
		name   string
		do     func(s Store) error
		reason string
	}{
		{"commit beyond the entries saved with it", save(hardState(3, 2, 9), entries(7, 8, 3), nil),
			"commit index 9 is beyond the last log index 8"},
		{"commit beyond a truncated log", save(nil, entries(3, 3, 3), nil),
			"commit index 4 is beyond the last log index 3"},
		{"commit below a new snapshot", save(nil, nil, snapshot(6, 3, 1)),
			"commit index 4 is below the snapshot index 6"},
		{"entries of a term above the hard state's", save(nil, entries(7, 7, 4), nil),
			"term 3 is below the term 4 of log entry 7"},
		{"terms falling within the batch", save(hardState(5, 2, 4), concat(entries(7, 7, 5), entries(8, 8, 4)), nil),
			"log entry 8 has term 4, below the term 5 of the entry before it"},
		{"term below the last entry's", save(nil, entries(7, 7, 2), nil),
			"log entry 7 has term 2, below the term 3 of the entry before it"},
		{"term below a stored entry's it follows", save(nil, entries(5, 5, 2), nil),
			"log entry 5 has term 2, below the term 3 of the entry before it"},
		{"term goes back", save(hardState(2, 2, 4), nil, nil),
			"term 2 would replace the later term 3"},
		{"vote changed within its term", save(hardState(3, 1, 4), nil, nil),
			"vote for 1 would replace the vote for 2 in term 3"},
		{"vote withdrawn within its term", save(hardState(3, 0, 4), nil, nil),
			"vote for 0 would replace the vote for 2 in term 3"},
		{"commit goes back", save(hardState(3, 2, 3), nil, nil),
			"commit index 3 would replace the higher commit index 4"},
		{"snapshot configuration raft cannot restore", save(hardState(3, 2, 7), nil, &raftpb.Snapshot{
			Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(7), Term: proto.Uint64(3),
				ConfState: &raftpb.ConfState{Voters: []uint64{1}, Learners: []uint64{1}}}}),
			"snapshot configuration"},
		{"compact beyond the commit index", compact(5, nil),
			"beyond the commit index 4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := NewMemory()
			if err := mem.Save(hardState(3, 2, 4), concat(entries(1, 2, 1), entries(3, 6, 3)), nil, true); err != nil {
				t.Fatal(err)
			}
			if err := tc.do(mem); err != nil {
				t.Fatalf("raft.MemoryStorage refused it too (%v): the case tests nothing of Bolt's own", err)
			}
			dir := t.TempDir()
			b := openTestBolt(t, dir)
			if err := base(b); err != nil {
				t.Fatal(err)
			}
			err := tc.do(b)
			if !errors.Is(err, ErrInconsistentState) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %v, want ErrInconsistentState with %q", err, tc.reason)
			}
			t.Log(err)
			check := func(when string, b *Bolt) {
				hs, _, _ := b.InitialState()
				first, _ := b.FirstIndex()
				last, _ := b.LastIndex()
				t6, _ := b.Term(6)
				if !proto.Equal(hs, hardState(3, 2, 4)) || first != 1 || last != 6 || t6 != 3 {
					t.Errorf("%s: state changed by the refused call: %v, first %d, last %d, term(6) %d", when, hs, first, last, t6)
				}
			}
			check("after the refusal", b)
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			b = openTestBolt(t, dir)
			defer func() { _ = b.Close() }()
			check("reopened", b)
		})
	}
}

func jsonUnmarshal(p []byte, v any) error { return json.Unmarshal(p, v) }
