package transport

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/raftelect/raftelect/certs"
)

// expiryRecorder is a Metrics that records what CertificatesLoaded said.
type expiryRecorder struct {
	mu       sync.Mutex
	cert, ca time.Time
	loads    int
}

func (e *expiryRecorder) Sent(string, raftpb.MessageType)     {}
func (e *expiryRecorder) Received(string, raftpb.MessageType) {}
func (e *expiryRecorder) Dropped(string, raftpb.MessageType)  {}
func (e *expiryRecorder) SendFailed(string, error)            {}
func (e *expiryRecorder) SendLatency(string, time.Duration)   {}
func (e *expiryRecorder) Rejected(string)                     {}
func (e *expiryRecorder) CertificatesLoaded(cert, ca time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cert, e.ca, e.loads = cert, ca, e.loads+1
}
func (e *expiryRecorder) get() (cert, ca time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cert, e.ca
}

// The CA bundle is reloaded when its file changes, like the certificate:
// a node starts trusting a new CA once its file holds it, takes a
// certificate from the new CA, and stops trusting the old CA once the file
// holds only the new one, all without a restart. A bundle its own
// certificate does not chain to is not taken (the node keeps the previous
// set and says why). The expiry metrics follow every reload.
func TestCredentials_CABundleReloadedWhenItsFileChanges(t *testing.T) {
	t.Parallel()
	oldCA, err := certs.NewCA("old CA", 2*time.Hour)
	require.NoError(t, err)
	newCA, err := certs.NewCA("new CA", 3*time.Hour)
	require.NoError(t, err)
	var out syncBuffer
	rec := &expiryRecorder{}
	tn := newTestNetWithCA(t, oldCA, 2, func(i int, o *Options) {
		if i == 0 {
			o.Metrics = rec
			o.Logger = slog.New(slog.NewTextHandler(&out, nil))
		}
	})
	files := tn.files[0]
	fromOld := pairOf(t, mustRead(t, tn.files[1].Cert), mustRead(t, tn.files[1].Key))
	nc, nk, _ := issue(t, newCA, leafSpec{cn: "n2", dns: []string{"n2"}})
	fromNew := pairOf(t, nc, nk)
	addr := tn.peers[0].Addr

	cert0, ca0 := rec.get()
	require.Equal(t, oldCA.Cert.NotAfter, ca0, "CA expiry at start")
	require.NotZero(t, cert0)
	require.Error(t, sendAs(t, tn, addr, fromNew, 2, 1), "a certificate from a CA not in the bundle")

	// 1. The bundle holds both CAs: certificates from either pass.
	require.NoError(t, os.WriteFile(files.CA, append(append([]byte{}, oldCA.CertPEM...), newCA.CertPEM...), 0o644))
	waitFor(t, 10*time.Second, "the new CA to be trusted", func() bool { return sendAs(t, tn, addr, fromNew, 2, 1) == nil })
	require.NoError(t, sendAs(t, tn, addr, fromOld, 2, 1))
	_, ca1 := rec.get()
	require.Equal(t, oldCA.Cert.NotAfter, ca1, "the CA expiry is the bundle's earliest")

	// 2. The new CA alone, before our certificate is from it: refused, the
	// old bundle stays and the log says why.
	require.NoError(t, os.WriteFile(files.CA, newCA.CertPEM, 0o644))
	waitFor(t, 10*time.Second, "the unusable bundle to be reported", func() bool {
		_ = sendAs(t, tn, addr, fromOld, 2, 1) // handshakes drive the reload check
		return strings.Contains(out.String(), "not usable yet")
	})
	require.Contains(t, out.String(), "does not verify against the CA")
	require.NoError(t, sendAs(t, tn, addr, fromOld, 2, 1), "the old bundle is still in use")

	// 3. Our certificate from the new CA: the set is whole again and taken;
	// the old CA is no longer trusted.
	c, k, leaf := issue(t, newCA, leafSpec{cn: "n1", dns: []string{"n1"}, notAfter: time.Now().Add(90 * time.Minute)})
	require.NoError(t, os.WriteFile(files.Key, k, 0o600))
	require.NoError(t, os.WriteFile(files.Cert, c, 0o644))
	waitFor(t, 10*time.Second, "the old CA to be dropped", func() bool { return sendAs(t, tn, addr, fromOld, 2, 1) != nil })
	require.NoError(t, sendAs(t, tn, addr, fromNew, 2, 1))
	cert3, ca3 := rec.get()
	require.Equal(t, leaf.NotAfter, cert3, "certificate expiry after the reload")
	require.Equal(t, newCA.Cert.NotAfter, ca3, "CA expiry after the reload")
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
