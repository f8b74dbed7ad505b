package deploy

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
)

const repoRoot = "../.."

// Image is the image the build produces (make image) and the manifests
// and the chart name: the tag is deploy/VERSION.
func Image(t testing.TB) string {
	t.Helper()
	v, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	return "ghcr.io/raftelect/raftelect:" + strings.TrimSpace(string(v))
}

// podman runs podman with what this kind of host needs: runc when it is
// installed (crun refuses hybrid cgroup hierarchies; RAFTELECT_PODMAN_RUNTIME
// overrides), and for run, rlimits within the hard limits (podman's default
// nofile and nproc exceed them, and the runtime may not raise them).
func podman(t testing.TB, args ...string) (string, error) {
	t.Helper()
	var full []string
	rt := os.Getenv("RAFTELECT_PODMAN_RUNTIME")
	if _, err := exec.LookPath("runc"); rt == "" && err == nil {
		rt = "runc"
	}
	if rt != "" {
		full = append(full, "--runtime", rt)
	}
	if args[0] == "run" {
		full = append(full, "run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
		args = args[1:]
	}
	out, err := exec.Command("podman", append(full, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func mustPodman(t testing.TB, args ...string) string {
	t.Helper()
	out, err := podman(t, args...)
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// needPodman skips (fails, with RAFTELECT_REQUIRE_IMAGE set) without
// podman.
func needPodman(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("podman"); err == nil {
		return
	}
	msg := "podman not found: apt-get install podman runc (.ci/deps does)"
	if os.Getenv("RAFTELECT_REQUIRE_IMAGE") != "" {
		t.Fatal(msg)
	}
	t.Skip("skipping the image test: " + msg)
}

// buildImage builds the image as make image does, offline, and returns its
// tag and the static binary it holds.
func buildImage(t *testing.T) (string, string) {
	t.Helper()
	image := Image(t)
	version := strings.TrimPrefix(image, "ghcr.io/raftelect/raftelect:")
	ctx := t.TempDir()
	bin := filepath.Join(ctx, "raftelect")
	build := exec.Command("go", "build", "-tags", "lean,grpcnotrace", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", bin, "./cmd/raftelect")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the static binary: %v\n%s", err, out)
	}
	t0 := time.Now()
	prev, _ := podman(t, "image", "inspect", "--format", "{{.Id}}", image)
	mustPodman(t, "build", "--layers=false", "--build-arg", "VERSION="+version, "-f", filepath.Join(repoRoot, "Dockerfile"), "-t", image, ctx)
	// The tag moved to the new build: remove the image it left behind, so
	// that runs do not pile up untagged images.
	if id, _ := podman(t, "image", "inspect", "--format", "{{.Id}}", image); prev != "" && prev != id && !strings.Contains(prev, "rror") {
		podman(t, "rmi", prev)
	}
	size, _ := strconv.ParseInt(mustPodman(t, "image", "inspect", "--format", "{{.Size}}", image), 10, 64)
	user := mustPodman(t, "image", "inspect", "--format", "{{.Config.User}}", image)
	t.Logf("built %s in %v: %.1f MB, user %q", image, time.Since(t0).Round(time.Millisecond), float64(size)/1e6, user)
	if user == "" || user == "0" || strings.HasPrefix(user, "0:") || user == "root" {
		t.Errorf("the image runs as %q; want a non-root user", user)
	}
	return image, bin
}

// TestImageRunsTheVersionItIsTaggedWith builds the image and runs it: the
// binary in it reports the version of the tag the manifests name.
func TestImageRunsTheVersionItIsTaggedWith(t *testing.T) {
	needPodman(t)
	image, _ := buildImage(t)
	out := mustPodman(t, "run", "--rm", "--network=none", image, "--version")
	t.Logf("podman run %s --version: %s", image, out)
	if want := "raftelect version " + strings.TrimPrefix(image, "ghcr.io/raftelect/raftelect:"); out != want {
		t.Errorf("the image printed %q, want %q", out, want)
	}
}

// TestImageThreeContainerDemo runs three containers of the image on a
// podman network of its own, with certificates from raftelect certs: one
// leader, and after it is stopped (SIGTERM), another.
func TestImageThreeContainerDemo(t *testing.T) {
	needPodman(t)
	if testing.Short() {
		t.Skip("skipping the three-container demo in -short mode")
	}
	image, bin := buildImage(t)
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("raftelect %v: %v\n%s", args, err, out)
		}
	}
	netName := fmt.Sprintf("raftelect-test-%d", os.Getpid())
	subnet := fmt.Sprintf("10.%d.%d", 200+os.Getpid()%50, os.Getpid()/50%250)
	mustPodman(t, "network", "create", "--subnet", subnet+".0/24", netName)
	t.Cleanup(func() { podman(t, "network", "rm", "-f", netName) })
	names := []string{"n1", "n2", "n3"}
	run("certs", "init", "--dir", filepath.Join(dir, "certs"))
	var peers strings.Builder
	for i, n := range names {
		run("certs", "issue", "--dir", filepath.Join(dir, "certs"), "--name", n, "--host", fmt.Sprintf("%s.%d", subnet, 10+i))
		fmt.Fprintf(&peers, "  - name: %s\n    address: %s.%d:7000\n", n, subnet, 10+i)
	}
	// The containers run as 65532: let it read the keys (a test CA).
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			os.Chmod(p, map[bool]os.FileMode{true: 0o755, false: 0o644}[info.IsDir()])
		}
		return nil
	})
	ports := map[string]int{}
	for i, n := range names {
		cfg := fmt.Sprintf("name: %s\npeers:\n%sheartbeat_interval: 100ms\nelection_timeout: 1s\ntls:\n  ca_file: /etc/raftelect/certs/ca.crt\n  cert_file: /etc/raftelect/certs/%s.crt\n  key_file: /etc/raftelect/certs/%s.key\nhttp_address: 0.0.0.0:9090\n",
			n, peers.String(), n, n)
		if err := os.WriteFile(filepath.Join(dir, n+".yaml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		ports[n] = 19000 + os.Getpid()%1000*3 + i
		c := netName + "-" + n
		t.Cleanup(func() { podman(t, "rm", "-f", "-t", "5", c) })
		mustPodman(t, "run", "-d", "--name", c, "--network", netName, "--ip", fmt.Sprintf("%s.%d", subnet, 10+i),
			"-p", fmt.Sprintf("127.0.0.1:%d:9090", ports[n]), "-v", dir+":/etc/raftelect:ro",
			image, "run", "--config", "/etc/raftelect/"+n+".yaml")
	}
	leaderOf := func(except string) string {
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var leaders []string
			for _, n := range names {
				if n != except && isLeader(ports[n]) {
					leaders = append(leaders, n)
				}
			}
			if len(leaders) > 1 {
				t.Fatalf("two containers report leadership: %v", leaders)
			}
			if len(leaders) == 1 {
				return leaders[0]
			}
		}
		for _, n := range names {
			logs, _ := podman(t, "logs", "--tail", "20", netName+"-"+n)
			t.Logf("--- %s:\n%s", n, logs)
		}
		t.Fatalf("no single leader among the containers (except %q) within 60s", except)
		return ""
	}
	first := leaderOf("")
	t0 := time.Now()
	mustPodman(t, "stop", "-t", "10", netName+"-"+first)
	second := leaderOf(first)
	t.Logf("three containers: %s led; stopped, %s leads %v later", first, second, time.Since(t0).Round(time.Millisecond))
}

// isLeader reads raftelect_is_leader from a node's metrics.
func isLeader(port int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "raftelect_is_leader" {
			return f[1] == "1"
		}
	}
	return false
}

// TestManifestsNameTheBuiltImage: the raftelect containers of the manifests
// run the image the build produces, with the tag from deploy/VERSION, and
// the wrapper layout's instructions copy the binary from that image.
func TestManifestsNameTheBuiltImage(t *testing.T) {
	image := Image(t)
	found := 0
	for _, o := range decodeAll(t) {
		s, ok := o.obj.(*appsv1.StatefulSet)
		if !ok {
			continue
		}
		for _, c := range allContainers(&s.Spec.Template.Spec) {
			if c.Name == "raftelect" {
				found++
				if c.Image != image {
					t.Errorf("%s: container raftelect runs %q, want the built image %q", o.file, c.Image, image)
				}
			}
		}
	}
	if found == 0 {
		t.Error("no raftelect container in the manifests")
	}
	wrapper, err := os.ReadFile(filepath.Join(manifestDir, "wrapper.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(wrapper), "COPY --from="+image+" ") {
		t.Errorf("wrapper.yaml's image instructions do not copy raftelect from %s", image)
	}
}
