package transport

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// BenchmarkEnqueue_Heartbeat: what the raft loop pays to hand one heartbeat
// to a peer's queue (they coalesce, so the queue never fills).
func BenchmarkEnqueue_Heartbeat(b *testing.B) {
	tr, err := New(Options{
		Self: Peer{ID: 1, Name: "n1"}, Peers: []Peer{{ID: 2, Name: "n2", Addr: "127.0.0.1:1"}},
		Insecure: true, Handler: &recorder{},
	})
	if err != nil {
		b.Fatal(err)
	}
	batch := []*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)}
	b.ReportAllocs()
	for b.Loop() {
		tr.Send(batch)
	}
}

// BenchmarkEnqueue_AppendWithDrain: one append enqueued per op while the
// queue is drained as a sender would, so every put appends.
func BenchmarkEnqueue_AppendWithDrain(b *testing.B) {
	tr, err := New(Options{
		Self: Peer{ID: 1, Name: "n1"}, Peers: []Peer{{ID: 2, Name: "n2", Addr: "127.0.0.1:1"}},
		Insecure: true, Handler: &recorder{},
	})
	if err != nil {
		b.Fatal(err)
	}
	q := tr.set().byID[2].data
	batch := []*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tr.Send(batch)
		if i++; i%64 == 0 {
			q.take()
		}
	}
}

// BenchmarkInboundSend_RPC: one Send RPC with one heartbeat, end to end over
// mutual TLS on loopback: client, server, checks and hand-off to the node.
func BenchmarkInboundSend_RPC(b *testing.B) {
	tn := newTestNet(b, 2, nil)
	client := tn.trs[0].set().byID[2].client
	own := tn.trs[0].ownConfig()
	req := &pb.SendRequest{Messages: []*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)}, LabelsDigest: tn.trs[0].digest,
		ConfigDigest: own.digest, KnownConfigDigest: tn.trs[1].ownConfig().digest}
	ctx := context.Background()
	// The first Send of a connection describes the configuration; the
	// steady state carries digests only, and is what is measured.
	req.Config = own.desc
	if _, err := client.Send(ctx, req); err != nil {
		b.Fatal(err)
	}
	req.Config = nil
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInboundSend_Handler: the server side of one Send without the
// network: identity, checks, labels, configuration agreement and the
// hand-off to the node.
func BenchmarkInboundSend_Handler(b *testing.B) {
	tr, err := New(Options{
		Self: Peer{ID: 1, Name: "n1"}, Peers: []Peer{{ID: 2, Name: "n2", Addr: "127.0.0.1:1"}},
		Insecure: true, Handler: &recorder{},
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := &peerServer{t: tr}
	// n2's configuration is n1's: the same members and timings.
	own := tr.ownConfig()
	req := &pb.SendRequest{Messages: []*raftpb.Message{msg(raftpb.MsgHeartbeat, 2, 1, 1)}, LabelsDigest: labelsDigest(nil),
		ConfigDigest: own.digest, KnownConfigDigest: own.digest, Config: own.desc}
	ctx := context.Background()
	if resp, err := srv.Send(ctx, req); err != nil || resp.GetRefused() != "" {
		b.Fatal(err, resp.GetRefused())
	}
	req.Config = nil
	b.ReportAllocs()
	for b.Loop() {
		if _, err := srv.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// countingListener counts the bytes of every connection it accepted, both
// ways: TLS records, HTTP/2 frames and gRPC messages, not TCP/IP headers.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	return countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// BenchmarkLane_Heartbeat: one heartbeat sent by a lane and answered, end
// to end over mutual TLS on loopback, as a unary Send (the transport before
// streams, and its fallback for a peer without them) and on the lane's
// stream. wire-B/op counts the bytes of the connection both ways above TCP
// (TLS records included): what one heartbeat and its answer cost on the
// link, less 2-3 TCP/IP headers.
func BenchmarkLane_Heartbeat(b *testing.B) {
	for _, mode := range []string{"unary", "stream"} {
		b.Run(mode, func(b *testing.B) {
			var wire atomic.Int64
			tn := newTestNet(b, 2, func(i int, o *Options) {
				if i == 1 {
					o.Listener = countingListener{Listener: o.Listener, n: &wire}
				}
			})
			tr, p := tn.trs[0], tn.trs[0].set().byID[2]
			batch := []*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)}
			var ls laneStream
			defer ls.close()
			send := func() {
				if mode == "unary" {
					tr.send(p, batch, time.Second)
				} else {
					tr.sendOnLane(p, &ls, p.client, false, batch, time.Second)
				}
			}
			// Warm up: the connection, the hello, the configuration
			// exchange and the stream are made once; the steady state
			// is what is measured.
			deadline := time.Now().Add(10 * time.Second)
			for tn.recs[1].count(raftpb.MsgHeartbeat) < 10 && time.Now().Before(deadline) {
				send()
			}
			if tn.recs[1].count(raftpb.MsgHeartbeat) < 10 {
				b.Fatal("no heartbeats arrive")
			}
			before := wire.Load()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				send()
			}
			b.StopTimer()
			b.ReportMetric(float64(wire.Load()-before)/float64(b.N), "wire-B/op")
			if p.failures.Load() > 0 {
				b.Fatalf("%d failed sends", p.failures.Load())
			}
		})
	}
}
