package clustercreds_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/election"
	tc "github.com/raftelect/raftelect/internal/testcluster"
	"github.com/raftelect/raftelect/k8s/clustercreds"
	pb "github.com/raftelect/raftelect/k8s/proto/clustercreds/v1"
)

// fakeFetcher serves "kubeconfig of NODE #N" and counts its calls.
type fakeFetcher struct {
	node  string
	calls atomic.Int64
	ttl   atomic.Int64 // payload lifetime, ns
	mu    sync.Mutex
	from  []string // callers served
}

func (f *fakeFetcher) Fetch(_ context.Context, caller string) (clustercreds.Payload, error) {
	n := f.calls.Add(1)
	f.mu.Lock()
	f.from = append(f.from, caller)
	f.mu.Unlock()
	return clustercreds.Payload{
		Data:    fmt.Appendf(nil, "kubeconfig of %s #%d", f.node, n),
		Expires: time.Now().Add(time.Duration(f.ttl.Load())),
	}, nil
}

type fixture struct {
	c        *tc.Cluster
	fetchers map[string]*fakeFetcher
	servers  map[string]*clustercreds.Server
}

// start runs three nodes, each serving its fake cluster's payload.
func start(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{c: tc.New(t, 3), fetchers: map[string]*fakeFetcher{}, servers: map[string]*clustercreds.Server{}}
	peers := f.c.Config(0).Peers
	for _, n := range f.c.Nodes {
		ff := &fakeFetcher{node: n.Name}
		ff.ttl.Store(int64(time.Hour))
		f.fetchers[n.Name] = ff
		f.servers[n.Name] = clustercreds.NewServer(peers, ff, clustercreds.ServerOptions{})
	}
	f.c.Tweak = func(cfg *election.Config) { cfg.RegisterServices = f.servers[cfg.Name].Register }
	f.c.Start()
	for _, n := range f.c.Nodes {
		f.servers[n.Name].Bind(n.Elector)
	}
	return f
}

