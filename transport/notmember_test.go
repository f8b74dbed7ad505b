package transport

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

func (r *recorder) NotMember(by uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notMemberBy = append(r.notMemberBy, by)
}

// toldNotMember returns who told the node it is no member, in order.
func (r *recorder) toldNotMember() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.notMemberBy)
}

const removedLine = "refusing a removed member: its certificate is valid, but it is no member of this cluster any more"

// A node removed from n1's set keeps a valid certificate and still lists
// n1: n1 steps none of its messages, counts them under their own reason,
// logs the first once, and the removed node is told (once) that n1 calls
// it no member. n2, which still lists n3, still takes its messages.
func TestNotMember_RemovedNodeRefusedAndTold(t *testing.T) {
	t.Parallel()
	logs := &lineCounter{}
	tn := newTestNet(t, 3, func(i int, o *Options) {
		if i == 0 {
			o.Logger = slog.New(logs)
		}
	})
	n1, n3 := tn.trs[0], tn.trs[2]
	require.NoError(t, n1.SetPeers(without(tn.peers, "n3")))
	waitFor(t, 10*time.Second, "n3 to be told it is no member of n1's set", func() bool {
		n3.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 3, 1, 1), msg(raftpb.MsgHeartbeat, 3, 2, 1)})
		return len(tn.recs[2].toldNotMember()) > 0
	})
	// More Sends: refused and counted each time, logged and told once.
	for term := uint64(2); term < 10; term++ {
		n3.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 3, 1, term)})
	}
	waitFor(t, 10*time.Second, "n1 to refuse n3's later Sends", func() bool {
		return n1.Rejections(RejectRemovedMember) >= 3
	})
	require.Equal(t, []uint64{1}, tn.recs[2].toldNotMember(), "told once, by n1 only")
	require.Zero(t, tn.recs[0].countFrom(3), "n1 stepped a removed node's message")
	require.Zero(t, n1.Rejections(RejectNotMember), "a removed member counted as a stranger")
	require.Len(t, logs.get(removedLine), 1, "the refusal logged more than once")
	require.Equal(t, "n3", logs.get(removedLine)[0]["member"])
	waitFor(t, 10*time.Second, "n2, which lists n3, to take its heartbeat", func() bool {
		n3.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 3, 2, 20)})
		return tn.recs[1].countFrom(3) > 0
	})

	// Directly, with n3's certificate and key: the answer says why.
	err := sendAs(t, tn, tn.peers[0].Addr, pairOf(t, mustRead(t, tn.files[2].Cert), mustRead(t, tn.files[2].Key)), 3, 1)
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "member n3 until it was removed")
	require.Zero(t, tn.recs[0].countFrom(3))

	// Added again, it is served again and may be told again.
	require.NoError(t, n1.SetPeers(tn.peers))
	waitFor(t, 10*time.Second, "n1 to take n3's heartbeat again", func() bool {
		n3.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 3, 1, 30)})
		return tn.recs[0].countFrom(3) > 0
	})
}

// forgedPeer answers every Send and Stream "you are not a member".
type forgedPeer struct{ pb.UnimplementedPeerServer }

func (forgedPeer) Send(context.Context, *pb.SendRequest) (*pb.SendResponse, error) {
	return nil, status.Error(codes.PermissionDenied, `caller "n1" `+notMemberText)
}

func (forgedPeer) Stream(pb.Peer_StreamServer) error {
	return status.Error(codes.PermissionDenied, `caller "n1" `+notMemberText)
}

// serveForged serves forgedPeer over mutual TLS with the certificate in
// dir (issued by the test CA for name) and returns its address.
func serveForged(t *testing.T, tn *testNet, certFile, keyFile string) string {
	t.Helper()
	creds, err := LoadCredentials(tn.files[0].CA, certFile, keyFile)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(creds.serverConfig())))
	pb.RegisterPeerServer(srv, forgedPeer{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// "You are not a member" counts only from the member it names: a server
// with a certificate from the cluster's CA that is not n2's, at the address
// n1 has for n2, gets no further than the TLS handshake, and n1 is never
// told. The same answer from a server holding n2's certificate is n2's,
// and n1 is told (the check is what tells them apart).
func TestNotMember_ForgedAnswerFromANonMemberIgnored(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, nil)
	n1 := tn.trs[0]
	tn.trs[1].Stop() // only the impostors answer for n2 here
	stranger, err := tn.ca.WriteNode(filepath.Join(t.TempDir(), "n9"), "n9", []string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)
	forged := slices.Clone(tn.peers)
	forged[1].Addr = serveForged(t, tn, stranger.Cert, stranger.Key)
	require.NoError(t, n1.SetPeers(forged))
	waitFor(t, 10*time.Second, "n1's sends to the impostor to fail", func() bool {
		n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
		return statsOf(n1, "n2").SendErrors >= 3
	})
	require.Empty(t, tn.recs[0].toldNotMember(), "a non-member's answer was taken as n2's")
	require.NotContains(t, statsOf(n1, "n2").ConfigDetail, "refuses this node")

	// The control: the same answer, from n2's own certificate.
	forged[1].Addr = serveForged(t, tn, tn.files[1].Cert, tn.files[1].Key)
	require.NoError(t, n1.SetPeers(forged))
	waitFor(t, 10*time.Second, "n1 to be told by the server holding n2's certificate", func() bool {
		n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 2)})
		return slices.Equal(tn.recs[0].toldNotMember(), []uint64{2})
	})
}
