// Package deploy checks the manifests in deploy/kubernetes and the alert
// rules in deploy/prometheus. Schema validators such as kubeconform fetch
// their schemas from the network; client-go's own scheme holds the same
// types and works offline, so every manifest is decoded with it strictly
// (an unknown or duplicated field fails), and then checked for what the
// types cannot say: probes and ports that name real ports, Services that
// select the pods, and a node.yaml that raftelect itself accepts.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/raftelect/raftelect/config"
)

const manifestDir = "../../deploy/kubernetes"

// externalSecrets are made by the operator, not by these manifests (see
// deploy/kubernetes/README.md).
var externalSecrets = []string{"raftelect-tls"}

type object struct {
	file string
	obj  runtime.Object
}

// decodeAll decodes every document of every manifest strictly.
func decodeAll(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", manifestDir, err)
	}
	var out []object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, decodeDocs(t, filepath.Base(f), data, nil)...)
	}
	return out
}

// decodeDocs decodes every document of a multi-document YAML strictly with
// client-go's scheme; kinds it does not hold go to other (which decodes
// them strictly itself and returns false if it does not know them either).
func decodeDocs(t *testing.T, name string, data []byte, other func(name string, doc []byte) bool) []object {
	t.Helper()
	dec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	var out []object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", name, i, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if runtime.IsNotRegisteredError(err) && other != nil && other(name, doc) {
			continue
		}
		if err != nil {
			t.Errorf("%s: document %d: %v", name, i, err)
			continue
		}
		if gvk.Version == "" || gvk.Kind == "" {
			t.Errorf("%s: document %d: no apiVersion or kind", name, i)
		}
		out = append(out, object{name, obj})
	}
	return out
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

// TestManifestsDecodeStrictly: every manifest is a known Kubernetes type
// with no unknown field; the check fails on a misspelt field.
func TestManifestsDecodeStrictly(t *testing.T) {
	objs := decodeAll(t)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.obj.GetObjectKind().GroupVersionKind().Kind]++
	}
	for _, want := range []string{"Namespace", "ConfigMap", "Service", "StatefulSet"} {
		if kinds[want] == 0 {
			t.Errorf("no %s among the manifests (have %v)", want, kinds)
		}
	}
	// The strict decoder must catch a typo; otherwise this test proves
	// nothing.
	bad := []byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  publishNotReadyAdresses: true\n")
	dec := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	if _, _, err := dec.Decode(bad, nil, nil); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Errorf("a misspelt field decoded without an unknown-field error: %v", err)
	}
}

// TestManifestsWiring checks what the types cannot: ports, probes, volumes,
// Services and the node configuration fit together.
func TestManifestsWiring(t *testing.T) { checkWiring(t, decodeAll(t)) }

// checkWiring checks that objs (the manifests of one layout) fit together.
func checkWiring(t *testing.T, objs []object) {
	t.Helper()
	var (
		sets       []*appsv1.StatefulSet
		services   = map[string]*corev1.Service{}
		configMaps = map[string]*corev1.ConfigMap{}
	)
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *appsv1.StatefulSet:
			sets = append(sets, v)
		case *corev1.Service:
			services[v.Name] = v
		case *corev1.ConfigMap:
			configMaps[v.Name] = v
		}
	}
	cm := configMaps["raftelect-config"]
	if cm == nil {
		t.Fatal("no ConfigMap raftelect-config")
	}
	node := checkNodeYAML(t, cm.Data["node.yaml"])

	peer := services["raftelect-peer"]
	if peer == nil {
		t.Fatal("no Service raftelect-peer")
	}
	if !peer.Spec.PublishNotReadyAddresses {
		t.Error("Service raftelect-peer must publish not-ready addresses: a node is ready only once it knows a leader, which needs its peers to reach it")
	}
	if len(sets) == 0 {
		t.Fatal("no StatefulSet")
	}
	for _, s := range sets {
		t.Run(s.Name+"/"+containerNames(s), func(t *testing.T) {
			checkStatefulSet(t, s, services, configMaps, node)
		})
	}
}

// nodeYAML is the part of node.yaml the pods must agree with.
type nodeYAML struct {
	Name          string `json:"name"`
	ListenAddress string `json:"listen_address"`
	HTTPAddress   string `json:"http_address"`
	DataDir       string `json:"data_dir"`
	TLS           struct {
		CAFile   string `json:"ca_file"`
		CertFile string `json:"cert_file"`
		KeyFile  string `json:"key_file"`
	} `json:"tls"`
}

