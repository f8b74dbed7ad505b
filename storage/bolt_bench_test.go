package storage

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// BenchmarkBoltSaveHardStateSync is the cost of persisting one Ready that
// carries a HardState and one small entry, with fsync: the floor under
// every append on the Ready loop.
func BenchmarkBoltSaveHardStateSync(b *testing.B) {
	s := openTestBolt(b, b.TempDir())
	defer func() { _ = s.Close() }()
	data := make([]byte, 32)
	b.ReportAllocs()
	var i uint64
	for b.Loop() {
		i++
		hs := &raftpb.HardState{Term: proto.Uint64(1), Vote: proto.Uint64(1), Commit: proto.Uint64(i - 1)}
		ent := &raftpb.Entry{Term: proto.Uint64(1), Index: proto.Uint64(i), Data: data}
		if err := s.Save(hs, []*raftpb.Entry{ent}, nil, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBoltOpen is the store's share of restart time: open an existing
// store (a snapshot and 1000 entries, i.e. a log compacted at 1000) and load
// its state. Close is included, as a restart pays it on the way down.
func BenchmarkBoltOpen(b *testing.B) {
	dir := b.TempDir()
	s := openTestBolt(b, dir)
	if err := s.Save(hardState(2, 1, 100), nil, snapshot(100, 2, 1, 2, 3), true); err != nil {
		b.Fatal(err)
	}
	for i := uint64(101); i <= 1100; i += 100 {
		if err := s.Save(hardState(3, 1, i), entries(i, i+99, 3), nil, true); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s, err := OpenBolt(dir, BoltOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
