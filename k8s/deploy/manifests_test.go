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
	"fmt"
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
	// StreamHeartbeatsOnly: no datagram heartbeats, so no UDP is needed.
	StreamHeartbeatsOnly bool `json:"stream_heartbeats_only"`
	TLS                  struct {
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
	for _, p := range peerPortProblems(rc.Ports, services["raftelect-peer"], node, port(t, node.ListenAddress)) {
		t.Error(p)
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

	// Services that select these pods must target ports they have, of the
	// same protocol: Kubernetes resolves a named target port by name and
	// protocol, so a UDP Service port naming a TCP container port reaches
	// nothing.
	for _, svc := range services {
		if !selects(svc.Spec.Selector, labels) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			name := p.TargetPort.StrVal
			if name == "" {
				continue
			}
			i := slices.IndexFunc(rc.Ports, func(c corev1.ContainerPort) bool { return c.Name == name })
			if i < 0 {
				t.Errorf("Service %s targets port %q, which the raftelect container lacks", svc.Name, name)
			} else if sp, cp := protocol(p.Protocol), protocol(rc.Ports[i].Protocol); sp != cp {
				t.Errorf("Service %s port %s (%s) targets container port %q, which is %s: it reaches nothing", svc.Name, p.Name, sp, name, cp)
			}
		}
	}
	if !selects(services["raftelect-peer"].Spec.Selector, labels) {
		t.Error("Service raftelect-peer does not select these pods")
	}
}

// peerPortProblems says what is wrong with the peer port of the raftelect
// container (ports) and the peer Service, for a node listening on port
// listen. The node takes TCP (its streams) on listen and, unless node.yaml
// sets stream_heartbeats_only, UDP on the same number: a leader sends its
// datagram heartbeats to the address and port number its TCP connection
// reached, and the answer goes back to where the datagram came from
// (docs/transport.md, "Datagram heartbeats"). So the container declares
// peer (TCP) and peer-udp (UDP) on listen, and the peer Service forwards TCP
// and UDP on one port number to them. The container port peer-udp is
// required even with stream_heartbeats_only: it costs nothing and turning
// datagrams on then needs only the Service.
func peerPortProblems(ports []corev1.ContainerPort, peer *corev1.Service, node nodeYAML, listen int32) []string {
	var problems []string
	for _, want := range []struct {
		name  string
		proto corev1.Protocol
	}{{"peer", corev1.ProtocolTCP}, {"peer-udp", corev1.ProtocolUDP}} {
		i := slices.IndexFunc(ports, func(p corev1.ContainerPort) bool { return p.Name == want.name })
		switch {
		case i < 0:
			problems = append(problems, fmt.Sprintf("no container port %s: node.yaml listens on %d/%s (docs/transport.md, \"Datagram heartbeats\")", want.name, listen, want.proto))
		case ports[i].ContainerPort != listen || protocol(ports[i].Protocol) != want.proto:
			problems = append(problems, fmt.Sprintf("container port %s is %d/%s; node.yaml listens on %d/%s", want.name, ports[i].ContainerPort, protocol(ports[i].Protocol), listen, want.proto))
		}
	}
	if peer == nil {
		return problems // checkWiring reports the missing Service
	}
	// The Service's port numbers that reach the container's listen port,
	// by protocol.
	reaching := map[corev1.Protocol][]int32{}
	for _, sp := range peer.Spec.Ports {
		proto := protocol(sp.Protocol)
		target := sp.TargetPort.IntVal
		if name := sp.TargetPort.StrVal; name != "" {
			i := slices.IndexFunc(ports, func(p corev1.ContainerPort) bool { return p.Name == name && protocol(p.Protocol) == proto })
			if i < 0 {
				continue
			}
			target = ports[i].ContainerPort
		} else if target == 0 {
			target = sp.Port // targetPort defaults to port
		}
		if target == listen {
			reaching[proto] = append(reaching[proto], sp.Port)
		}
	}
	tcp := reaching[corev1.ProtocolTCP]
	if len(tcp) == 0 {
		problems = append(problems, fmt.Sprintf("Service %s forwards no TCP port to the peer listener's %d", peer.Name, listen))
	}
	if node.StreamHeartbeatsOnly {
		return problems
	}
	if udp := reaching[corev1.ProtocolUDP]; !slices.ContainsFunc(udp, func(p int32) bool { return slices.Contains(tcp, p) }) {
		problems = append(problems, fmt.Sprintf("Service %s forwards UDP on %v and TCP on %v to the peer listener's %d: datagram heartbeats need UDP on the TCP port's number "+
			"(add a port peer-udp, protocol UDP, targetPort peer-udp; or set stream_heartbeats_only: true in node.yaml)", peer.Name, udp, tcp, listen))
	}
	return problems
}

