package storage

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// A Save with nothing to persist (the Ready of a heartbeat or an
// acknowledgement that changed no term, vote, commit or entry) writes
// nothing: no bbolt transaction, no fsync. So the core's synchronous calls
// cost the disk only when raft's state changes (docs/architecture.md).
func TestBoltSave_NothingToPersistWritesNothing(t *testing.T) {
	b, err := OpenBolt(t.TempDir(), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Save(hardState(2, 1, 0), entries(1, 1, 2), nil, true); err != nil {
		t.Fatal(err)
	}
	writes := func() int64 { s := b.db.Stats(); return s.TxStats.GetWrite() }
	before := writes()
	if before == 0 {
		t.Fatal("the first Save wrote nothing: the count does not see writes")
	}
	for range 100 {
		if err := b.Save(nil, nil, nil, false); err != nil {
			t.Fatal(err)
		}
		if err := b.Save(&raftpb.HardState{}, []*raftpb.Entry{}, &raftpb.Snapshot{}, true); err != nil {
			t.Fatal(err)
		}
	}
	if after := writes(); after != before {
		t.Fatalf("200 Saves with nothing to persist wrote %d pages", after-before)
	}
	if err := b.Save(hardState(3, 1, 1), nil, nil, true); err != nil {
		t.Fatal(err)
	}
	if writes() == before {
		t.Fatal("a changed hard state wrote nothing")
	}
}
