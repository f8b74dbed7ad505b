package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// File layout of raft.db (format version 2):
//
//	bucket "raftelect": "version" -> "2", "hardstate" -> HardState,
//	                    "snapshot" -> Snapshot (metadata; data is empty
//	                    for snapshots made by Compact),
//	                    "identity" -> Identity as JSON
//	bucket "entries":   8-byte big-endian index -> Entry
//
// Values other than the version are records: the payload (protobuf raftpb
// messages, or JSON for the identity) followed by its CRC-32C (Castagnoli),
// 4 bytes big-endian, taken over the key and then the payload. bbolt checks
// only its meta pages, so a flipped bit in a term, a vote or an entry would
// otherwise be read back as a different, plausible value; with the key in
// the sum a record found under another key fails too. Every record is
// verified when the store is opened and again whenever it is read.
//
// The entries bucket always holds exactly the indexes snapshot.index+1 ..
// lastIndex, without gaps, with terms that never fall; the hard state fits
// that log (state_check.go). OpenBolt checks all of it.
//
// Format 1 (releases up to b6ba0a5) was the same without the checksums.
// OpenBolt upgrades a format-1 file in place, in the same transaction that
// checks it, so the file is either upgraded and sound or left as it was.
const (
	boltFileName    = "raft.db"
	boltFormatV1    = "1"
	boltFormatV2    = "2"
	boltLockTimeout = 100 * time.Millisecond
	recordSumLen    = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	bucketMeta    = []byte("raftelect")
	bucketEntries = []byte("entries")
	keyVersion    = []byte("version")
	keyHardState  = []byte("hardstate")
	keySnapshot   = []byte("snapshot")
	keyIdentity   = []byte("identity")
)

// ErrClosed is returned by every method of a Bolt store after Close.
var ErrClosed = errors.New("storage: raft store is closed")

// DataDirInUseError is returned by OpenBolt when another process (or another
// OpenBolt in this one) holds the lock on the store.
type DataDirInUseError struct {
	Dir  string // the data directory
	File string // the locked file inside it
}

func (e *DataDirInUseError) Error() string {
	return fmt.Sprintf("data directory %s is in use by another raftelect process (%s is locked); stop it or choose another --data-dir",
		e.Dir, filepath.Base(e.File))
}

// NotAStoreError is returned by OpenBolt when raft.db exists but is not a
// raftelect store the node can trust: a foreign or truncated file, random
// bytes, a newer format, a record whose checksum does not match, or a raft
// state that does not hold together (a commit index beyond the log, a term
// below the log's). The node must not guess at its raft state, so it refuses
// to start.
type NotAStoreError struct {
	Path   string // the file
	Reason string // what is wrong with it
	Err    error  // underlying error, if any
}

func (e *NotAStoreError) Error() string {
	reason := e.Reason
	if e.Err != nil {
		reason += ": " + e.Err.Error()
	}
	return fmt.Sprintf("%s: not a raftelect store this node can trust (%s): "+
		"to start this node fresh, move the data directory %s away (keep it for diagnosis); "+
		"the node then rejoins without its term, vote and log and refuses to vote for 2 election timeouts, "+
		"which is safe only while the rest of the cluster has a leader (see docs/safety.md on rejoining with lost state)",
		e.Path, reason, filepath.Dir(e.Path))
}

func (e *NotAStoreError) Unwrap() error { return e.Err }

// BoltOptions tunes a Bolt store.
type BoltOptions struct {
	// CompactAbove is advisory: the store never compacts by itself. The
	// caller (the election loop) calls Compact once more than CompactAbove
	// entries lie above the snapshot. Smaller keeps the file and the restart
	// time small; larger lets a lagging follower catch up from the log rather
	// than from a snapshot. Zero means the caller's default.
	CompactAbove uint64
}

