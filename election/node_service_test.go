package election_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/election"
	tc "github.com/raftelect/raftelect/internal/testcluster"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

// nodeConn connects to n holding the certificate files f.
func nodeConn(t *testing.T, f certs.Files, n *tc.Node) *grpc.ClientConn {
	t.Helper()
	creds, err := transport.LoadCredentials(f.CA, f.Cert, f.Key)
	require.NoError(t, err)
	conn, err := grpc.NewClient(n.Addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig(n.Name))))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// recvWithin reads the next update of a Watch stream, failing the test if
// none comes within d.
func recvWithin(t *testing.T, w pb.Node_WatchClient, d time.Duration) *pb.WatchResponse {
	t.Helper()
	type result struct {
		r   *pb.WatchResponse
		err error
	}
	ch := make(chan result, 1)
	go func() { r, err := w.Recv(); ch <- result{r, err} }()
	select {
	case res := <-ch:
		require.NoError(t, res.err)
		return res.r
	case <-time.After(d):
		t.Fatalf("no watch update within %v", d)
		return nil
	}
}

// The Node service of a real node over real mutual TLS: a certificate of
// the cluster's CA that names no member and no operator is refused every
// RPC, streaming ones included, before any handler runs; an operator's
// certificate gets Status, Check, Watch and Transfer; the node's own
// certificate gets Status.
func TestNodeService_NonMemberRefusedForEveryRPC_OperatorServed(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 3)
	c.Tweak = func(cfg *election.Config) { cfg.Operators = []string{"ops"} }
	t.Cleanup(c.DumpEvents)
	c.Start()
	l := c.WaitLeader(10 * time.Second)
	leader := c.Nodes[l]
	issue := func(name string) certs.Files {
		f, err := c.CA.WriteNode(filepath.Join(t.TempDir(), name), name, nil, time.Hour)
		require.NoError(t, err)
		return f
	}

	stranger := nodeConn(t, issue("mallory"), leader)
	for _, m := range pb.Node_ServiceDesc.Methods {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := stranger.Invoke(ctx, "/"+pb.Node_ServiceDesc.ServiceName+"/"+m.MethodName, &emptypb.Empty{}, &emptypb.Empty{})
		cancel()
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%s: %v", m.MethodName, err)
		require.Contains(t, err.Error(), "names no member of this cluster and no configured operator")
	}
	require.NotEmpty(t, pb.Node_ServiceDesc.Streams)
	for _, sd := range pb.Node_ServiceDesc.Streams {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := stranger.NewStream(ctx, &grpc.StreamDesc{ServerStreams: sd.ServerStreams, ClientStreams: sd.ClientStreams},
			"/"+pb.Node_ServiceDesc.ServiceName+"/"+sd.StreamName)
		if err == nil {
			_ = st.SendMsg(&emptypb.Empty{})
			_ = st.CloseSend()
			err = st.RecvMsg(&emptypb.Empty{})
		}
		cancel()
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%s: %v", sd.StreamName, err)
	}

	ops := pb.NewNodeClient(nodeConn(t, issue("ops"), leader))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := ops.Status(ctx, &pb.StatusRequest{})
	require.NoError(t, err)
	require.Equal(t, leader.Name, st.GetNode().GetName())
	require.Equal(t, "leader", st.GetNode().GetRole())
	chk, err := ops.Check(ctx, &pb.CheckRequest{})
	require.NoError(t, err)
	require.True(t, chk.GetHasLeader())
	require.Equal(t, leader.Name, chk.GetLeader())
	w, err := ops.Watch(ctx, &pb.WatchRequest{})
	require.NoError(t, err)
	require.Equal(t, leader.Name, recvWithin(t, w, 10*time.Second).GetStatus().GetName(), "a watch begins with the status")
	to := c.Nodes[(l+1)%3].Name
	tr, err := ops.Transfer(ctx, &pb.TransferRequest{To: to})
	require.NoError(t, err)
	require.Equal(t, to, tr.GetLeader())

	own := pb.NewNodeClient(nodeConn(t, leader.Certs, leader))
	_, err = own.Status(ctx, &pb.StatusRequest{})
	require.NoError(t, err, "the node's own certificate (status --config beside it)")
	cancel()
	c.StopAll()
	c.Check()
}

// Watch on the leader during a transfer: the status first, then the
// leadership the node knew of (current), then, as they happen, the end of
// its lease, the new leader, and a status that says it follows. When the
// node stops, the stream ends with Unavailable.
func TestWatch_ReportsATransferAsItHappensAndEndsWhenTheNodeStops(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 3)
	leader := c.Nodes[l]
	to := c.Nodes[(l+1)%3].Name
	client := pb.NewNodeClient(nodeConn(t, c.Nodes[(l+2)%3].Certs, leader))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w, err := client.Watch(ctx, &pb.WatchRequest{})
	require.NoError(t, err)
	first := recvWithin(t, w, 10*time.Second).GetStatus()
	require.Equal(t, leader.Name, first.GetName())
	require.True(t, first.GetHoldsLease())
	cur := recvWithin(t, w, 10*time.Second).GetEvent()
	require.Equal(t, pb.LeadershipEvent_KIND_CURRENT, cur.GetKind())
	require.Equal(t, leader.Name, cur.GetLeader())
	require.Equal(t, leader.Name, cur.GetLease().GetHolder())

	require.NoError(t, leader.Elector.Transfer(ctx, to))
	// The events, as "kind leader": the old leader knows of no leader for
	// a moment (from the transfer until the new one is heard from).
	var events []string
	var newLeader, followerStatus bool
	for deadline := time.Now().Add(20 * time.Second); !followerStatus || !newLeader; {
		require.True(t, time.Now().Before(deadline), "events %v, a follower's status %v", events, followerStatus)
		u := recvWithin(t, w, 10*time.Second)
		require.Zero(t, u.GetMissed())
		if ev := u.GetEvent(); ev != nil {
			events = append(events, ev.GetKind().String()+" "+ev.GetLeader())
			if ev.GetKind() == pb.LeadershipEvent_KIND_LEADER && ev.GetLeader() == to {
				newLeader = true
				require.Greater(t, ev.GetTerm(), cur.GetTerm())
			}
		}
		if s := u.GetStatus(); s != nil && s.GetLeader() == to && s.GetRole() == "follower" && !s.GetHoldsLease() {
			followerStatus = true
		}
	}
	t.Logf("events during the transfer: %q", events)
	require.Equal(t, "KIND_STOPPED_LEADING "+leader.Name, events[0], "the lease ends first: %q", events)

	c.StopNode(l)
	for {
		_, err := w.Recv()
		if err != nil {
			require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
			break
		}
	}
	c.StopAll()
	c.Check()
}
