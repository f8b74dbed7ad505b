package election_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/eventlog"
	tc "github.com/raftelect/raftelect/internal/testcluster"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

// The CA itself is rotated in place on every node, as an operator does it:
// a bundle of old and new CA, then every node's certificate from the new
// CA, then the new CA alone. Each node follows each step without a restart
// (it trusts the new CA, serves its new certificate, then refuses the old
// CA), never two lease holders (the checker), and an agreed leader at the
// end. New material is taken on new handshakes only, so the peers'
// established connections carry on untouched: that the leader stays is the
// claim of a healthy cluster, made in simulated time (internal/sim,
// "healthy"); here it is logged, since on a loaded machine the dozens of
// TLS handshakes this test makes can starve the nodes for an election
// timeout.
func TestCARotation_WithoutRestart(t *testing.T) {
	t.Parallel()
	// The tools below call Status: they are operators (a certificate
	// naming neither a member nor an operator gets nothing).
	c := tc.New(t, 3)
	c.Tweak = func(cfg *election.Config) { cfg.Operators = []string{"tool-old", "tool-new"} }
	t.Cleanup(c.DumpEvents)
	c.Start()
	l := c.WaitLeader(10 * time.Second)
	leader := c.Nodes[l]
	term := leader.Elector.Leader().Term
	since := eventlog.Now()

	newCA, err := certs.NewCA("raftelect test CA 2", time.Hour)
	require.NoError(t, err)
	bundle := append(append([]byte{}, c.CA.CertPEM...), newCA.CertPEM...)
	// Two tools' client certificates, one from each CA, trusting both.
	client := func(ca *certs.CA, name string) certs.Files {
		f, err := ca.WriteNode(filepath.Join(t.TempDir(), name), name, nil, time.Hour)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(f.CA, bundle, 0o644))
		return f
	}
	oldClient, newClient := client(c.CA, "tool-old"), client(newCA, "tool-new")
	status := func(f certs.Files, n *tc.Node) error {
		creds, err := transport.LoadCredentials(f.CA, f.Cert, f.Key)
		require.NoError(t, err)
		conn, err := grpc.NewClient(n.Addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig(n.Name))))
		require.NoError(t, err)
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = pb.NewNodeClient(conn).Status(ctx, &pb.StatusRequest{})
		return err
	}
	issuer := func(n *tc.Node) string {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(bundle)
		pair, err := tls.LoadX509KeyPair(oldClient.Cert, oldClient.Key)
		require.NoError(t, err)
		conn, err := tls.Dial("tcp", n.Addr, &tls.Config{RootCAs: pool, ServerName: n.Name, Certificates: []tls.Certificate{pair}})
		if err != nil {
			return ""
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Issuer.CommonName
	}
	for _, n := range c.Nodes {
		require.Error(t, status(newClient, n), "%s trusts the new CA before it was given it", n.Name)
	}

	// 1. Old and new CA.
	for _, n := range c.Nodes {
		require.NoError(t, os.WriteFile(n.Certs.CA, bundle, 0o644))
	}
	for _, n := range c.Nodes {
		c.WaitFor(10*time.Second, n.Name+" to trust the new CA", func() bool { return status(newClient, n) == nil })
		require.NoError(t, status(oldClient, n), "%s still trusts the old CA", n.Name)
	}
	// 2. Every node's certificate from the new CA (key first: a reader in
	// between keeps the old pair).
	for _, n := range c.Nodes {
		cert, key, err := newCA.Issue(n.Name, []string{"127.0.0.1"}, time.Hour)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(n.Certs.Key, key, 0o600))
		require.NoError(t, os.WriteFile(n.Certs.Cert, cert, 0o644))
	}
	for _, n := range c.Nodes {
		c.WaitFor(10*time.Second, n.Name+" to serve its certificate from the new CA", func() bool { return issuer(n) == newCA.Cert.Subject.CommonName })
	}
	// 3. The new CA alone.
	for _, n := range c.Nodes {
		require.NoError(t, os.WriteFile(n.Certs.CA, newCA.CertPEM, 0o644))
	}
	for _, n := range c.Nodes {
		c.WaitFor(10*time.Second, n.Name+" to stop trusting the old CA", func() bool { return status(oldClient, n) != nil })
		require.NoError(t, status(newClient, n), "%s trusts the new CA", n.Name)
		// A member's new certificate and the new CA alone make a working
		// peer connection: what every node dials with from now on.
		nf := certs.Files{CA: n.Certs.CA, Cert: n.Certs.Cert, Key: n.Certs.Key}
		for _, m := range c.Nodes {
			require.NoError(t, status(nf, m), "%s's new files to %s", n.Name, m.Name)
		}
	}
	time.Sleep(2 * tc.ElectionTimeout) // keep running on the new CA
	c.WaitLeader(settleWithin)
	logStability(t, c, leader.Name, term, since, nil)
	c.StopAll()
	c.Check()
}

// New refuses a node whose own certificate its peers would refuse (here,
// another member's), with an error that matches ErrCertificate (and still
// carries the transport's CertificateError), before anything runs; the
// node's own certificate is accepted.
func TestNew_RefusesOwnCertificateThatPeersWouldRefuse(t *testing.T) {
	t.Parallel()
	c := tc.New(t, 3)
	cfg := c.Config(0)
	_, err := election.New(cfg)
	require.NoError(t, err, "n1 with its own certificate")

	n2 := c.Nodes[1].Certs
	cfg.TLS.CertFile, cfg.TLS.KeyFile = n2.Cert, n2.Key
	_, err = election.New(cfg)
	require.ErrorIs(t, err, election.ErrCertificate)
	var ce *transport.CertificateError
	require.ErrorAs(t, err, &ce)
	require.ErrorContains(t, err, "identifies n2, not n1")
}