// Bolt is a Store kept in one bbolt file, raft.db, inside a data directory.
//
// Every Save is a single bbolt transaction, committed with fsync whatever the
// sync argument says: bbolt's NoSync is a property of the whole DB, not of a
// transaction, and an unsynced commit that is later overtaken by a power
// loss can leave a meta page pointing at pages that never reached the disk.
// Readys that do not need a sync (only the commit index moved) are rare in
// an election cluster, so the fsync costs little.
//
// Hard state, snapshot metadata, first and last index and the last term are
// cached in memory, so raft's frequent FirstIndex/LastIndex/Term(last) calls
// do not open a transaction. Entries and other Terms are read from the file.
//
// Bolt is safe for concurrent use. Methods that would make
// raft.MemoryStorage panic (Entries beyond the last index, Compact beyond the
// last index, an Append that leaves a gap) return an error instead.
type Bolt struct {
	dir  string
	path string
	opts BoltOptions

	mu        sync.RWMutex
	db        *bolt.DB // nil once closed
	hardState *raftpb.HardState
	snap      *raftpb.Snapshot // never nil; Metadata and ConfState set
	lastIndex uint64
	lastTerm  uint64
	fresh     bool
	identity  Identity
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens (or creates) the store in dir, creating dir with mode 0700
// if it is missing. The file is locked for as long as the store is open; a
// second open, from this or any other process, fails at once with a
// *DataDirInUseError. A file that is not a healthy raftelect store gives a
// *NotAStoreError, never a panic.
func OpenBolt(dir string, opts BoltOptions) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, boltFileName)
	b := &Bolt{dir: dir, path: path, opts: opts}

	var db *bolt.DB
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		db, err = b.create()
		if errors.Is(err, os.ErrExist) {
			db, err = b.openExisting() // someone else created it meanwhile
		}
	case err != nil:
		return nil, fmt.Errorf("open raft store: %w", err)
	case fi.Size() == 0:
		// We only ever link initialised files into place, so an empty
		// raft.db was not made by us; don't let bbolt initialise it.
		return nil, &NotAStoreError{Path: path, Reason: "empty file"}
	default:
		db, err = b.openExisting()
	}
	if err != nil {
		return nil, err
	}
	if err := b.load(db); err != nil {
		_ = db.Close()
		return nil, err
	}
	b.db = db
	return b, nil
}

// create makes a new raft.db: it initialises raft.db.new and then links it
// into place, so raft.db, when it exists, always holds our buckets (a crash
// half way leaves only the .new file, which the next create discards). Link,
// unlike rename, fails if another process created raft.db first; that process
// holds the lock, and openExisting reports it.
func (b *Bolt) create() (*bolt.DB, error) {
	tmp := b.path + ".new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("create raft store: %w", err)
	}
	db, err := b.boltOpen(tmp)
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyVersion, []byte(boltFormatV2)); err != nil {
			return err
		}
		_, err = tx.CreateBucket(bucketEntries)
		return err
	})
	if err == nil {
		err = os.Link(tmp, b.path)
	}
	_ = os.Remove(tmp)
	if err == nil {
		err = syncDir(b.dir)
	}
	if err != nil {
		_ = db.Close()
		if errors.Is(err, os.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("create raft store %s: %w", b.path, err)
	}
	return db, nil
}

func (b *Bolt) openExisting() (*bolt.DB, error) {
	_ = os.Remove(b.path + ".new") // left over from a crashed create, if any
	return b.boltOpen(b.path)
}

