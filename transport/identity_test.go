package transport

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
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/raftelect/raftelect/certs"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// leafSpec describes a certificate made directly with crypto/x509, for the
// shapes `certs` never issues.
type leafSpec struct {
	cn        string
	dns       []string
	notBefore time.Time // zero: a minute ago
	notAfter  time.Time // zero: in an hour
	key       *ecdsa.PrivateKey
}

// issue signs spec with ca and returns the certificate and key PEM.
func issue(t testing.TB, ca *certs.CA, spec leafSpec) (certPEM, keyPEM []byte, cert *x509.Certificate) {
	t.Helper()
	key := spec.key
	if key == nil {
		var err error
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
	}
	if spec.notBefore.IsZero() {
		spec.notBefore = time.Now().Add(-time.Minute)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = time.Now().Add(time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: spec.cn},
		DNSNames:     spec.dns,
		IPAddresses:  nil,
		NotBefore:    spec.notBefore,
		NotAfter:     spec.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	require.NoError(t, err)
	cert, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), cert
}

// writeFiles writes a CA bundle, certificate and key into a new directory.
func writeFiles(t testing.TB, caPEM, certPEM, keyPEM []byte) certs.Files {
	t.Helper()
	dir := t.TempDir()
	f := certs.Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "node.crt"), Key: filepath.Join(dir, "node.key")}
	require.NoError(t, os.WriteFile(f.CA, caPEM, 0o644))
	require.NoError(t, os.WriteFile(f.Cert, certPEM, 0o644))
	require.NoError(t, os.WriteFile(f.Key, keyPEM, 0o600))
	return f
}

// sendAs sends one heartbeat from `from` to the transport at addr over a
// connection made with pair as client certificate.
func sendAs(t *testing.T, tn *testNet, addr string, pair tls.Certificate, from, to uint64) error {
	t.Helper()
	cfg := tn.trs[0].opts.Credentials.clientConfig(func(*x509.Certificate) error { return nil })
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pb.NewPeerClient(conn).Send(ctx, &pb.SendRequest{Messages: []*raftpb.Message{msg(raftpb.MsgHeartbeat, from, to, 1)}})
	return err
}

// dialServing does a TLS handshake, with the configuration a node uses to
// dial member `name`, against a server presenting pair; it returns the
// handshake's error.
func dialServing(t *testing.T, creds *Credentials, members *Members, name string, pair tls.Certificate) error {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert})
	require.NoError(t, err)
	defer lis.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c, err := lis.Accept(); err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), creds.ClientConfigFor(members, name))
	if err == nil {
		conn.Close()
	}
	lis.Close()
	<-done
	return err
}

func pairOf(t testing.TB, certPEM, keyPEM []byte) tls.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	return pair
}

// An identity carried only as a CommonName (no DNS SAN at all) works both
// ways: n1 accepts n2's heartbeats and n2 accepts n1's, each dialling the
// other and verifying the server's certificate by the same rule. (Go's own
// server-name check looks at SANs only: with it, n1 could not reach n2.)
func TestIdentity_CommonNameOnlyWorksBothWays(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewCA("test CA", time.Hour)
	require.NoError(t, err)
	idents := []string{"n1.eu-west.example", "n2.us-east.example"}
	var files []certs.Files
	for _, id := range idents {
		c, k, cert := issue(t, ca, leafSpec{cn: id})
		require.Empty(t, cert.DNSNames)
		files = append(files, writeFiles(t, ca.CertPEM, c, k))
	}
	tn := newTestNet(t, 2, func(i int, o *Options) {
		creds, err := LoadCredentials(files[i].CA, files[i].Cert, files[i].Key)
		require.NoError(t, err)
		o.Credentials = creds
		o.Self.Identity = idents[i]
		o.Peers[0].Identity = idents[1-i]
	})
	tn.trs[0].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
	tn.trs[1].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 2, 1, 1)})
	waitFor(t, 10*time.Second, "heartbeats both ways", func() bool {
		return tn.recs[0].count(raftpb.MsgHeartbeat) > 0 && tn.recs[1].count(raftpb.MsgHeartbeat) > 0
	})
}

