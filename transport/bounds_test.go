package transport

import (
	"context"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// No term above MaxTerm and no index beyond what a log can hold by the
// message's term reaches raft, in any field of any message type; what a
// correct peer sends at the bounds passes.
func TestInboundValidator_BoundsEveryTermAndIndex(t *testing.T) {
	v := inboundValidator{self: 1, peers: map[uint64]string{2: "n2", 3: "n3"}}
	const top = MaxTerm
	edge := MaxIndexAt(5, 3) // the highest index at term 5 in a 3-node cluster
	with := func(typ raftpb.MessageType, term uint64, mod func(*raftpb.Message)) *raftpb.Message {
		m := msg(typ, 2, 1, term)
		if mod != nil {
			mod(m)
		}
		return m
	}
	snap := func(term, index uint64, data []byte) *raftpb.Message {
		return with(raftpb.MsgSnap, term, func(m *raftpb.Message) {
			m.Snapshot = &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{
				Index: &index, Term: &term, ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}},
			}}
		})
	}
	app := func(term, index, logTerm uint64, n int) *raftpb.Message {
		return with(raftpb.MsgApp, term, func(m *raftpb.Message) {
			m.Index, m.LogTerm = &index, &logTerm
			for i := range n {
				m.Entries = append(m.Entries, &raftpb.Entry{Index: proto.Uint64(index + 1 + uint64(i)), Term: &term})
			}
		})
	}
	for _, tt := range []struct {
		name string
		m    *raftpb.Message
		ok   bool
	}{
		{"heartbeat at the term bound", with(raftpb.MsgHeartbeat, top, nil), true},
		{"heartbeat above the term bound", with(raftpb.MsgHeartbeat, top+1, nil), false},
		{"vote in term 2^64-1", with(raftpb.MsgVote, math.MaxUint64, nil), false},
		{"pre-vote in term 2^63", with(raftpb.MsgPreVote, 1<<63, nil), false},
		{"vote response in term 2^64-1", with(raftpb.MsgVoteResp, math.MaxUint64, nil), false},
		{"timeout-now in term 2^64-1", with(raftpb.MsgTimeoutNow, math.MaxUint64, nil), false},
		{"heartbeat response in term 2^64-1", with(raftpb.MsgHeartbeatResp, math.MaxUint64, nil), false},
		{"heartbeat commit at the index bound", with(raftpb.MsgHeartbeat, 5, func(m *raftpb.Message) { m.Commit = &edge }), true},
		{"heartbeat commit beyond it", with(raftpb.MsgHeartbeat, 5, func(m *raftpb.Message) { m.Commit = proto.Uint64(edge + 1) }), false},
		{"heartbeat commit 2^64-1", with(raftpb.MsgHeartbeat, 5, func(m *raftpb.Message) { m.Commit = proto.Uint64(math.MaxUint64) }), false},
		{"ack index beyond", with(raftpb.MsgAppResp, 5, func(m *raftpb.Message) { m.Index = proto.Uint64(edge + 1) }), false},
		{"ack reject hint 2^64-1", with(raftpb.MsgAppResp, 5, func(m *raftpb.Message) {
			m.Reject, m.RejectHint = proto.Bool(true), proto.Uint64(math.MaxUint64)
		}), false},
		{"ack hint term above its term", with(raftpb.MsgAppResp, 5, func(m *raftpb.Message) { m.LogTerm = proto.Uint64(6) }), false},
		{"vote with last index beyond", with(raftpb.MsgVote, 5, func(m *raftpb.Message) {
			m.Index, m.LogTerm = proto.Uint64(edge+1), proto.Uint64(4)
		}), false},
		{"append previous index beyond its term", app(5, MaxIndexAt(1, 3)+1, 1, 0), false},
		{"append entry index beyond its term", app(5, edge, 5, 1), false},
		{"append 2^64-1 previous index", app(5, math.MaxUint64, 5, 0), false},
		{"append of the cap", app(top, 0, 0, MaxEntriesPerAppend), true},
		{"append above the cap", app(top, 0, 0, MaxEntriesPerAppend+1), false},
		{"snapshot at the index bound", snap(5, edge, nil), true},
		{"snapshot beyond it", snap(5, edge+1, nil), false},
		{"snapshot at 2^64-1", snap(5, math.MaxUint64, nil), false},
		{"snapshot in term 2^64-1", snap(math.MaxUint64, 9, nil), false},
		{"snapshot with member records", snap(5, 9, []byte("x")), true},
		{"snapshot with too much data", snap(5, 9, make([]byte, MaxConfContextBytes+1)), false},
		{"transfer vote context", with(raftpb.MsgVote, 5, func(m *raftpb.Message) { m.Context = []byte("CampaignTransfer") }), true},
		{"large context", with(raftpb.MsgHeartbeat, 5, func(m *raftpb.Message) { m.Context = make([]byte, MaxContextBytes+1) }), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := v.validate(tt.m, 2)
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				t.Log(err)
			}
		})
	}
}