// boltOpen opens a bbolt file and translates its errors. A truncated file
// makes bbolt touch mapped pages beyond the end of the file while opening
// (SIGBUS); with SetPanicOnFault that becomes a panic we recover from, and
// the OpenFile hook lets us release the file (and its lock) afterwards.
func (b *Bolt) boltOpen(path string) (db *bolt.DB, err error) {
	var f *os.File
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if f != nil {
				// bbolt's mapping keeps the open file alive past
				// Close, and with it the lock: drop the lock first.
				// The mapping itself stays until the process exits.
				_ = unlockFile(f)
				_ = f.Close()
			}
			db, err = nil, &NotAStoreError{Path: path, Reason: "damaged database", Err: fmt.Errorf("%v", r)}
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout: boltLockTimeout,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			file, err := os.OpenFile(name, flag, perm)
			f = file
			return file, err
		},
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, &DataDirInUseError{Dir: b.dir, File: path}
	case errors.As(err, new(*os.PathError)), errors.As(err, new(syscall.Errno)):
		// The file system said no (permissions, I/O error, no memory).
		return nil, fmt.Errorf("open raft store %s: %w", path, err)
	default:
		// ErrInvalid, ErrChecksum, ErrVersionMismatch, "file size too
		// small" and the like: bbolt found something it cannot read.
		return nil, &NotAStoreError{Path: path, Reason: "invalid bbolt database", Err: err}
	}
}

// load checks the file's structure, its records and the raft state they
// hold, upgrading a format-1 file on the way, and fills the cache.
func (b *Bolt) load(db *bolt.DB) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = b.corrupt("damaged database", fmt.Errorf("%v", r))
		}
	}()
	fi, err := os.Stat(b.path) // the same inode as db.Path(), which may be raft.db.new
	if err != nil {
		return fmt.Errorf("open raft store: %w", err)
	}
	var version string
	err = db.View(func(tx *bolt.Tx) error {
		// Check the size before touching any page: a page beyond the end
		// of the file cannot be read. The file cannot shrink while we hold
		// its lock, so one check serves the transactions below.
		if tx.Size() > fi.Size() {
			return b.corrupt(fmt.Sprintf("truncated: %d bytes, database needs %d", fi.Size(), tx.Size()), nil)
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return b.corrupt(fmt.Sprintf("bucket %q missing", bucketMeta), nil)
		}
		version = string(meta.Get(keyVersion))
		return nil
	})
	if err != nil {
		return err
	}
	switch version {
	case boltFormatV2:
		return db.View(b.loadTx)
	case boltFormatV1:
		// One transaction: if the upgraded state fails a check, the
		// rollback leaves the format-1 file exactly as it was.
		err := db.Update(func(tx *bolt.Tx) error {
			if err := b.upgradeV1(tx); err != nil {
				return err
			}
			return b.loadTx(tx)
		})
		var notStore *NotAStoreError
		if err != nil && !errors.As(err, &notStore) {
			return fmt.Errorf("upgrade raft store %s from format %s to %s: %w", b.path, boltFormatV1, boltFormatV2, err)
		}
		return err
	default:
		return b.corrupt(fmt.Sprintf("format version %q, this build reads %q and upgrades %q", version, boltFormatV2, boltFormatV1), nil)
	}
}

// upgradeV1 rewrites every record of a format-1 file with its checksum.
// Whether the payloads decode is for loadTx to say, in the same transaction.
func (b *Bolt) upgradeV1(tx *bolt.Tx) error {
	meta, ents := tx.Bucket(bucketMeta), tx.Bucket(bucketEntries)
	if ents == nil {
		return b.corrupt(fmt.Sprintf("bucket %q missing", bucketEntries), nil)
	}
	for _, key := range [][]byte{keyHardState, keySnapshot, keyIdentity} {
		if v := meta.Get(key); v != nil {
			if err := meta.Put(key, sealRecord(key, v)); err != nil {
				return err
			}
		}
	}
	// Collect first: a bucket must not change under its cursor.
	var keys, vals [][]byte
	c := ents.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
		vals = append(vals, sealRecord(k, v))
	}
	for i := range keys {
		if err := ents.Put(keys[i], vals[i]); err != nil {
			return err
		}
	}
	return meta.Put(keyVersion, []byte(boltFormatV2))
}