// protocol is p as Kubernetes takes it: empty is TCP.
func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
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

// TestPeerPortChecksCatchMissingUDP: the peer port checks pass on the
// manifests and fail on each way of losing the datagram heartbeats' UDP
// port; otherwise TestManifestsWiring proves nothing about it.
func TestPeerPortChecksCatchMissingUDP(t *testing.T) {
	var (
		ports []corev1.ContainerPort
		peer  *corev1.Service
		node  nodeYAML
	)
	for _, o := range decodeAll(t) {
		switch v := o.obj.(type) {
		case *appsv1.StatefulSet:
			for _, c := range allContainers(&v.Spec.Template.Spec) {
				if len(c.Ports) > 0 {
					ports = c.Ports
				}
			}
		case *corev1.Service:
			if v.Name == "raftelect-peer" {
				peer = v
			}
		case *corev1.ConfigMap:
			if err := sigsyaml.Unmarshal([]byte(v.Data["node.yaml"]), &node); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ports == nil || peer == nil || node.ListenAddress == "" {
		t.Fatalf("the manifests lack the raftelect container's ports (%v), the peer Service (%v) or node.yaml's listen_address", ports, peer)
	}
	listen := port(t, node.ListenAddress)
	if p := peerPortProblems(ports, peer, node, listen); len(p) > 0 {
		t.Fatalf("the manifests as they are: %v", p)
	}
	withoutPort := func(ps []corev1.ContainerPort, name string) []corev1.ContainerPort {
		return slices.DeleteFunc(slices.Clone(ps), func(p corev1.ContainerPort) bool { return p.Name == name })
	}
	withoutServicePort := func(proto corev1.Protocol) *corev1.Service {
		s := peer.DeepCopy()
		s.Spec.Ports = slices.DeleteFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return protocol(p.Protocol) == proto })
		return s
	}
	changed := func(name string, f func(*corev1.ContainerPort)) []corev1.ContainerPort {
		ps := slices.Clone(ports)
		for i := range ps {
			if ps[i].Name == name {
				f(&ps[i])
			}
		}
		return ps
	}
	streamOnly := node
	streamOnly.StreamHeartbeatsOnly = true
	for _, tt := range []struct {
		name  string
		ports []corev1.ContainerPort
		peer  *corev1.Service
		node  nodeYAML
		want  string // "" for no problem
	}{
		{"no container port peer-udp", withoutPort(ports, "peer-udp"), peer, node, "no container port peer-udp"},
		{"peer-udp is TCP", changed("peer-udp", func(p *corev1.ContainerPort) { p.Protocol = corev1.ProtocolTCP }), peer, node, "container port peer-udp is 7000/TCP"},
		{"peer-udp on another number", changed("peer-udp", func(p *corev1.ContainerPort) { p.ContainerPort = listen + 1 }), peer, node, "container port peer-udp is 7001/UDP"},
		{"no UDP on the Service", ports, withoutServicePort(corev1.ProtocolUDP), node, "datagram heartbeats need UDP on the TCP port's number"},
		{"UDP on another Service port", ports, func() *corev1.Service {
			s := peer.DeepCopy()
			for i := range s.Spec.Ports {
				if s.Spec.Ports[i].Protocol == corev1.ProtocolUDP {
					s.Spec.Ports[i].Port++
				}
			}
			return s
		}(), node, "datagram heartbeats need UDP on the TCP port's number"},
		{"no TCP on the Service", ports, withoutServicePort(corev1.ProtocolTCP), node, "forwards no TCP port"},
		{"no UDP on the Service, stream_heartbeats_only", ports, withoutServicePort(corev1.ProtocolUDP), streamOnly, ""},
		{"no container port peer-udp, stream_heartbeats_only", withoutPort(ports, "peer-udp"), peer, streamOnly, "no container port peer-udp"},
	} {
		problems := peerPortProblems(tt.ports, tt.peer, tt.node, listen)
		found := slices.ContainsFunc(problems, func(p string) bool { return tt.want != "" && strings.Contains(p, tt.want) })
		if tt.want == "" && len(problems) > 0 || tt.want != "" && !found {
			t.Errorf("%s: problems %q, want one saying %q", tt.name, problems, tt.want)
		}
	}
}
