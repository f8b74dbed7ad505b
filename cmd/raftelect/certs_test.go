package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/transport"
)

// `raftelect run` with a certificate that cannot work exits 2 (as for a
// bad configuration) and says what is wrong, before it opens the store,
// instead of starting a node every peer refuses.
func TestRunRefusesItsOwnBadCertificateWithExit2(t *testing.T) {
	dir := t.TempDir()
	cd := filepath.Join(dir, "certs")
	other := filepath.Join(dir, "other")
	for _, args := range [][]string{
		{"certs", "init", "--dir", cd},
		{"certs", "issue", "--dir", cd, "--name", "n1"},
		{"certs", "issue", "--dir", cd, "--name", "n2"},
		{"certs", "init", "--dir", other},
		{"certs", "issue", "--dir", other, "--name", "n1"},
	} {
		if r := raftelect(t, args...); r.code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	// An expired certificate for n1 from the right CA.
	ca, err := certs.LoadCA(filepath.Join(cd, "ca.crt"), filepath.Join(cd, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "n1"}, DNSNames: []string{"n1"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	writeFile(t, filepath.Join(cd, "expired.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, filepath.Join(cd, "expired.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	n2pin := strings.TrimSpace(raftelect(t, "certs", "pin", "--cert", filepath.Join(cd, "n2.crt")).stdout)

	for _, tc := range []struct {
		what          string
		ca, cert, key string
		n1Extra       string
		want          string
	}{
		{"another node's certificate", "certs/ca.crt", "certs/n2.crt", "certs/n2.key", "", `identifies n2, not n1`},
		{"a certificate from another CA", "certs/ca.crt", "other/n1.crt", "other/n1.key", "", "does not verify against the CA"},
		{"a key that is not the certificate's", "certs/ca.crt", "certs/n1.crt", "certs/n2.key", "", "the key must be the certificate's"},
		{"an expired certificate", "certs/ca.crt", "certs/expired.crt", "certs/expired.key", "", "expired at"},
		{"a certificate whose key does not match our pin", "certs/ca.crt", "certs/n1.crt", "certs/n1.key", "\n    public_key_pins: ['" + n2pin + "']", "matches none of the public_key_pins"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			cfg := filepath.Join(dir, "n1.yaml")
			writeFile(t, cfg, fmt.Appendf(nil, `name: n1
peers:
  - name: n1
    address: 127.0.0.1:1%s
  - {name: n2, address: 127.0.0.1:2}
  - {name: n3, address: 127.0.0.1:3}
heartbeat_interval: 100ms
election_timeout: 1s
tls: {ca_file: %s, cert_file: %s, key_file: %s}
data_dir: data
`, tc.n1Extra, tc.ca, tc.cert, tc.key))
			r := raftelect(t, "run", "--config", cfg)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and %q", r.code, r.stderr, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
				t.Error("the store was opened (data_dir created) before the certificate was refused")
			}
			t.Logf("%s: %s", tc.what, lastLine(r.stderr))
		})
	}
}

// `certs issue` and `certs init` refuse a validity that ends before it
// starts, and write nothing.
func TestCertsRefuseNonsenseValidity(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"0s", "-24h"} {
		if r := raftelect(t, "certs", "init", "--dir", dir, "--valid-for", v); r.code != 2 || !strings.Contains(r.stderr, "must be valid for a positive duration") {
			t.Errorf("init --valid-for %s: %+v", v, r)
		}
		if _, err := os.Stat(filepath.Join(dir, "ca.crt")); err == nil {
			t.Fatalf("init --valid-for %s wrote a CA", v)
		}
	}
	if r := raftelect(t, "certs", "init", "--dir", dir, "--valid-for", "24h"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	for _, v := range []string{"0s", "-1h"} {
		if r := raftelect(t, "certs", "issue", "--dir", dir, "--name", "n1", "--valid-for", v); r.code != 2 || !strings.Contains(r.stderr, "must be valid for a positive duration") {
			t.Errorf("issue --valid-for %s: %+v", v, r)
		}
		if _, err := os.Stat(filepath.Join(dir, "n1.crt")); err == nil {
			t.Fatalf("issue --valid-for %s wrote a certificate", v)
		}
	}
	// Longer than the CA: capped at the CA's expiry, and said so.
	r := raftelect(t, "certs", "issue", "--dir", dir, "--name", "n1", "--valid-for", "48h")
	if r.code != 0 || !strings.Contains(r.stdout, "capped at the CA's expiry") {
		t.Errorf("issue --valid-for beyond the CA: %+v", r)
	}
}

// The pin `certs issue` prints and `certs pin` prints are the pin the
// transport compares.
func TestCertsPinIsTheTransportsPin(t *testing.T) {
	dir := t.TempDir()
	raftelect(t, "certs", "init", "--dir", dir)
	r := raftelect(t, "certs", "issue", "--dir", dir, "--name", "n1")
	if r.code != 0 {
		t.Fatalf("issue: %+v", r)
	}
	b, err := os.ReadFile(filepath.Join(dir, "n1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	want := transport.PublicKeyPin(cert)
	if !strings.Contains(r.stdout, "public key pin: "+want) {
		t.Errorf("issue printed:\n%s\nwant the pin %s", r.stdout, want)
	}
	if got := strings.TrimSpace(raftelect(t, "certs", "pin", "--cert", filepath.Join(dir, "n1.crt")).stdout); got != want {
		t.Errorf("certs pin printed %q, want %q", got, want)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// A running node exports when its certificate and CA expire, and the
// certificate's gauge follows a rotation in place once a handshake makes
// the node reload (here, `raftelect status` connecting).
func TestExpiryMetricsFollowARotation(t *testing.T) {
	dir := t.TempDir()
	cd := filepath.Join(dir, "certs")
	for _, args := range [][]string{
		{"certs", "init", "--dir", cd},
		{"certs", "issue", "--dir", cd, "--name", "n1", "--host", "127.0.0.1", "--valid-for", "100h"},
	} {
		if r := raftelect(t, args...); r.code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	ports := freePorts(t, 2)
	p := &proc{name: "n1", httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]), cfg: filepath.Join(dir, "n1.yaml"), log: filepath.Join(dir, "n1.log")}
	writeFile(t, p.cfg, fmt.Appendf(nil, `name: n1
peers:
  - {name: n1, address: 127.0.0.1:%d}
  - {name: n2, address: 127.0.0.1:1}
  - {name: n3, address: 127.0.0.1:2}
heartbeat_interval: 100ms
election_timeout: 1s
tls: {ca_file: certs/ca.crt, cert_file: certs/n1.crt, key_file: certs/n1.key}
http_address: %s
`, ports[0], p.httpAddr))
	p.start(t)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("log of n1:\n%s", b)
		}
	})
	notAfter := func(file string) float64 {
		b, err := os.ReadFile(filepath.Join(cd, file))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return float64(c.NotAfter.Unix())
	}
	gauge := func(series string, want float64) func() error {
		return func() error {
			_, body, err := p.get("/metrics")
			if err != nil {
				return err
			}
			if got := metricValue(body, series); got != want {
				return fmt.Errorf("%s = %v, want %v", series, got, want)
			}
			return nil
		}
	}
	eventually(t, 10*time.Second, "the CA expiry gauge", gauge("raftelect_tls_ca_expiry_timestamp_seconds", notAfter("ca.crt")))
	first := notAfter("n1.crt")
	eventually(t, 10*time.Second, "the certificate expiry gauge", gauge("raftelect_tls_certificate_expiry_timestamp_seconds", first))

	if r := raftelect(t, "certs", "issue", "--dir", cd, "--name", "n1", "--host", "127.0.0.1", "--valid-for", "200h", "--force"); r.code != 0 {
		t.Fatalf("reissue: %+v", r)
	}
	second := notAfter("n1.crt")
	if second == first {
		t.Fatal("the reissued certificate has the same expiry")
	}
	eventually(t, 20*time.Second, "the certificate expiry gauge after the rotation", func() error {
		raftelect(t, "status", "--config", p.cfg, "--timeout", "1s") // a handshake: the node reloads
		return gauge("raftelect_tls_certificate_expiry_timestamp_seconds", second)()
	})
}