// loadTx reads and checks everything in a format-2 file and fills the
// cache. Every record's checksum is verified, every entry's index and term
// read, and the hard state checked against the log, so that what raft is
// given at start is what was saved.
func (b *Bolt) loadTx(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if v := string(meta.Get(keyVersion)); v != boltFormatV2 {
		return b.corrupt(fmt.Sprintf("format version %q, this build reads %q", v, boltFormatV2), nil)
	}
	ents := tx.Bucket(bucketEntries)
	if ents == nil {
		return b.corrupt(fmt.Sprintf("bucket %q missing", bucketEntries), nil)
	}
	if v := meta.Get(keyHardState); v != nil {
		p, err := openRecord(keyHardState, v)
		if err != nil {
			return b.corrupt("hard state record damaged", err)
		}
		hs := &raftpb.HardState{}
		if err := proto.Unmarshal(p, hs); err != nil {
			return b.corrupt("bad hard state", err)
		}
		b.hardState = hs
	}
	if v := meta.Get(keyIdentity); v != nil {
		p, err := openRecord(keyIdentity, v)
		if err != nil {
			return b.corrupt("identity record damaged", err)
		}
		if err := json.Unmarshal(p, &b.identity); err != nil {
			return b.corrupt("bad identity record", err)
		}
	}
	b.snap = &raftpb.Snapshot{}
	if v := meta.Get(keySnapshot); v != nil {
		p, err := openRecord(keySnapshot, v)
		if err != nil {
			return b.corrupt("snapshot record damaged", err)
		}
		if err := proto.Unmarshal(p, b.snap); err != nil {
			return b.corrupt("bad snapshot", err)
		}
	}
	b.snap = raftpb.EnsureSnapshot(b.snap)
	b.lastIndex = b.snap.GetMetadata().GetIndex()
	b.lastTerm = b.snap.GetMetadata().GetTerm()

	// The log must run from snapshot+1 without gaps, each entry under its
	// own index, with terms that never fall; raft would panic on a gap and
	// silently trust the rest, so say so now and clearly.
	first := b.lastIndex + 1
	next := first
	c := ents.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 || binary.BigEndian.Uint64(k) != next {
			return b.corrupt(fmt.Sprintf("log entry key %x where index %d was expected", k, next), nil)
		}
		p, err := openRecord(k, v)
		if err != nil {
			return b.corrupt(fmt.Sprintf("log entry %d damaged", next), err)
		}
		index, term, err := entryIndexTerm(p)
		if err != nil {
			return b.corrupt(fmt.Sprintf("bad log entry %d", next), err)
		}
		if index != next {
			return b.corrupt(fmt.Sprintf("log entry at key %d has index %d", next, index), nil)
		}
		if err := checkEntryTerm(index, term, b.lastTerm); err != nil {
			return b.corrupt("inconsistent raft log", err)
		}
		b.lastIndex, b.lastTerm = index, term
		next++
	}
	if err := checkState(b.hardState, b.snap.GetMetadata(), b.lastIndex, b.lastTerm); err != nil {
		return b.corrupt("hard state does not fit the log", err)
	}
	if err := checkConfState(b.snap.GetMetadata().GetConfState(), b.lastIndex); err != nil {
		return b.corrupt("bad snapshot", err)
	}
	b.fresh = b.hardState == nil && next == first && raft.IsEmptySnap(b.snap)
	return nil
}

func (b *Bolt) corrupt(reason string, err error) error {
	return &NotAStoreError{Path: b.path, Reason: reason, Err: err}
}

// Dir returns the data directory.
func (b *Bolt) Dir() string { return b.dir }

// Options returns the options the store was opened with.
func (b *Bolt) Options() BoltOptions { return b.opts }

// Fresh implements Store.
func (b *Bolt) Fresh() bool { return b.fresh }

// Close implements Store. Calling it again returns nil.
func (b *Bolt) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return nil
	}
	err := b.db.Close()
	b.db = nil
	return err
}

