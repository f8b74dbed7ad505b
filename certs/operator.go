package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"time"
)

// IssueOperator creates a certificate for an operator tool (such as
// `raftelect status`): the name as CommonName and DNS SAN, usable as a TLS
// client only, so it can never serve as a node. Nodes accept it for Status
// and Check when the name is among their configured operators.
func (ca *CA) IssueOperator(name string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if name == "" {
		return nil, nil, errors.New("operator name is empty")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"raftelect"}, OrganizationalUnit: []string{"operator"}},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{name},
	}
	return ca.sign(tmpl, key)
}

// WriteOperator issues an operator certificate and writes ca.crt,
// <name>.crt and <name>.key into dir (the key with mode 0600).
func (ca *CA) WriteOperator(dir, name string, validFor time.Duration) (Files, error) {
	certPEM, keyPEM, err := ca.IssueOperator(name, validFor)
	if err != nil {
		return Files{}, err
	}
	f := Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, err
	}
	if err := writeCA(f.CA, ca.CertPEM); err != nil {
		return Files{}, err
	}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.Cert, certPEM, 0o644}, {f.Key, keyPEM, 0o600}} {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}
