package transport

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Credentials are a node's mutual-TLS material: the CA bundle that signs
// every node's certificate, and this node's certificate and key. All three
// files are read again when they change (cert-manager rotates them in
// place), at most once a second and on TLS handshakes only, so new
// connections use the new material without a restart. A changed set is
// taken only as a whole and only if it passes the checks made at start
// (see load); until then the previous set stays in use, so files written
// one at a time, in any order, never leave the node with a broken set.
type Credentials struct {
	caFile, certFile, keyFile string

	mu      sync.Mutex
	set     *credSet
	checked time.Time
	// members and self, once set by a transport, add the identity check:
	// our certificate must identify us by the identity rule.
	members *Members
	self    string
	log     *slog.Logger
	problem string // the last reload problem logged, to log each once
	watch   func(cert, ca time.Time)
}

// credSet is one consistent set of the three files.
type credSet struct {
	pool                   *x509.CertPool
	caNotAfter             time.Time // the earliest expiry in the CA bundle
	cert                   *tls.Certificate
	leaf                   *x509.Certificate
	caMod, certMod, keyMod time.Time
}

// CertificateError says what is wrong with this node's own TLS material and
// what to do about it. LoadCredentials and a transport's start return it;
// `raftelect run` exits with status 2 on it, as for a configuration error.
type CertificateError struct{ Err error }

func (e *CertificateError) Error() string { return e.Err.Error() }
func (e *CertificateError) Unwrap() error { return e.Err }

// LoadCredentials reads the CA bundle, the node certificate and its key, and
// checks them: the key matches the certificate, the certificate is valid now
// and chains to the CA for client authentication. A transport using them
// also checks that the certificate identifies this node. Errors are
// *CertificateError.
func LoadCredentials(caFile, certFile, keyFile string) (*Credentials, error) {
	c := &Credentials{caFile: caFile, certFile: certFile, keyFile: keyFile, log: slog.New(slog.DiscardHandler)}
	s, err := c.load(time.Now())
	if err != nil {
		return nil, err
	}
	c.set, c.checked = s, time.Now()
	return c, nil
}

// load reads and checks all three files.
func (c *Credentials) load(now time.Time) (*credSet, error) {
	bad := func(format string, args ...any) error {
		return &CertificateError{Err: fmt.Errorf(format, args...)}
	}
	s := &credSet{}
	// Modification times first: a file written after its stat is read
	// again on the next check.
	if st, err := os.Stat(c.caFile); err == nil {
		s.caMod = st.ModTime()
	}
	if st, err := os.Stat(c.certFile); err == nil {
		s.certMod = st.ModTime()
	}
	if st, err := os.Stat(c.keyFile); err == nil {
		s.keyMod = st.ModTime()
	}

	caPEM, err := os.ReadFile(c.caFile)
	if err != nil {
		return nil, bad("read CA certificate: %v; check tls.ca_file", err)
	}
	s.pool = x509.NewCertPool()
	n := 0
	for rest := caPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		ca, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, bad("CA file %s: certificate %d does not parse: %v; the file must hold PEM CA certificates only", c.caFile, n+1, err)
		}
		s.pool.AddCert(ca)
		if n == 0 || ca.NotAfter.Before(s.caNotAfter) {
			s.caNotAfter = ca.NotAfter
		}
		n++
	}
	if n == 0 {
		return nil, bad("CA file %s holds no PEM certificate; give the CA certificate(s) that sign the nodes' certificates", c.caFile)
	}

	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, bad("load node certificate %s and key %s: %v; both must be PEM and the key must be the certificate's", c.certFile, c.keyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, bad("node certificate %s does not parse: %v", c.certFile, err)
		}
	}
	s.cert, s.leaf = &pair, leaf
	if now.Before(leaf.NotBefore) {
		return nil, bad("node certificate %s is not valid before %s (now %s): check this machine's clock, or issue one valid from now",
			c.certFile, leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return nil, bad("node certificate %s expired at %s (now %s): issue a new one (`raftelect certs issue` or your PKI) and write it in place",
			c.certFile, leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	usages := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if c.members != nil {
		// A node's certificate serves both ends of a connection.
		usages = append(usages, x509.ExtKeyUsageServerAuth)
	}
	for _, u := range usages {
		opts := x509.VerifyOptions{Roots: s.pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}
		if _, err := leaf.Verify(opts); err != nil {
			return nil, bad("node certificate %s %s does not verify against the CA in %s for %s: %v; issue it from that CA (with client and server authentication usages) or fix tls.ca_file",
				c.certFile, describeCert(leaf), c.caFile, usageName(u), err)
		}
	}
	if c.members != nil {
		if err := c.members.check(leaf, c.self); err != nil {
			return nil, bad("node certificate %s: %v (peers identify this node by the same rule: every one of them would refuse it); issue this node a certificate that identifies it, or fix its identity in peers", c.certFile, err)
		}
	}
	return s, nil
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageServerAuth {
		return "server authentication"
	}
	return "client authentication"
}

// CheckCredentials loads the TLS files as LoadCredentials does and also
// checks that the certificate identifies member self of the cluster made of
// members (self included), as a transport made with them would at New.
// Errors are *CertificateError. It lets a node refuse to start before it
// opens anything else.
func CheckCredentials(caFile, certFile, keyFile, self string, members []Peer) error {
	c, err := LoadCredentials(caFile, certFile, keyFile)
	if err != nil {
		return err
	}
	m, err := NewMembers(members)
	if err != nil {
		return err
	}
	return c.requireIdentity(m, self, nil)
}

// requireIdentity makes the credentials check, now and on every reload,
// that our certificate identifies self among members.
func (c *Credentials) requireIdentity(members *Members, self string, log *slog.Logger) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members, c.self = members, self
	if log != nil {
		c.log = log
	}
	s, err := c.load(time.Now())
	if err != nil {
		return err
	}
	c.setLocked(s)
	return nil
}

// onLoad registers fn to be told the expiry of our certificate and of the
// CA bundle (its earliest) now and after every reload.
func (c *Credentials) onLoad(fn func(cert, ca time.Time)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watch = fn
	if fn != nil {
		fn(c.set.leaf.NotAfter, c.set.caNotAfter)
	}
}

func (c *Credentials) setLocked(s *credSet) {
	c.set, c.checked, c.problem = s, time.Now(), ""
	if c.watch != nil {
		c.watch(s.leaf.NotAfter, s.caNotAfter)
	}
}

// current returns the set in use, reloading it when a file changed
// (checked at most once a second, on TLS handshakes only).
func (c *Credentials) current() *credSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) < time.Second {
		return c.set
	}
	c.checked = time.Now()
	if !c.changedLocked() {
		return c.set
	}
	s, err := c.load(time.Now())
	if err != nil {
		// Mid-rotation (one file written, not yet the others) or a bad
		// file: keep the previous set, and retry on the next check.
		if msg := err.Error(); msg != c.problem {
			c.problem = msg
			c.log.Warn("TLS files changed but are not usable yet; still using the previous certificate and CA", "err", err)
		}
		return c.set
	}
	c.log.Info("TLS files reloaded", "certificate_expires", s.leaf.NotAfter, "ca_expires", s.caNotAfter)
	c.setLocked(s)
	return s
}