// InitialState implements raft.Storage.
func (b *Bolt) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return nil, nil, ErrClosed
	}
	var hs *raftpb.HardState
	if b.hardState != nil {
		hs = proto.Clone(b.hardState).(*raftpb.HardState)
	}
	cs := proto.Clone(b.snap.GetMetadata().GetConfState()).(*raftpb.ConfState)
	return hs, raftpb.EnsureConfState(cs), nil
}

// FirstIndex implements raft.Storage.
func (b *Bolt) FirstIndex() (uint64, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return 0, ErrClosed
	}
	return b.snap.GetMetadata().GetIndex() + 1, nil
}

// LastIndex implements raft.Storage.
func (b *Bolt) LastIndex() (uint64, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return 0, ErrClosed
	}
	return b.lastIndex, nil
}

// Snapshot implements raft.Storage.
func (b *Bolt) Snapshot() (*raftpb.Snapshot, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return nil, ErrClosed
	}
	return proto.Clone(b.snap).(*raftpb.Snapshot), nil
}

// Term implements raft.Storage.
func (b *Bolt) Term(i uint64) (uint64, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return 0, ErrClosed
	}
	snapIndex := b.snap.GetMetadata().GetIndex()
	switch {
	case i < snapIndex:
		return 0, raft.ErrCompacted
	case i == snapIndex:
		return b.snap.GetMetadata().GetTerm(), nil
	case i > b.lastIndex:
		return 0, raft.ErrUnavailable
	case i == b.lastIndex:
		return b.lastTerm, nil
	}
	var term uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		term, err = b.entryTerm(tx.Bucket(bucketEntries), i)
		return err
	})
	return term, err
}

// entryTerm reads the term of the stored entry i, which must exist,
// verifying its record.
func (b *Bolt) entryTerm(ents *bolt.Bucket, i uint64) (uint64, error) {
	key := indexKey(i)
	v := ents.Get(key)
	if v == nil {
		return 0, b.corrupt(fmt.Sprintf("log entry %d missing", i), nil)
	}
	p, err := openRecord(key, v)
	if err != nil {
		return 0, b.corrupt(fmt.Sprintf("log entry %d damaged", i), err)
	}
	index, term, err := entryIndexTerm(p)
	if err != nil {
		return 0, b.corrupt(fmt.Sprintf("bad log entry %d", i), err)
	}
	if index != i {
		return 0, b.corrupt(fmt.Sprintf("log entry at key %d has index %d", i, index), nil)
	}
	return term, nil
}

// Entries implements raft.Storage.
func (b *Bolt) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return nil, ErrClosed
	}
	snapIndex := b.snap.GetMetadata().GetIndex()
	if lo <= snapIndex {
		return nil, raft.ErrCompacted
	}
	if hi > b.lastIndex+1 || lo > hi {
		return nil, fmt.Errorf("storage: entries [%d, %d) out of bounds (last index %d)", lo, hi, b.lastIndex)
	}
	if b.lastIndex == snapIndex {
		return nil, raft.ErrUnavailable
	}
	// Like raft's limitSize: the first entry always, then as many as fit.
	ents := make([]*raftpb.Entry, 0, min(hi-lo, 64))
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		var size uint64
		next := lo
		for k, v := c.Seek(indexKey(lo)); next < hi; k, v = c.Next() {
			if k == nil || binary.BigEndian.Uint64(k) != next {
				return b.corrupt(fmt.Sprintf("log entry %d missing", next), nil)
			}
			p, err := openRecord(k, v)
			if err != nil {
				return b.corrupt(fmt.Sprintf("log entry %d damaged", next), err)
			}
			size += uint64(len(p)) // == proto.Size of the entry
			if len(ents) > 0 && size > maxSize {
				return nil
			}
			e := &raftpb.Entry{}
			if err := proto.Unmarshal(p, e); err != nil {
				return b.corrupt(fmt.Sprintf("bad log entry %d", next), err)
			}
			if e.GetIndex() != next {
				return b.corrupt(fmt.Sprintf("log entry at key %d has index %d", next, e.GetIndex()), nil)
			}
			ents = append(ents, e)
			next++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ents, nil
}