// maxBatch records the largest batch delivered.
type maxBatch struct {
	*recorder
	largest atomic.Int64
	total   atomic.Int64
}

func (m *maxBatch) Deliver(ctx context.Context, from uint64, msgs []*raftpb.Message, sent Stamp) (Ack, error) {
	for n := int64(len(msgs)); ; {
		if old := m.largest.Load(); n <= old || m.largest.CompareAndSwap(old, n) {
			break
		}
	}
	ack, err := m.recorder.Deliver(ctx, from, msgs, sent)
	if err == nil {
		m.total.Add(int64(len(msgs)))
	}
	return ack, err
}

// A request carries at most MaxMessagesPerSend messages: the receiver
// refuses more, and a sender whose lane holds more splits them, so all of a
// correct sender's messages arrive.
func TestSend_AtMostMaxMessagesPerRequestAndSendersSplit(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	rec := &maxBatch{recorder: &recorder{holdAll: hold}}
	tn := newTestNet(t, 2, func(i int, o *Options) {
		o.ControlQueue = 4096
		if i == 0 {
			o.Handler = rec
		}
	})
	// The receiver's cap, asked directly.
	client := tn.trs[1].set().byID[1].client
	many := make([]*raftpb.Message, MaxMessagesPerSend+1)
	for i := range many {
		many[i] = msg(raftpb.MsgAppResp, 2, 1, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client.Send(ctx, &pb.SendRequest{Messages: many})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "a request of %d messages: %v", len(many), err)

	// The sender's split: one message goes out and is held at the
	// receiver while 2,999 more queue behind it.
	const n = 3000
	tn.trs[1].Send([]*raftpb.Message{msg(raftpb.MsgAppResp, 2, 1, 1)})
	waitFor(t, 5*time.Second, "the first request to be in flight", func() bool { return tn.trs[1].set().byID[1].control.len() == 0 })
	batch := make([]*raftpb.Message, n-1)
	for i := range batch {
		batch[i] = msg(raftpb.MsgAppResp, 2, 1, 1)
	}
	tn.trs[1].Send(batch)
	require.Equal(t, n-1, tn.trs[1].set().byID[1].control.len())
	close(hold)
	waitFor(t, 10*time.Second, "every message to arrive", func() bool { return rec.total.Load() == n })
	require.LessOrEqual(t, rec.largest.Load(), int64(MaxMessagesPerSend))
	t.Logf("%d messages arrived, at most %d per request", rec.total.Load(), rec.largest.Load())
}

// gRPC caps a request at Options.MaxMessageBytes (4 MiB) both ways: our
// sender does not send a larger one, and our server does not take one from
// a client that would.
func TestSend_RequestBytesCappedBothWays(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, nil)
	big := &pb.SendRequest{Labels: map[string]string{"x": strings.Repeat("v", DefaultMaxMessageBytes)}, LabelsDigest: 1}

	// Our client refuses to send it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := tn.trs[1].set().byID[1].client.Send(ctx, big)
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "our client sent a request above the cap: %v", err)

	// A client without our limit sends it; our server refuses it.
	creds, err := LoadCredentials(tn.files[1].CA, tn.files[1].Cert, tn.files[1].Key)
	require.NoError(t, err)
	conn, err := grpc.NewClient(tn.peers[0].Addr,
		grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig("n1"))),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	require.NoError(t, err)
	defer conn.Close()
	_, err = pb.NewPeerClient(conn).Send(ctx, big)
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "our server took a request above the cap: %v", err)
	require.Zero(t, tn.recs[0].count(raftpb.MsgHeartbeat))
}

// sendChunk keeps a request under half the byte cap unless a single
// message is larger.
func TestSendChunk_SplitsByBytes(t *testing.T) {
	m := msg(raftpb.MsgHeartbeat, 2, 1, 1)
	m.Context = make([]byte, 1000)
	msgs := make([]*raftpb.Message, 100)
	for i := range msgs {
		msgs[i] = m
	}
	size := proto.Size(m)
	n := sendChunk(msgs, 20*size)
	require.Equal(t, 10, n)
	require.Equal(t, 1, sendChunk(msgs, size))
	require.Equal(t, 100, sendChunk(msgs, 1<<30))
}
