package election_test

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/raftelect/raftelect/election"
	tc "github.com/raftelect/raftelect/internal/testcluster"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

// logSink collects every node's log, safe for concurrent writers.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logSink) snapshot() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

var (
	msgRE = regexp.MustCompile(`(?m)^time=\S+ level=(\S+) msg=("(?:[^"\\]|\\.)*"|\S+)`)
	// numRE folds the numbers (node IDs in hex, indexes, ticks) out of a
	// message: raft formats its lines, and its kind is the format string.
	numRE = regexp.MustCompile(`[0-9a-f]{8,}|[0-9]+`)
)

// rejectCounter is an election.Metrics that counts rejections by reason.
type rejectCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *rejectCounter) Sent(string, string)               {}
func (r *rejectCounter) Received(string, string)           {}
func (r *rejectCounter) Dropped(string, string)            {}
func (r *rejectCounter) SendFailed(string, error)          {}
func (r *rejectCounter) SendLatency(string, time.Duration) {}
func (r *rejectCounter) Rejected(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[reason]++
}
func (r *rejectCounter) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

// A flood of rejected messages from a holder of a member's certificate
// writes a bounded amount of log: each kind of line gets its budget (a
// burst, then one per interval), so the bytes written grow with the kinds
// of lines and the flood's length, not with the number of messages.
// (Outside review: 1.76 GB of log in 30 s.)
func TestLogVolume_RejectedMessageFloodIsBoundedPerKind(t *testing.T) {
	t.Parallel()
	var sink logSink
	rejects := &rejectCounter{n: map[string]int{}}
	c := tc.New(t, 3)
	c.Tweak = func(cfg *election.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
		cfg.Metrics = rejects
	}
	t.Cleanup(c.DumpEvents)
	c.Start()
	l := c.WaitLeader(10 * time.Second)
	leader := c.Nodes[l]
	rogueOf := c.Nodes[(l+1)%3]
	term := leader.Elector.Leader().Term
	client := dialAs(t, rogueOf.Certs, leader.Addr, leader.Name)
	before := len(sink.snapshot())

	from, to := election.NodeID(rogueOf.Name), election.NodeID(leader.Name)
	other := election.NodeID(c.Nodes[(l+2)%3].Name)
	m := func(typ raftpb.MessageType, f func(*raftpb.Message)) *pb.SendRequest {
		msg := &raftpb.Message{Type: typ.Enum(), From: proto.Uint64(from), To: proto.Uint64(to), Term: proto.Uint64(term)}
		if f != nil {
			f(msg)
		}
		return &pb.SendRequest{Messages: []*raftpb.Message{msg}}
	}
	// Rejected in the transport, on the raft loop (step guard), and by
	// raft itself, each with numbers that change from message to message.
	flood := []func(i uint64) *pb.SendRequest{
		func(i uint64) *pb.SendRequest { return m(raftpb.MsgProp, nil) },
		func(i uint64) *pb.SendRequest {
			return m(raftpb.MsgHeartbeat, func(x *raftpb.Message) { x.Term = proto.Uint64(0) })
		},
		func(i uint64) *pb.SendRequest {
			return m(raftpb.MsgHeartbeat, func(x *raftpb.Message) { x.From = proto.Uint64(other) })
		},
		func(i uint64) *pb.SendRequest {
			return m(raftpb.MsgHeartbeat, func(x *raftpb.Message) { x.To = proto.Uint64(i) })
		},
		func(i uint64) *pb.SendRequest {
			return m(raftpb.MsgAppResp, func(x *raftpb.Message) { x.Index = proto.Uint64(1<<50 + i) })
		},
		func(i uint64) *pb.SendRequest {
			return m(raftpb.MsgTimeoutNow, nil)
		},
		func(i uint64) *pb.SendRequest {
			return m(raftpb.MsgVote, func(x *raftpb.Message) { x.Term = proto.Uint64(term + 1 + i%3); x.Index = proto.Uint64(i) })
		},
		func(i uint64) *pb.SendRequest {
			return m(raftpb.MsgHeartbeat, func(x *raftpb.Message) { x.Term = proto.Uint64(1) })
		},
	}
	// Flood until there are enough messages to tell a bound from none,
	// however slow this machine is today: at least 3 s and 5,000 Sends, at
	// most 30 s. Three connections (with the member's own, the most one
	// identity gets from one address), three Sends in flight on each
	// (within their four slots, so that most Sends reach the checks).
	clients := []pb.PeerClient{client}
	for range 2 {
		clients = append(clients, dialAs(t, rogueOf.Certs, leader.Addr, leader.Name))
	}
	var sent, refused, busy atomic.Int64
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := range 3 * len(clients) {
		cl := clients[g%len(clients)]
		wg.Go(func() {
			for i := uint64(g); ctx.Err() == nil; i += 9 {
				if sent.Load() >= 5000 && time.Since(start) >= 3*time.Second {
					cancel()
					return
				}
				_, err := cl.Send(ctx, flood[i%uint64(len(flood))](i))
				if ctx.Err() != nil {
					return
				}
				sent.Add(1)
				switch status.Code(err) {
				case codes.OK:
				case codes.ResourceExhausted, codes.Unavailable:
					busy.Add(1)
				default:
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	length := time.Since(start)
	out := sink.snapshot()[before:]

	lines := map[string]int{}
	total := 0
	for _, mm := range msgRE.FindAllSubmatch(out, -1) {
		lines[string(mm[1])+" "+numRE.ReplaceAllString(string(mm[2]), "#")]++
		total++
	}
	perKind := 10 + int(length/(6*time.Second)) + 1 // election's logBurst + refills + one in flight
	const maxLine = 1024
	t.Logf("flood: %d Sends in %v (%d rejected, %d refused as busy or unconnected); the cluster's log grew %d bytes in %d lines of %d kinds (bound %d bytes: %d per kind)",
		sent.Load(), length, refused.Load(), busy.Load(), len(out), total, len(lines), len(lines)*perKind*maxLine, perKind)
	for k, n := range lines {
		t.Logf("  %4d  %s", n, k)
		require.LessOrEqual(t, n, 3*perKind, "lines of kind %s (a kind's budget on each of 3 nodes)", k)
	}
	require.Greater(t, sent.Load(), int64(4*3*len(lines)*perKind), "the flood was large enough to tell a bound from none")
	require.LessOrEqual(t, len(out), 3*len(lines)*perKind*maxLine, "log bytes: at most a budget of lines per kind")
	// What was not logged was counted, by reason.
	t.Logf("rejections counted: invalid_message %d, from_mismatch %d, state_check %d",
		rejects.get(transport.RejectInvalidMessage), rejects.get(transport.RejectFromMismatch), rejects.get(transport.RejectStateCheck))
	for _, r := range []string{transport.RejectInvalidMessage, transport.RejectFromMismatch, transport.RejectStateCheck} {
		require.Positive(t, rejects.get(r), "rejections counted as %s", r)
	}
	c.StopAll()
	c.Check()
}