// Save implements Store: snapshot, entries and hard state in one
// transaction, with the semantics of raft.MemoryStorage's ApplySnapshot,
// Append and SetHardState. The commit is always fsynced (see Bolt).
//
// Unlike MemoryStorage, Save refuses (with an error, changing nothing) a
// state raft never produces and OpenBolt would refuse to load: a commit
// index outside the log, a term below the log's, falling terms along the
// log, a term or commit index that goes back, a vote changed within its
// term. A bug that got that far must stop the node, not reach the disk.
func (b *Bolt) Save(hs *raftpb.HardState, entries []*raftpb.Entry, snap *raftpb.Snapshot, _ bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return ErrClosed
	}
	// The state after this Save; the cache takes it only if the commit works.
	newSnap := b.snap
	lastIndex, lastTerm := b.lastIndex, b.lastTerm
	newHS := b.hardState

	var snapVal []byte
	if snap != nil && !raft.IsEmptySnap(snap) {
		cur := b.snap.GetMetadata().GetIndex()
		if cur != 0 && cur >= snap.GetMetadata().GetIndex() {
			return raft.ErrSnapOutOfDate
		}
		newSnap = raftpb.EnsureSnapshot(proto.Clone(snap).(*raftpb.Snapshot))
		var err error
		if snapVal, err = marshalRecord(keySnapshot, newSnap); err != nil {
			return fmt.Errorf("storage: encode snapshot: %w", err)
		}
		lastIndex, lastTerm = newSnap.GetMetadata().GetIndex(), newSnap.GetMetadata().GetTerm()
	}
	first := newSnap.GetMetadata().GetIndex() + 1
	lastBeforeAppend := lastIndex

	// Append: drop what the snapshot already covers, check for a gap.
	var keys, vals [][]byte
	if len(entries) > 0 {
		e0 := entries[0].GetIndex()
		if e0+uint64(len(entries))-1 >= first {
			if first > e0 {
				entries = entries[first-e0:]
				e0 = first
			}
			if e0 > lastIndex+1 {
				return fmt.Errorf("storage: missing log entry [last: %d, append at: %d]", lastIndex, e0)
			}
			keyBuf := make([]byte, 8*len(entries))
			keys = make([][]byte, len(entries))
			vals = make([][]byte, len(entries))
			for i, e := range entries {
				if e.GetIndex() != e0+uint64(i) {
					return fmt.Errorf("storage: entries not consecutive: index %d at position %d after %d", e.GetIndex(), i, e0)
				}
				if i > 0 {
					if err := checkEntryTerm(e.GetIndex(), e.GetTerm(), entries[i-1].GetTerm()); err != nil {
						return refuseSave(err)
					}
				}
				keys[i] = keyBuf[8*i : 8*i+8 : 8*i+8]
				binary.BigEndian.PutUint64(keys[i], e.GetIndex())
				v, err := marshalRecord(keys[i], e)
				if err != nil {
					return fmt.Errorf("storage: encode entry %d: %w", e.GetIndex(), err)
				}
				vals[i] = v
			}
			lastIndex, lastTerm = entries[len(entries)-1].GetIndex(), entries[len(entries)-1].GetTerm()
		}
	}
	var hsVal []byte
	if hs != nil && !raft.IsEmptyHardState(hs) {
		newHS = proto.Clone(hs).(*raftpb.HardState)
		if err := checkTransition(b.hardState, newHS); err != nil {
			return refuseSave(err)
		}
		var err error
		if hsVal, err = marshalRecord(keyHardState, newHS); err != nil {
			return fmt.Errorf("storage: encode hard state: %w", err)
		}
	}
	if snapVal == nil && keys == nil && hsVal == nil {
		return nil
	}
	if err := checkState(newHS, newSnap.GetMetadata(), lastIndex, lastTerm); err != nil {
		return refuseSave(err)
	}
	if snapVal != nil {
		if err := checkConfState(newSnap.GetMetadata().GetConfState(), lastIndex); err != nil {
			return refuseSave(err)
		}
	}

	err := b.db.Update(func(tx *bolt.Tx) error {
		meta, ents := tx.Bucket(bucketMeta), tx.Bucket(bucketEntries)
		if snapVal != nil {
			if err := meta.Put(keySnapshot, snapVal); err != nil {
				return err
			}
			// Like ApplySnapshot: the snapshot replaces the whole log.
			if err := tx.DeleteBucket(bucketEntries); err != nil {
				return err
			}
			var err error
			if ents, err = tx.CreateBucket(bucketEntries); err != nil {
				return err
			}
		}
		if len(keys) > 0 {
			// The first new entry must not fall below the term of the
			// one it follows (the snapshot's, the last one's, or, when
			// it replaces a suffix, the stored one's).
			e0, prevTerm := entries[0].GetIndex(), newSnap.GetMetadata().GetTerm()
			if prev := e0 - 1; prev > newSnap.GetMetadata().GetIndex() {
				if prev == b.lastIndex {
					prevTerm = b.lastTerm
				} else {
					var err error
					if prevTerm, err = b.entryTerm(ents, prev); err != nil {
						return err
					}
				}
			}
			if err := checkEntryTerm(e0, entries[0].GetTerm(), prevTerm); err != nil {
				return err // refuseSave, below
			}
			for i := range keys {
				if err := ents.Put(keys[i], vals[i]); err != nil {
					return err
				}
			}
			// Replace a conflicting suffix: nothing may follow the new last.
			if lastIndex < lastBeforeAppend {
				if err := deleteFrom(ents, lastIndex+1); err != nil {
					return err
				}
			}
		}
		if hsVal != nil {
			return meta.Put(keyHardState, hsVal)
		}
		return nil
	})
	if errors.As(err, new(*inconsistentStateError)) {
		return refuseSave(err)
	}
	if err != nil {
		return fmt.Errorf("storage: save to %s: %w", b.path, err)
	}
	b.snap, b.lastIndex, b.lastTerm, b.hardState = newSnap, lastIndex, lastTerm, newHS
	return nil
}