func (f *fixture) client(t *testing.T, i int, cfg clustercreds.ClientConfig) *clustercreds.Client {
	t.Helper()
	n := f.c.Nodes[i]
	cfg.Peers = f.c.Config(i).Peers
	cfg.TLS = election.TLSConfig{CAFile: n.Certs.CA, CertFile: n.Certs.Cert, KeyFile: n.Certs.Key}
	if cfg.Elector == nil {
		cfg.Elector = n.Elector
	}
	cl, err := clustercreds.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func (f *fixture) calls() int64 {
	var total int64
	for _, ff := range f.fetchers {
		total += ff.calls.Load()
	}
	return total
}

// TestLeaderFetchesEveryClusterAndCaches: the leader gets each node's
// payload over the authenticated channel, once; later Gets come from the
// cache until the payload nears its expiry.
func TestLeaderFetchesEveryClusterAndCaches(t *testing.T) {
	f := start(t)
	li := f.c.WaitLeader(10 * time.Second)
	cl := f.client(t, li, clustercreds.ClientConfig{RefreshBefore: time.Minute})
	ctx := context.Background()

	all, err := cl.GetAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.c.Nodes {
		want := fmt.Sprintf("kubeconfig of %s #1", n.Name)
		if got := string(all[n.Name].Data); got != want || all[n.Name].Node != n.Name {
			t.Errorf("payload of %s: %q from %q, want %q", n.Name, got, all[n.Name].Node, want)
		}
		if got := f.fetchers[n.Name].from; len(got) != 1 || got[0] != f.c.Nodes[li].Name {
			t.Errorf("%s served %v, want the leader %s once", n.Name, got, f.c.Nodes[li].Name)
		}
	}
	if _, err := cl.GetAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.calls(); got != 3 {
		t.Errorf("fetchers called %d times after two GetAll, want 3 (cached)", got)
	}

	// A payload within RefreshBefore of its expiry is fetched again.
	other := f.c.Nodes[(li+1)%3].Name
	f.fetchers[other].ttl.Store(int64(30 * time.Second))
	cl.Forget()
	if p, _ := cl.Get(ctx, other); string(p.Data) != fmt.Sprintf("kubeconfig of %s #2", other) {
		t.Errorf("after Forget: %q", p.Data)
	}
	if p, _ := cl.Get(ctx, other); string(p.Data) != fmt.Sprintf("kubeconfig of %s #3", other) {
		t.Errorf("payload expiring within RefreshBefore was served from the cache: %q", p.Data)
	}
}

// TestOnlyTheLeaderMayFetch: a member that is not the leader is refused,
// and a Client on a node that does not hold the lease refuses to fetch.
func TestOnlyTheLeaderMayFetch(t *testing.T) {
	f := start(t)
	li := f.c.WaitLeader(10 * time.Second)
	fi := (li + 1) % 3
	ctx := context.Background()

	cl := f.client(t, fi, clustercreds.ClientConfig{})
	if _, err := cl.Get(ctx, f.c.Nodes[li].Name); !errors.Is(err, clustercreds.ErrNotLeader) {
		t.Errorf("Get on a follower: %v, want ErrNotLeader", err)
	}
	// A follower's client without the leader check still gets refused by
	// the servers.
	n := f.c.Nodes[fi]
	raw, err := clustercreds.NewClient(clustercreds.ClientConfig{
		Peers: f.c.Config(fi).Peers, TLS: election.TLSConfig{CAFile: n.Certs.CA, CertFile: n.Certs.Cert, KeyFile: n.Certs.Key},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, target := range f.c.Nodes {
		_, err := raw.Get(ctx, target.Name)
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("follower %s fetching from %s: %v, want PermissionDenied", n.Name, target.Name, err)
		}
	}
	if got := f.calls(); got != 0 {
		t.Errorf("fetchers called %d times for a follower", got)
	}
}

// TestRogueCallersAreRefused: a certificate from the cluster's CA for a
// name outside the cluster, no certificate, and a certificate from another
// CA naming a member: none reaches a fetcher.
func TestRogueCallersAreRefused(t *testing.T) {
	f := start(t)
	li := f.c.WaitLeader(10 * time.Second)
	target := f.c.Nodes[li]
	dir := t.TempDir()

	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(target.Certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	call := func(cert *tls.Certificate) error {
		cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: target.Name}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		conn, err := grpc.NewClient(target.Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = pb.NewClusterCredentialsClient(conn).Fetch(ctx, &pb.FetchRequest{})
		return err
	}
	load := func(files certs.Files) *tls.Certificate {
		pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			t.Fatal(err)
		}
		return &pair
	}

	rogue, err := f.c.CA.WriteNode(filepath.Join(dir, "rogue"), "rogue", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := call(load(rogue)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("non-member with a certificate from the CA: %v, want PermissionDenied", err)
	}
	if err := call(nil); err == nil || status.Code(err) == codes.OK {
		t.Errorf("caller without a certificate: %v, want a failure", err)
	}
	otherCA, err := certs.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := otherCA.WriteNode(filepath.Join(dir, "impostor"), target.Name, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := call(load(impostor)); err == nil {
		t.Error("a certificate from another CA naming the leader was accepted")
	}
	if got := f.calls(); got != 0 {
		t.Errorf("fetchers called %d times for rogue callers", got)
	}
	// The leader itself, with its own certificate, is served: the checks
	// above failed for the right reason.
	if err := call(load(target.Certs)); err != nil {
		t.Errorf("the leader with its own certificate: %v", err)
	}
}

// With configured identities (certificates from a PKI with its own naming,
// carrying the identity only as a CommonName), the servers authorize the
// member the certificate identifies, not a CommonName equal to the node
// name: the leader is served by every node, and a certificate carrying a
// member's node name but not its identity is refused.
func TestCustomIdentities_LeaderIsServedAndNodeNamesAreNotIdentities(t *testing.T) {
	c := tc.New(t, 3)
	identity := func(name string) string { return "raftelect-" + name + ".creds.example" }
	peers := append([]election.PeerConfig(nil), c.Config(0).Peers...)
	for i := range peers {
		peers[i].Identity = identity(peers[i].Name)
	}
	dir := t.TempDir()
	fetchers := map[string]*fakeFetcher{}
	servers := map[string]*clustercreds.Server{}
	for i, n := range c.Nodes {
		// CommonName only, no DNS SAN: the shape Go's own server-name
		// check would refuse.
		certPEM, keyPEM := issueCNOnly(t, c.CA, identity(n.Name))
		require(t, os.WriteFile(n.Certs.Key, keyPEM, 0o600))
		require(t, os.WriteFile(n.Certs.Cert, certPEM, 0o644))
		cfg := c.Config(i)
		cfg.Peers = peers
		c.SetConfig(i, cfg)
		ff := &fakeFetcher{node: n.Name}
		ff.ttl.Store(int64(time.Hour))
		fetchers[n.Name] = ff
		servers[n.Name] = clustercreds.NewServer(peers, ff, clustercreds.ServerOptions{})
	}
	c.Tweak = func(cfg *election.Config) { cfg.RegisterServices = servers[cfg.Name].Register }
	c.Start()
	for _, n := range c.Nodes {
		servers[n.Name].Bind(n.Elector)
	}
	li := c.WaitLeader(10 * time.Second)
	leader := c.Nodes[li]
	f := &fixture{c: c, fetchers: fetchers, servers: servers}
	cl := f.client(t, li, clustercreds.ClientConfig{})
	all, err := cl.GetAll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if got := fetchers[n.Name].from; len(all[n.Name].Data) == 0 || len(got) != 1 || got[0] != leader.Name {
			t.Errorf("%s served %v (payload %q), want the leader %s once", n.Name, got, all[n.Name].Data, leader.Name)
		}
	}

	// A certificate from the CA whose CommonName is the leader's node name
	// is not the leader: its identity is another name.
	byName, err := c.CA.WriteNode(filepath.Join(dir, "byname"), leader.Name, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := clustercreds.NewClient(clustercreds.ClientConfig{
		Peers: peers, TLS: election.TLSConfig{CAFile: byName.CA, CertFile: byName.Cert, KeyFile: byName.Key},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	before := f.calls()
	for _, target := range c.Nodes {
		if _, err := raw.Get(context.Background(), target.Name); status.Code(err) != codes.PermissionDenied {
			t.Errorf("a certificate named %q (not its identity) fetching from %s: %v, want PermissionDenied", leader.Name, target.Name, err)
		}
	}
	if got := f.calls(); got != before {
		t.Errorf("fetchers called %d more times for a certificate without a member identity", got-before)
	}
}

func require(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// issueCNOnly makes a certificate from ca whose only name is its CommonName.
func issueCNOnly(t *testing.T, ca *certs.CA, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	require(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
