package storage

import (
	"sync"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Memory is a Store that keeps everything in memory: state is lost when the
// process ends, so a node using it always starts Fresh (see docs/safety.md
// for the vote guard that makes that safe).
type Memory struct {
	*raft.MemoryStorage

	mu       sync.Mutex
	identity Identity
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{MemoryStorage: raft.NewMemoryStorage()} }

// Save implements Store. sync is ignored: memory is as durable as it gets.
func (m *Memory) Save(hs *raftpb.HardState, entries []*raftpb.Entry, snap *raftpb.Snapshot, _ bool) error {
	if snap != nil && !raft.IsEmptySnap(snap) {
		if err := m.ApplySnapshot(snap); err != nil {
			return err
		}
	}
	if len(entries) > 0 {
		if err := m.Append(entries); err != nil {
			return err
		}
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		return m.SetHardState(hs)
	}
	return nil
}

// Compact implements Store.
func (m *Memory) Compact(index uint64, cs *raftpb.ConfState, data []byte) error {
	if _, err := m.CreateSnapshot(index, cs, data); err != nil && err != raft.ErrSnapOutOfDate {
		return err
	}
	if err := m.MemoryStorage.Compact(index); err != nil && err != raft.ErrCompacted {
		return err
	}
	return nil
}

// Fresh implements Store: an in-memory store always starts empty.
func (m *Memory) Fresh() bool { return true }

// Close implements Store.
func (m *Memory) Close() error { return nil }

// Identity implements Store.
func (m *Memory) Identity() (Identity, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.identity, nil
}

// SetIdentity implements Store.
func (m *Memory) SetIdentity(id Identity) error {
	m.mu.Lock()
	m.identity = id
	m.mu.Unlock()
	return nil
}