// refuseSave is Save's error for a state that must not be persisted.
func refuseSave(err error) error {
	return fmt.Errorf("storage: refusing to save a raft state raft never produces (%w); nothing was written: this is a bug, please report it", err)
}

// Compact implements Store: a snapshot at index with the given ConfState
// (the previous one if cs is nil) and data, and the log up to index dropped.
// Compacting at or below the current snapshot does nothing.
func (b *Bolt) Compact(index uint64, cs *raftpb.ConfState, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return ErrClosed
	}
	snapIndex := b.snap.GetMetadata().GetIndex()
	if index <= snapIndex {
		return nil
	}
	if index > b.lastIndex {
		return fmt.Errorf("storage: compact %d is out of bound lastindex(%d)", index, b.lastIndex)
	}
	if commit := b.hardState.GetCommit(); index > commit {
		// raft compacts only applied, so committed, entries; a snapshot
		// above the commit index would make the store unloadable.
		return fmt.Errorf("storage: refusing to compact at %d, beyond the commit index %d: only committed entries may be compacted: %w",
			index, commit, ErrInconsistentState)
	}
	newSnap := proto.Clone(b.snap).(*raftpb.Snapshot)
	newSnap.Data = bytes.Clone(data)
	newSnap.Metadata.Index = proto.Uint64(index)
	if cs != nil {
		newSnap.Metadata.ConfState = raftpb.EnsureConfState(proto.Clone(cs).(*raftpb.ConfState))
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		ents := tx.Bucket(bucketEntries)
		term, err := b.entryTerm(ents, index)
		if err != nil {
			return err
		}
		newSnap.Metadata.Term = proto.Uint64(term)
		val, err := marshalRecord(keySnapshot, newSnap)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Put(keySnapshot, val); err != nil {
			return err
		}
		c := ents.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= index; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: compact %s: %w", b.path, err)
	}
	b.snap = newSnap
	return nil
}