// checkNodeYAML loads node.yaml with raftelect's own loader (unknown fields
// and invalid values fail), with the TLS files pointed at stand-ins since
// the Secret is not here.
func checkNodeYAML(t *testing.T, data string) nodeYAML {
	t.Helper()
	var n nodeYAML
	if err := sigsyaml.Unmarshal([]byte(data), &n); err != nil {
		t.Fatalf("node.yaml: %v", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := map[string]string{"data-dir": filepath.Join(dir, "data")}
	for flag, f := range map[string]string{"tls-ca-file": "ca.crt", "tls-cert-file": "tls.crt", "tls-key-file": "tls.key"} {
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		flags[flag] = p
	}
	if _, err := config.Load(path, config.LoadOptions{Flags: flags}); err != nil {
		t.Fatalf("raftelect rejects the ConfigMap's node.yaml: %v", err)
	}
	return n
}

func containerNames(s *appsv1.StatefulSet) string {
	var names []string
	for _, c := range allContainers(&s.Spec.Template.Spec) {
		names = append(names, c.Name)
	}
	return strings.Join(names, "+")
}

func allContainers(p *corev1.PodSpec) []corev1.Container {
	return append(append([]corev1.Container(nil), p.InitContainers...), p.Containers...)
}

func checkStatefulSet(t *testing.T, s *appsv1.StatefulSet, services map[string]*corev1.Service, configMaps map[string]*corev1.ConfigMap, node nodeYAML) {
	if s.Spec.Replicas == nil || *s.Spec.Replicas != 1 {
		t.Error("replicas must be 1: two pods with one node name would share a raft identity")
	}
	if services[s.Spec.ServiceName] == nil {
		t.Errorf("serviceName %q names no Service", s.Spec.ServiceName)
	}
	pod := &s.Spec.Template.Spec
	labels := s.Spec.Template.Labels
	for k, v := range s.Spec.Selector.MatchLabels {
		if labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template", k, v)
		}
	}

	// The container running raftelect: the one whose command or args run
	// the raftelect binary.
	var rc *corev1.Container
	for _, c := range allContainers(pod) {
		if slices.ContainsFunc(c.Command, func(s string) bool { return strings.HasSuffix(s, "/raftelect") }) {
			rc = &c
			break
		}
	}
	if rc == nil {
		t.Fatal("no container runs /usr/local/bin/raftelect")
	}
	if sub := rc.Args; len(sub) == 0 || (sub[0] != "run" && sub[0] != "exec") {
		t.Errorf("raftelect container runs %v, want run or exec", sub)
	}
	ports := map[string]int32{}
	for _, p := range rc.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if got, want := ports["peer"], port(t, node.ListenAddress); got != want {
		t.Errorf("container port peer = %d, node.yaml listens on %d", got, want)
	}
	if got, want := ports["http"], port(t, node.HTTPAddress); got != want {
		t.Errorf("container port http = %d, node.yaml serves HTTP on %d", got, want)
	}
	checkProbe(t, "liveness", rc.LivenessProbe, "/healthz", ports)
	checkProbe(t, "readiness", rc.ReadinessProbe, "/readyz", ports)

	// Volumes: every mount names a volume or claim template; node.yaml's
	// files live under the right mounts.
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	claims := map[string]bool{}
	for _, c := range s.Spec.VolumeClaimTemplates {
		claims[c.Name] = true
	}
	mounts := map[string]string{} // mount path -> volume
	for _, c := range allContainers(pod) {
		for _, m := range c.VolumeMounts {
			if _, ok := vols[m.Name]; !ok && !claims[m.Name] {
				t.Errorf("container %s mounts %q, which is no volume", c.Name, m.Name)
			}
		}
	}
	for _, m := range rc.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	under := func(path string) (string, bool) {
		for mp, v := range mounts {
			if strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") || path == mp {
				return v, true
			}
		}
		return "", false
	}
	cfgArg := ""
	for i, a := range rc.Args {
		if a == "--config" && i+1 < len(rc.Args) {
			cfgArg = rc.Args[i+1]
		}
	}
	if v, ok := under(cfgArg); !ok || vols[v].ConfigMap == nil || configMaps[vols[v].ConfigMap.Name] == nil {
		t.Errorf("--config %q is not in a mounted ConfigMap of these manifests", cfgArg)
	} else if filepath.Base(cfgArg) != "node.yaml" {
		t.Errorf("--config %q: the ConfigMap's key is node.yaml", cfgArg)
	}
	for _, f := range []string{node.TLS.CAFile, node.TLS.CertFile, node.TLS.KeyFile} {
		v, ok := under(f)
		if !ok || vols[v].Secret == nil {
			t.Errorf("TLS file %s is not in a mounted Secret", f)
			continue
		}
		if name := vols[v].Secret.SecretName; !slices.Contains(externalSecrets, name) {
			t.Errorf("TLS Secret %q is not the documented one", name)
		}
	}
	if v, ok := under(node.DataDir); !ok || !claims[v] {
		t.Errorf("data_dir %s is not on a volume claim: raft state would not survive a restart", node.DataDir)
	}

	// Services that select these pods must target ports they have.
	for _, svc := range services {
		if !selects(svc.Spec.Selector, labels) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if name := p.TargetPort.StrVal; name != "" {
				if _, ok := ports[name]; !ok {
					t.Errorf("Service %s targets port %q, which the raftelect container lacks", svc.Name, name)
				}
			}
		}
	}
	if !selects(services["raftelect-peer"].Spec.Selector, labels) {
		t.Error("Service raftelect-peer does not select these pods")
	}
}

func checkProbe(t *testing.T, kind string, p *corev1.Probe, path string, ports map[string]int32) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("no HTTP %s probe", kind)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s probe on %s, want %s", kind, p.HTTPGet.Path, path)
	}
	if name := p.HTTPGet.Port.StrVal; name != "http" || ports[name] == 0 {
		t.Errorf("%s probe on port %q, want the http port", kind, p.HTTPGet.Port.String())
	}
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func port(t *testing.T, hostport string) int32 {
	t.Helper()
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		t.Fatalf("%q is not host:port", hostport)
	}
	var p int32
	for _, c := range hostport[i+1:] {
		if c < '0' || c > '9' {
			t.Fatalf("%q is not host:port", hostport)
		}
		p = p*10 + c - '0'
	}
	return p
}
