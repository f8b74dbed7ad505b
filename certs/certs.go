// Package certs makes a development certificate authority and node
// certificates for raftelect's mutual TLS, so that a demo or a first setup
// needs no openssl.
//
// A node certificate carries the node name (or the identity configured for
// it) as its Subject CommonName and as a DNS SAN; the transport identifies
// the caller by it (see docs/operations.md for the rule) and checks it
// against the From of every message it receives. Extra host names and IP
// addresses become SANs so the node can also be reached by address; a host
// name that is another member's identity makes the certificate identify
// neither member.
// Keys are ECDSA P-256. For production, use your own PKI (cert-manager, Vault)
// with the same layout.
package certs

import (
	"bytes"
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
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority that can issue node certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// NewCA creates a self-signed CA valid for the given duration.
func NewCA(commonName string, validFor time.Duration) (*CA, error) {
	if err := checkValidity(validFor); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"raftelect"}},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der)}, nil
}

// KeyPEM returns the CA's private key in PEM.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}

// LoadCA reads a CA certificate and key from PEM files.
func LoadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load CA from %s and %s: %w", certFile, keyFile, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", certFile)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: CA key must be ECDSA", keyFile)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", pair.Certificate[0])}, nil
}

// Issue creates a certificate for node name, usable as both TLS server and
// client, with name and hosts (DNS names or IP addresses) as SANs, valid for
// validFor but not beyond the CA's own expiry.
func (ca *CA) Issue(name string, hosts []string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if name == "" {
		return nil, nil, errors.New("node name is empty")
	}
	if err := checkValidity(validFor); err != nil {
		return nil, nil, err
	}
	notBefore, notAfter := time.Now().Add(-time.Minute), time.Now().Add(validFor)
	if notAfter.After(ca.Cert.NotAfter) {
		// Peers refuse it from the CA's expiry on anyway: do not claim a
		// validity it cannot have.
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(time.Now()) {
		return nil, nil, fmt.Errorf("the CA expired at %s: make a new CA (`raftelect certs init --force`) and rotate to it", ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"raftelect"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != name {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.sign(tmpl, key)
}

// sign issues tmpl for key with the CA and returns the certificate and key
// as PEM.
func (ca *CA) sign(tmpl *x509.Certificate, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kder), nil
}

// Files names the PEM files of one node: the CA certificate it trusts and
// its own certificate and key.
type Files struct {
	CA, Cert, Key string
}

// WriteNode issues a certificate for name and writes ca.crt, <name>.crt and
// <name>.key into dir (keys with mode 0600). It returns the paths.
func (ca *CA) WriteNode(dir, name string, hosts []string, validFor time.Duration) (Files, error) {
	certPEM, keyPEM, err := ca.Issue(name, hosts, validFor)
	if err != nil {
		return Files{}, err
	}
	f := Files{
		CA:   filepath.Join(dir, "ca.crt"),
		Cert: filepath.Join(dir, name+".crt"),
		Key:  filepath.Join(dir, name+".key"),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, err
	}
	if err := writeCA(f.CA, ca.CertPEM); err != nil {
		return Files{}, err
	}
	if err := os.WriteFile(f.Cert, certPEM, 0o644); err != nil {
		return Files{}, err
	}
	if err := os.WriteFile(f.Key, keyPEM, 0o600); err != nil {
		return Files{}, err
	}
	return f, nil
}

// writeCA writes the CA certificate beside a new node or operator
// certificate. Nodes read that file while they run (at start, and when
// they reload the CA), so it is never truncated in place: if it already
// holds these bytes it is left alone, otherwise the new content replaces it
// at once (a temporary file renamed over it). os.WriteFile would let a node
// starting meanwhile read an empty file and refuse to start.
func writeCA(path string, pem []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, pem) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ca.crt.*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing to remove
	if _, err := tmp.Write(pem); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ErrValidity is returned for a validity that is zero or negative: a
// certificate that ends before it starts.
var ErrValidity = errors.New("validity must be positive")

func checkValidity(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: %v would end the certificate before it starts; give a duration such as 8760h (one year)", ErrValidity, d)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
