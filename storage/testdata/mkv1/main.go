// Command mkv1 writes a raft store in on-disk format 1 with the storage
// package of release b6ba0a5 (the last one to write format 1), for the
// upgrade test. From the repository root, with that commit's package:
//
//	mkdir /tmp/v1 && git archive b6ba0a5 go.mod go.sum storage | tar -x -C /tmp/v1
//	cp -r storage/testdata/mkv1 /tmp/v1/ && (cd /tmp/v1 && go run ./mkv1 /tmp/v1/out)
//	gzip -9n < /tmp/v1/out/raft.db > storage/testdata/v1.db.gz
//
// The output is the same byte for byte on every run (no clock, no
// randomness), so the fixture can be checked against its source.
//
// The state is what a node of a 3-node cluster holds after a few elections:
// a snapshot at 5 (voters 1, 2, 3), entries 6..12 over terms 2..4, term 4,
// vote 2, commit 11, and the identity n1 of cluster c-0123.
package main

import (
	"fmt"
	"log"
	"os"

	"github.com/raftelect/raftelect/storage"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func entry(index, term uint64) *raftpb.Entry {
	return &raftpb.Entry{
		Index: proto.Uint64(index),
		Term:  proto.Uint64(term),
		Type:  raftpb.EntryType_EntryNormal.Enum(),
		Data:  []byte(fmt.Sprintf("entry %d of term %d", index, term)),
	}
}

func hs(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

func main() {
	s, err := storage.OpenBolt(os.Args[1], storage.BoltOptions{})
	if err != nil {
		log.Fatal(err)
	}
	var ents []*raftpb.Entry
	for i := uint64(1); i <= 8; i++ {
		ents = append(ents, entry(i, 1+i/4)) // terms 1 (1..3), 2 (4..7), 3 (8)
	}
	steps := []error{
		s.SetIdentity(storage.Identity{Node: "n1", ClusterID: "c-0123"}),
		s.Save(hs(3, 1, 6), ents, nil, true),
		s.Compact(5, &raftpb.ConfState{Voters: []uint64{1, 2, 3}}),
		s.Save(hs(4, 2, 11), []*raftpb.Entry{entry(9, 4), entry(10, 4), entry(11, 4), entry(12, 4)}, nil, true),
	}
	for i, err := range steps {
		if err != nil {
			log.Fatalf("step %d: %v", i, err)
		}
	}
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}
}
