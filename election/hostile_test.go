package election_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"runtime"
	"sync"
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

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/eventlog"
	tc "github.com/raftelect/raftelect/internal/testcluster"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

func dialAs(t *testing.T, files certs.Files, addr, serverName string) pb.PeerClient {
	t.Helper()
	creds, err := transport.LoadCredentials(files.CA, files.Cert, files.Key)
	require.NoError(t, err)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig(serverName))))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return pb.NewPeerClient(conn)
}

// A member whose certificate a rogue holds floods the leader with garbage,
// stale heartbeats and more concurrent RPCs than a correct peer ever sends.
// The cluster keeps its leader and the leader's memory stays bounded.
func TestFlood_FromAnAuthenticatedRogueKeepsLeaderAndBoundsMemory(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 3)
	leader := c.Nodes[l]
	victimOf := c.Nodes[(l+2)%3] // the rogue holds this member's certificate
	term := leader.Elector.Leader().Term
	quiet := map[string]bool{c.Nodes[(l+1)%3].Name: true}
	client := dialAs(t, victimOf.Certs, leader.Addr, leader.Name)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	since := eventlog.Now()

	from, to := election.NodeID(victimOf.Name), election.NodeID(leader.Name)
	garbage := []*pb.SendRequest{
		{Messages: []*raftpb.Message{{Type: raftpb.MsgProp.Enum(), From: &from, To: &to, Term: proto.Uint64(term), Entries: []*raftpb.Entry{{Data: make([]byte, 64<<10)}}}}},
		{Messages: []*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), From: &from, To: &to, Term: proto.Uint64(0)}}},
		{Messages: []*raftpb.Message{{Type: raftpb.MsgHeartbeat.Enum(), From: &from, To: &to, Term: proto.Uint64(1), Commit: proto.Uint64(1 << 50)}}},
		{Messages: []*raftpb.Message{{Type: raftpb.MsgAppResp.Enum(), From: &from, To: &to, Term: proto.Uint64(term), Index: proto.Uint64(1 << 50)}}},
		{Labels: map[string]string{"x": string(make([]byte, 1<<20))}, LabelsDigest: 1},
	}
	var sent, refused, rejected atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // the flood's length
	defer cancel()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				_, err := client.Send(ctx, garbage[(g+i)%len(garbage)])
				sent.Add(1)
				switch status.Code(err) {
				case codes.ResourceExhausted:
					refused.Add(1)
				case codes.InvalidArgument, codes.PermissionDenied:
					rejected.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("flood: %d RPCs, %d refused as excess concurrency, %d rejected as invalid; heap growth %d KiB (whole test process)",
		sent.Load(), refused.Load(), rejected.Load(), growth/1024)

	require.Empty(t, instability(c, leader.Name, term, since, quiet))
	require.True(t, leader.Elector.IsLeader())
	require.Positive(t, rejected.Load())
	require.Less(t, growth, int64(64<<20), "heap grew by %d bytes under the flood", growth)
	c.StopAll()
	c.Check()
}

// Certificates rotated in place on every node (as cert-manager does) are
// used for new connections without a restart, and the cluster keeps its
// leader throughout.
func TestCertificateRotation_WithoutRestartOrLeaderChange(t *testing.T) {
	t.Parallel()
	c, l := startCluster(t, 3)
	leader := c.Nodes[l]
	term := leader.Elector.Leader().Term
	since := eventlog.Now()
	served := func(n *tc.Node) string {
		pool := x509.NewCertPool()
		pem, err := os.ReadFile(n.Certs.CA)
		require.NoError(t, err)
		pool.AppendCertsFromPEM(pem)
		pair, err := tls.LoadX509KeyPair(n.Certs.Cert, n.Certs.Key)
		require.NoError(t, err)
		conn, err := tls.Dial("tcp", n.Addr, &tls.Config{RootCAs: pool, ServerName: n.Name, Certificates: []tls.Certificate{pair}})
		require.NoError(t, err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	old := map[string]string{}
	for _, n := range c.Nodes {
		old[n.Name] = served(n)
	}
	for _, n := range c.Nodes {
		cert, key, err := c.CA.Issue(n.Name, []string{"127.0.0.1"}, time.Hour)
		require.NoError(t, err)
		// Key first, then certificate: a reader between the two keeps the
		// old pair (it does not match), never a broken one.
		require.NoError(t, os.WriteFile(n.Certs.Key, key, 0o600))
		require.NoError(t, os.WriteFile(n.Certs.Cert, cert, 0o644))
	}
	for _, n := range c.Nodes {
		c.WaitFor(5*time.Second, n.Name+" to serve its new certificate", func() bool { return served(n) != old[n.Name] })
	}
	time.Sleep(2 * tc.ElectionTimeout) // keep running on the new certificates
	require.Empty(t, instability(c, leader.Name, term, since, nil))
	require.True(t, leader.Elector.IsLeader())
	c.StopAll()
	c.Check()
}