func (c *Credentials) changedLocked() bool {
	for _, f := range []struct {
		path string
		mod  time.Time
	}{{c.caFile, c.set.caMod}, {c.certFile, c.set.certMod}, {c.keyFile, c.set.keyMod}} {
		st, err := os.Stat(f.path)
		if err != nil || !st.ModTime().Equal(f.mod) {
			return true
		}
	}
	return false
}

// verifyChain verifies a peer's certificate chain against the CA bundle in
// use, for usage.
func (c *Credentials) verifyChain(certs []*x509.Certificate, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, errors.New("the peer sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	opts := x509.VerifyOptions{Roots: c.current().pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}
	if _, err := certs[0].Verify(opts); err != nil {
		return nil, fmt.Errorf("certificate %s does not verify against our CA (%s): %w", describeCert(certs[0]), c.caFile, err)
	}
	return certs[0], nil
}

// serverConfig requires and verifies a client certificate from the CA
// bundle in use at each handshake.
func (c *Credentials) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			s := c.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    s.pool,
				Certificates: []tls.Certificate{*s.cert},
			}, nil
		},
	}
}

// clientConfig verifies the server's certificate with check, after
// verifying its chain against the CA bundle in use. Go's own verification
// is off (InsecureSkipVerify) because it checks the server name against
// SANs only and against a CA pool fixed when the connection was made; this
// one does both by our rules at every handshake.
func (c *Credentials) clientConfig(check func(*x509.Certificate) error) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified in VerifyConnection, below
		VerifyConnection: func(cs tls.ConnectionState) error {
			leaf, err := c.verifyChain(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return err
			}
			return check(leaf)
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.current().cert, nil
		},
	}
}

// checkOwnIdentity checks that our certificate identifies self among
// members, a member list that replaces the one requireIdentity was given,
// and makes reloads check against it from now on. It reads no file.
func (c *Credentials) checkOwnIdentity(members *Members, self string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := members.check(c.set.leaf, self); err != nil {
		return fmt.Errorf("this node's certificate would no longer identify it (%v): every peer would refuse it; give this node a certificate that carries its identity in the new list, or fix its identity there", err)
	}
	c.members, c.self = members, self
	return nil
}

// ClientConfigFor returns a TLS configuration that talks to the member
// named name, whose certificate must identify it by the identity rule.
func (c *Credentials) ClientConfigFor(members *Members, name string) *tls.Config {
	return c.clientConfig(func(leaf *x509.Certificate) error {
		if err := members.check(leaf, name); err != nil {
			return fmt.Errorf("peer %s: %w", name, err)
		}
		return nil
	})
}

// ClientConfig returns a TLS configuration for a tool (such as `raftelect
// status`) that talks to the node whose certificate carries serverName (as
// CommonName or DNS SAN). Without the cluster's identity table it cannot
// refuse ambiguous certificates; nodes use ClientConfigFor.
func (c *Credentials) ClientConfig(serverName string) *tls.Config {
	return c.clientConfig(func(leaf *x509.Certificate) error {
		if !carries(leaf, serverName) {
			return fmt.Errorf("certificate %s does not carry %q as its CommonName or a DNS SAN", describeCert(leaf), serverName)
		}
		return nil
	})
}
