package transport

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// Credentials are a node's mutual-TLS material: the CA that signs every
// node's certificate, and this node's certificate and key. The certificate
// and key are read again when their files change (cert-manager rotates them
// in place), so new connections use the new certificate without a restart.
type Credentials struct {
	caPool *x509.CertPool

	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	certMod, keyMod   time.Time
	checked           time.Time
}

// LoadCredentials reads the CA certificate, the node certificate and its key.
func LoadCredentials(caFile, certFile, keyFile string) (*Credentials, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA certificate %s holds no PEM certificate", caFile)
	}
	c := &Credentials{caPool: pool, certFile: certFile, keyFile: keyFile}
	if _, err := c.current(); err != nil {
		return nil, err
	}
	return c, nil
}

// current returns the node certificate, reloading it when the files changed
// (checked at most once a second, on TLS handshakes only).
func (c *Credentials) current() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && time.Since(c.checked) < time.Second {
		return c.cert, nil
	}
	c.checked = time.Now()
	cst, err1 := os.Stat(c.certFile)
	kst, err2 := os.Stat(c.keyFile)
	if c.cert != nil && err1 == nil && err2 == nil && cst.ModTime().Equal(c.certMod) && kst.ModTime().Equal(c.keyMod) {
		return c.cert, nil
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			// Mid-rotation (certificate written, key not yet): keep the
			// old pair until both files agree.
			return c.cert, nil
		}
		return nil, fmt.Errorf("load node certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert = &pair
	if err1 == nil && err2 == nil {
		c.certMod, c.keyMod = cst.ModTime(), kst.ModTime()
	}
	return c.cert, nil
}

// serverConfig requires and verifies a client certificate from the CA.
func (c *Credentials) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  c.caPool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.current()
		},
	}
}

// clientConfig verifies that the server's certificate names serverName.
func (c *Credentials) clientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    c.caPool,
		ServerName: serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.current()
		},
	}
}

// ClientConfig returns a TLS configuration for a tool (such as `raftelect
// status`) that talks to the node named serverName.
func (c *Credentials) ClientConfig(serverName string) *tls.Config { return c.clientConfig(serverName) }