// A certificate that carries the identities of two members identifies
// neither: it cannot pass as n2 nor as n3, inbound (Send) or outbound
// (a server presenting it to a node dialling n2).
func TestIdentity_CertificateNamingTwoMembersPassesAsNone(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	c, k, cert := issue(t, tn.ca, leafSpec{cn: "n2", dns: []string{"n2", "n3"}})
	pair := pairOf(t, c, k)
	for _, from := range []uint64{2, 3} {
		err := sendAs(t, tn, tn.peers[0].Addr, pair, from, 1)
		require.Equal(t, codes.PermissionDenied, status.Code(err), "posing as member %d: %v", from, err)
		require.Contains(t, status.Convert(err).Message(), "identifies none of them")
	}
	require.Zero(t, tn.recs[0].count(raftpb.MsgHeartbeat))

	// Outbound, the same rule: n1 dialling n2 refuses a server presenting it.
	err := tn.trs[0].set().members.check(cert, "n2")
	require.ErrorContains(t, err, "identifies none of them")
	err = dialServing(t, tn.trs[0].opts.Credentials, tn.trs[0].set().members, "n2", pair)
	require.ErrorContains(t, err, "identifies none of them", "a TLS handshake by n1 dialling n2")
	// A certificate for n2 alone is n2, both ways.
	c2, k2, cert2 := issue(t, tn.ca, leafSpec{cn: "n2", dns: []string{"n2", "n2.example"}})
	require.NoError(t, tn.trs[0].set().members.check(cert2, "n2"))
	require.NoError(t, sendAs(t, tn, tn.peers[0].Addr, pairOf(t, c2, k2), 2, 1))
}

// A pinned member is identified only by a certificate whose public key
// matches a pin: another certificate from the same CA that carries its
// name (an extra SAN on a non-member's certificate) does not pass as it,
// while its own certificate still does.
func TestIdentity_PinnedMemberRefusesItsNameWithAnotherKey(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewCA("test CA", time.Hour)
	require.NoError(t, err)
	key2, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	c2, k2, cert2 := issue(t, ca, leafSpec{cn: "n2", dns: []string{"n2"}, key: key2})
	pin := PublicKeyPin(cert2)

	tn := newTestNetWithCA(t, ca, 2, func(i int, o *Options) {
		if i == 1 {
			f := writeFiles(t, ca.CertPEM, c2, k2)
			creds, err := LoadCredentials(f.CA, f.Cert, f.Key)
			require.NoError(t, err)
			o.Credentials = creds
			o.Self.PublicKeyPins = []string{pin}
		} else {
			o.Peers[0].PublicKeyPins = []string{strings.ToUpper(pin[len("sha256:"):])}
		}
	})

	rc, rk, rogue := issue(t, ca, leafSpec{cn: "workload", dns: []string{"workload", "n2"}})
	err = sendAs(t, tn, tn.peers[0].Addr, pairOf(t, rc, rk), 2, 1)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "another key carrying n2's name: %v", err)
	require.Contains(t, status.Convert(err).Message(), "matches none of the public_key_pins")
	require.Error(t, tn.trs[0].set().members.check(rogue, "n2"), "outbound, the same certificate is not n2")
	err = dialServing(t, tn.trs[0].opts.Credentials, tn.trs[0].set().members, "n2", pairOf(t, rc, rk))
	require.ErrorContains(t, err, "matches none of the public_key_pins", "a TLS handshake by n1 dialling n2")
	require.NoError(t, dialServing(t, tn.trs[0].opts.Credentials, tn.trs[0].set().members, "n2", pairOf(t, c2, k2)), "n2's own certificate, pinned")

	// n2's own certificate passes, both ways.
	require.NoError(t, sendAs(t, tn, tn.peers[0].Addr, pairOf(t, c2, k2), 2, 1))
	tn.trs[0].Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
	waitFor(t, 10*time.Second, "n1's heartbeat at n2 over a pinned connection", func() bool { return tn.recs[1].count(raftpb.MsgHeartbeat) > 0 })
}

