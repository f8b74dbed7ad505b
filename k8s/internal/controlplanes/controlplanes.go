// Package controlplanes starts real Kubernetes control planes (etcd and
// kube-apiserver, through controller-runtime's envtest) for the k8s
// module's tests, one per simulated cluster, all on loopback.
//
// The binaries come from KUBEBUILDER_ASSETS, which tools/k8s-assets/build.sh
// fills (make test-k8s and .ci/run set it). Without it the tests that need
// control planes skip, saying so; with RAFTELECT_REQUIRE_CONTROL_PLANES=1
// (CI) they fail instead, so that CI cannot pass without running them.
package controlplanes

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Plane is one running control plane.
type Plane struct {
	Name   string
	Env    *envtest.Environment
	Config *rest.Config
	Client kubernetes.Interface
	// Kubeconfig is a file with an admin kubeconfig for this plane.
	Kubeconfig string
}

// Assets returns the directory holding etcd, kube-apiserver and kubectl, or
// skips (fails, if required) the test.
func Assets(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	var missing string
	if dir == "" {
		missing = "KUBEBUILDER_ASSETS is not set"
	} else {
		for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				missing = fmt.Sprintf("KUBEBUILDER_ASSETS=%s has no %s", dir, b)
				break
			}
		}
	}
	if missing == "" {
		return dir
	}
	msg := missing + ": build them with `export KUBEBUILDER_ASSETS=$(tools/k8s-assets/build.sh)` (about 5 minutes cold) or run make test-k8s"
	if os.Getenv("RAFTELECT_REQUIRE_CONTROL_PLANES") != "" {
		t.Fatal(msg)
	}
	t.Skip("skipping: needs real control planes; " + msg)
	return ""
}

// Start starts one control plane per name, concurrently, and stops them
// when the test ends.
func Start(t testing.TB, names ...string) []*Plane {
	t.Helper()
	assets := Assets(t)
	planes := make([]*Plane, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	t0 := time.Now()
	for i, name := range names {
		env := &envtest.Environment{BinaryAssetsDirectory: assets, ControlPlaneStartTimeout: 2 * time.Minute, ControlPlaneStopTimeout: time.Minute}
		api := env.ControlPlane.GetAPIServer()
		// Nothing leaves loopback: without it the API server advertises
		// the host's first non-loopback address. The endpoint reconciler
		// refuses a loopback address, and there is no Service network
		// to publish endpoints in anyway.
		api.Configure().Set("advertise-address", "127.0.0.1").Set("endpoint-reconciler-type", "none")
		planes[i] = &Plane{Name: name, Env: env}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, err := env.Start()
			if err != nil {
				errs[i] = fmt.Errorf("control plane %s: %w", name, err)
				return
			}
			planes[i].Config = cfg
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, p := range planes {
			if p.Config != nil {
				if err := p.Env.Stop(); err != nil {
					t.Errorf("stopping control plane %s: %v", p.Name, err)
				}
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	for _, p := range planes {
		c, err := kubernetes.NewForConfig(p.Config)
		if err != nil {
			t.Fatal(err)
		}
		p.Client = c
		p.Kubeconfig = filepath.Join(dir, p.Name+".kubeconfig")
		if err := os.WriteFile(p.Kubeconfig, p.Env.KubeConfig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("started %d control planes in %v (%s)", len(names), time.Since(t0).Round(10*time.Millisecond), assets)
	return planes
}

// Kubectl runs the kubectl from KUBEBUILDER_ASSETS against p and returns
// its combined output.
func (p *Plane) Kubectl(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(Assets(t), "kubectl"), append([]string{"--kubeconfig", p.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}
