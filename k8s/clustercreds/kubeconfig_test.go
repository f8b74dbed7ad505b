package clustercreds_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/raftelect/raftelect/k8s/clustercreds"
)

func TestKubeconfigFetcherRoundTrips(t *testing.T) {
	dir := t.TempDir()
	ca, tok := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "token")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\nMAo=\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tok, []byte("token-123"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := clustercreds.KubeconfigFetcher{Cluster: "eu-west-1", Server: "https://api.eu-west-1.example:6443", CAFile: ca, TokenFile: tok, TokenTTL: time.Hour}
	p, err := f.Fetch(context.Background(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Expires.Before(time.Now().Add(59 * time.Minute)) {
		t.Errorf("expiry %v, want about an hour from the token file's write", p.Expires)
	}
	cfg, err := clustercreds.RESTConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != f.Server || cfg.BearerToken != "token-123" || len(cfg.CAData) == 0 {
		t.Errorf("rest config: host %q token %q CA %d bytes", cfg.Host, cfg.BearerToken, len(cfg.CAData))
	}
}