// Our own certificate is checked when the transport is made: a certificate
// that is expired, not yet valid, from another CA, missing our identity or
// not matching its key is refused with a CertificateError that says what is
// wrong; a good one is accepted.
func TestCredentials_OwnCertificateCheckedAtStart(t *testing.T) {
	t.Parallel()
	ca, err := certs.NewCA("test CA", time.Hour)
	require.NoError(t, err)
	other, err := certs.NewCA("another CA", time.Hour)
	require.NoError(t, err)
	good, goodKey, _ := issue(t, ca, leafSpec{cn: "n1", dns: []string{"n1"}})
	expired, expiredKey, _ := issue(t, ca, leafSpec{cn: "n1", notBefore: time.Now().Add(-2 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
	future, futureKey, _ := issue(t, ca, leafSpec{cn: "n1", notBefore: time.Now().Add(time.Hour), notAfter: time.Now().Add(2 * time.Hour)})
	foreign, foreignKey, _ := issue(t, other, leafSpec{cn: "n1"})
	misnamed, misnamedKey, _ := issue(t, ca, leafSpec{cn: "n9", dns: []string{"n9"}})
	both, bothKey, _ := issue(t, ca, leafSpec{cn: "n1", dns: []string{"n1", "n2"}})

	for _, tc := range []struct {
		what      string
		cert, key []byte
		want      string // "" = accepted
	}{
		{"a good certificate", good, goodKey, ""},
		{"an expired certificate", expired, expiredKey, "expired at"},
		{"a certificate not valid yet", future, futureKey, "is not valid before"},
		{"a certificate from another CA", foreign, foreignKey, "does not verify against the CA"},
		{"a certificate without our identity", misnamed, misnamedKey, "does not carry the identity of n1"},
		{"a certificate naming another member too", both, bothKey, "identifies none of them"},
		{"a key that is not the certificate's", good, misnamedKey, "the key must be the certificate's"},
		{"a CA file without certificates", good, goodKey, "holds no PEM certificate"},
	} {
		caPEM := ca.CertPEM
		if tc.what == "a CA file without certificates" {
			caPEM = []byte("not a certificate\n")
		}
		f := writeFiles(t, caPEM, tc.cert, tc.key)
		creds, err := LoadCredentials(f.CA, f.Cert, f.Key)
		if err == nil {
			_, err = New(Options{
				Self: Peer{ID: 1, Name: "n1"}, Peers: []Peer{{ID: 2, Name: "n2", Addr: "127.0.0.1:1"}},
				Credentials: creds, Handler: &recorder{},
			})
		}
		if tc.want == "" {
			require.NoError(t, err, tc.what)
			continue
		}
		var ce *CertificateError
		require.True(t, errors.As(err, &ce), "%s: %v is not a CertificateError", tc.what, err)
		require.ErrorContains(t, err, tc.want, tc.what)
		t.Logf("%s: %v", tc.what, err)
	}
}

// The rule's unit: CommonName or DNS SAN, exactly; several member
// identities mean none; a pin narrows a name to one key.
func TestMembers_MatchByTheIdentityRule(t *testing.T) {
	ca, err := certs.NewCA("test CA", time.Hour)
	require.NoError(t, err)
	_, _, pinned := issue(t, ca, leafSpec{cn: "n3"})
	m, err := NewMembers([]Peer{{Name: "n1"}, {Name: "n2", Identity: "n2.example"}, {Name: "n3", PublicKeyPins: []string{PublicKeyPin(pinned)}}})
	require.NoError(t, err)
	for _, tc := range []struct {
		what string
		spec leafSpec
		want string // member, or "error: ..." substring
	}{
		{"name as CommonName", leafSpec{cn: "n1"}, "n1"},
		{"name as DNS SAN only", leafSpec{cn: "x", dns: []string{"n1"}}, "n1"},
		{"configured identity", leafSpec{cn: "n2.example"}, "n2"},
		{"name instead of the configured identity", leafSpec{cn: "n2"}, ""},
		{"other case", leafSpec{cn: "N1"}, ""},
		{"wildcard", leafSpec{dns: []string{"*.example"}}, ""},
		{"two members", leafSpec{cn: "n1", dns: []string{"n2.example"}}, "error: identifies none of them"},
		{"pinned name, other key", leafSpec{cn: "n3"}, "error: matches none of the public_key_pins"},
		{"pinned name with another member's", leafSpec{cn: "n1", dns: []string{"n3"}}, "n1"},
	} {
		_, _, cert := issue(t, ca, tc.spec)
		got, err := m.Match(cert)
		if want, ok := strings.CutPrefix(tc.want, "error: "); ok {
			require.ErrorContains(t, err, want, tc.what)
			require.Empty(t, got, tc.what)
			continue
		}
		require.NoError(t, err, tc.what)
		require.Equal(t, tc.want, got, tc.what)
	}
	got, err := m.Match(pinned)
	require.NoError(t, err)
	require.Equal(t, "n3", got, "the pinned key itself")

	_, err = NewMembers([]Peer{{Name: "n1", PublicKeyPins: []string{"sha256:abc"}}})
	require.ErrorContains(t, err, "64 hex digits")
}
