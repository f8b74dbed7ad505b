package core

import (
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/storage"
)

func newTestNode(t *testing.T, names ...string) *Node {
	t.Helper()
	return newTestNodeOn(t, storage.NewMemory(), names...)
}

// newTestNodeOn starts names[0], of a cluster of names, on store.
func newTestNodeOn(t *testing.T, store storage.Store, names ...string) *Node {
	t.Helper()
	m := map[uint64]string{}
	for _, n := range names {
		m[NodeID(n)] = n
	}
	n, err := New(Config{ID: NodeID(names[0]), Name: names[0], Names: m, Storage: store,
		Tick: 100 * time.Millisecond, ElectionTicks: 10, DriftMargin: 0.1, Rand: rand.New(rand.NewPCG(1, 2)),
		Logger: slog.New(slog.DiscardHandler)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Advance(time.Now()); err != nil { // apply the bootstrap
		t.Fatal(err)
	}
	return n
}

// A committed configuration change that raft cannot apply (only a forged
// one is like that) is skipped, not a crash that would repeat at every
// restart; so is a snapshot whose member records do not parse.
func TestMembership_ChangesRaftCannotApplyAreSkipped(t *testing.T) {
	n := newTestNode(t, "n1", "n2", "n3")
	if got := len(n.Members()); got != 3 {
		t.Fatalf("%d members after bootstrap, want 3", got)
	}
	var changes []*raftpb.ConfChangeSingle
	for _, name := range []string{"n1", "n2", "n3"} {
		changes = append(changes, &raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(NodeID(name))})
	}
	// Removing every voter: raft panics ("removed all voters").
	n.applyConfChange(&raftpb.ConfChangeV2{Changes: changes}, 9)
	if got := len(n.Members()); got != 3 {
		t.Fatalf("%d members after a change raft refused, want the 3 it had", got)
	}
	// A record that does not parse names no one; the members stay.
	if err := n.applySnapshotData(time.Now(), []byte(snapshotMagic+"{not json")); err != nil {
		t.Fatal(err)
	}
	if got := len(n.Members()); got != 3 {
		t.Fatalf("%d members after an unreadable snapshot record", got)
	}
}
