package storage

import (
	"errors"
	"fmt"
	"io"
	"log"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Whatever raft state a store holds (here: any hard state, snapshot and
// log terms, written with valid checksums), OpenBolt either refuses it with
// a *NotAStoreError or accepts a state raft starts from without a panic,
// and whose log never has falling terms. Run longer with
// go test -run '^$' -fuzz FuzzBoltAcceptsOnlyStatesRaftStartsFrom ./storage/
func FuzzBoltAcceptsOnlyStatesRaftStartsFrom(f *testing.F) {
	f.Add(uint8(2), uint8(1), uint8(5), uint8(0), uint8(0), []byte{1, 1, 2, 2, 2}) // sound
	f.Add(uint8(2), uint8(1), uint8(9), uint8(0), uint8(0), []byte{1, 1, 2, 2, 2}) // commit beyond the log
	f.Add(uint8(1), uint8(1), uint8(5), uint8(0), uint8(0), []byte{1, 1, 2, 2, 2}) // term below the log's
	f.Add(uint8(3), uint8(2), uint8(6), uint8(4), uint8(2), []byte{2, 3, 1})       // snapshot, falling terms
	f.Add(uint8(3), uint8(0), uint8(2), uint8(4), uint8(2), []byte{})              // commit below the snapshot
	f.Add(uint8(0), uint8(0), uint8(0), uint8(0), uint8(0), []byte{})              // nothing
	f.Fuzz(func(t *testing.T, term, vote, commit, snapIndex, snapTerm uint8, terms []byte) {
		if len(terms) > 32 {
			terms = terms[:32]
		}
		hs := hardState(uint64(term), uint64(vote%4), uint64(commit))
		var snap *raftpb.Snapshot
		if snapIndex > 0 {
			snap = snapshot(uint64(snapIndex), uint64(snapTerm), 1, 2, 3)
		}
		var ents []*raftpb.Entry
		for i, tm := range terms {
			ents = append(ents, entryOf(uint64(snapIndex)+1+uint64(i), uint64(tm)))
		}
		dir := t.TempDir()
		rawStore(t, dir, hs, snap, ents)
		b, err := OpenBolt(dir, BoltOptions{})
		if err != nil {
			if !errors.As(err, new(*NotAStoreError)) {
				t.Fatalf("error %T %v, want *NotAStoreError", err, err)
			}
			return
		}
		defer func() { _ = b.Close() }()
		prev := snap.GetMetadata().GetTerm()
		for i, e := range ents {
			if e.GetTerm() < prev || e.GetTerm() == 0 {
				t.Fatalf("accepted a log whose entry %d has term %d after %d", e.GetIndex(), e.GetTerm(), prev)
			}
			prev = ents[i].GetTerm()
		}
		if err := startRaft(b); err != nil {
			t.Fatalf("accepted hard state %v, snapshot %v, terms %v, but raft: %v", hs, snap.GetMetadata(), terms, err)
		}
	})
}

// startRaft starts raft on s as the election loop does and reports a panic.
func startRaft(s raft.Storage) (err error) {
	snap, _ := s.Snapshot()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	rn, err := raft.NewRawNode(&raft.Config{
		ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: s, MaxInflightMsgs: 16, MaxSizePerMsg: 1 << 20,
		Applied: snap.GetMetadata().GetIndex(),
		Logger:  &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)},
	})
	if err != nil {
		return err
	}
	if rn.HasReady() {
		rd := rn.Ready()
		_ = proto.Size(rd.HardState)
		rn.Advance(rd)
	}
	return nil
}