// deleteFrom deletes every entry with index >= from. Seeking again after
// each delete avoids relying on cursor position after Delete.
func deleteFrom(ents *bolt.Bucket, from uint64) error {
	key := indexKey(from)
	c := ents.Cursor()
	for k, _ := c.Seek(key); k != nil; k, _ = c.Seek(key) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func indexKey(i uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), i)
}

// entryIndexTerm reads Entry.Index (field 3) and Entry.Term (field 2) from
// an encoded entry without decoding the rest, checking that the rest is
// well formed; the last occurrence wins, as in proto.Unmarshal.
func entryIndexTerm(v []byte) (index, term uint64, err error) {
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return 0, 0, protowire.ParseError(n)
		}
		v = v[n:]
		if (num == 2 || num == 3) && typ == protowire.VarintType {
			x, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return 0, 0, protowire.ParseError(n)
			}
			if num == 2 {
				term = x
			} else {
				index = x
			}
			v = v[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, v)
		if n < 0 {
			return 0, 0, protowire.ParseError(n)
		}
		v = v[n:]
	}
	return index, term, nil
}

// sealRecord returns payload followed by its checksum (see the file
// layout), in a new slice.
func sealRecord(key, payload []byte) []byte {
	v := make([]byte, len(payload), len(payload)+recordSumLen)
	copy(v, payload)
	return binary.BigEndian.AppendUint32(v, recordSum(key, payload))
}

// marshalRecord encodes m as the record stored under key.
func marshalRecord(key []byte, m proto.Message) ([]byte, error) {
	v, err := proto.MarshalOptions{}.MarshalAppend(make([]byte, 0, proto.Size(m)+recordSumLen), m)
	if err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint32(v, recordSum(key, v)), nil
}

func recordSum(key, payload []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, key), castagnoli, payload)
}

// ErrChecksumMismatch is the cause (test with errors.Is) of a refusal by
// OpenBolt, or of a failed read, when a stored record is not what was
// written: its checksum does not match, or it has none.
var ErrChecksumMismatch = errors.New("storage: record checksum mismatch")

// checksumError says that a record is not what was written.
type checksumError struct {
	stored, computed uint32
	length           int
	tooShort         bool
}

func (e *checksumError) Error() string {
	if e.tooShort {
		return fmt.Sprintf("checksum missing: record of %d bytes is too short to hold one", e.length)
	}
	return fmt.Sprintf("checksum mismatch: stored %08x, computed %08x; the record changed on disk after it was written", e.stored, e.computed)
}

func (e *checksumError) Unwrap() error { return ErrChecksumMismatch }

// openRecord verifies a record stored under key and returns its payload,
// which aliases v.
func openRecord(key, v []byte) ([]byte, error) {
	if len(v) < recordSumLen {
		return nil, &checksumError{length: len(v), tooShort: true}
	}
	p := v[:len(v)-recordSumLen]
	stored, computed := binary.BigEndian.Uint32(v[len(p):]), recordSum(key, p)
	if stored != computed {
		return nil, &checksumError{stored: stored, computed: computed}
	}
	return p, nil
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Identity implements Store.
func (b *Bolt) Identity() (Identity, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return Identity{}, ErrClosed
	}
	return b.identity, nil
}

// SetIdentity implements Store: one fsynced transaction.
func (b *Bolt) SetIdentity(id Identity) error {
	p, err := json.Marshal(id)
	if err != nil {
		return err
	}
	v := sealRecord(keyIdentity, p)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return ErrClosed
	}
	if err := b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyIdentity, v)
	}); err != nil {
		return fmt.Errorf("record store identity: %w", err)
	}
	b.identity = id
	return nil
}
