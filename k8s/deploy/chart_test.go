package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

const chartDir = "../../deploy/helm/raftelect"

// layouts are the chart's layouts, each rendered with ci/<layout>-values.yaml.
var layouts = []string{"sidecar", "exec"}

// helm returns the helm binary: $RAFTELECT_HELM or helm on PATH. Without one the chart tests skip (fail,
// with RAFTELECT_REQUIRE_HELM set).
func helm(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("RAFTELECT_HELM"); h != "" {
		return h
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	msg := "no helm: set RAFTELECT_HELM=$(tools/k8s-assets/build.sh helm) (it builds helm v3.22.0 from the module proxy) or run make test-k8s"
	if os.Getenv("RAFTELECT_REQUIRE_HELM") != "" {
		t.Fatal(msg)
	}
	t.Skip("skipping the chart tests: " + msg)
	return ""
}

func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(helm(t), args...).CombinedOutput()
	return string(out), err
}

// certificate is the part of cert-manager's v1 Certificate the chart uses,
// decoded strictly: a field cert-manager does not have fails.
type certificate struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		SecretName  string   `json:"secretName"`
		CommonName  string   `json:"commonName"`
		DNSNames    []string `json:"dnsNames"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		Usages      []string `json:"usages"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Group string `json:"group"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

// render renders the chart for layout (and extra helm arguments, such as
// --set) and decodes it strictly.
func render(t *testing.T, layout string, extra ...string) ([]object, []certificate) {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", "raftelect", chartDir, "--namespace", "raftelect",
		"-f", filepath.Join(chartDir, "ci", layout+"-values.yaml")}, extra...)...)
	if err != nil {
		t.Fatalf("helm template (%s): %v\n%s", layout, err, out)
	}
	var certs []certificate
	objs := decodeDocs(t, "chart/"+layout, []byte(out), func(name string, doc []byte) bool {
		var c certificate
		if err := sigsyaml.UnmarshalStrict(doc, &c); err != nil || c.Kind != "Certificate" || c.APIVersion != "cert-manager.io/v1" {
			return false
		}
		certs = append(certs, c)
		return true
	})
	return objs, certs
}

// TestChartLints: helm lint --strict passes for both layouts.
func TestChartLints(t *testing.T) {
	for _, l := range layouts {
		if out, err := runHelm(t, "lint", "--strict", chartDir, "-f", filepath.Join(chartDir, "ci", l+"-values.yaml")); err != nil {
			t.Errorf("helm lint (%s): %v\n%s", l, err, out)
		}
	}
}

// TestChartRendersStrictly renders each layout and holds it to what the
// plain manifests are held to (strict decoding, ports, probes, volumes,
// Services, node.yaml accepted by raftelect), plus: the built image, a
// cert-manager Certificate for the peer certificate whose Secret is the one
// mounted, whose CommonName is the node name and which serves and dials.
func TestChartRendersStrictly(t *testing.T) {
	image := Image(t)
	chart, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := sigsyaml.Unmarshal(chart, &meta); err != nil {
		t.Fatal(err)
	}
	if "ghcr.io/raftelect/raftelect:"+meta.AppVersion != image {
		t.Errorf("Chart.yaml appVersion %q does not follow deploy/VERSION (%s)", meta.AppVersion, image)
	}
	for _, l := range layouts {
		t.Run(l, func(t *testing.T) {
			objs, certs := render(t, l)
			checkWiring(t, objs)
			var node nodeYAML
			var secret string
			for _, o := range objs {
				switch v := o.obj.(type) {
				case *corev1.ConfigMap:
					sigsyaml.Unmarshal([]byte(v.Data["node.yaml"]), &node)
				case *appsv1.StatefulSet:
					for _, c := range allContainers(&v.Spec.Template.Spec) {
						if slices.Contains(c.Command, "/usr/local/bin/raftelect") && l == "sidecar" && c.Image != image {
							t.Errorf("the raftelect container runs %q, want %q", c.Image, image)
						}
					}
					for _, vol := range v.Spec.Template.Spec.Volumes {
						if vol.Secret != nil {
							secret = vol.Secret.SecretName
						}
					}
				}
			}
			if len(certs) != 1 {
				t.Fatalf("%d cert-manager Certificates rendered, want 1", len(certs))
			}
			c := certs[0].Spec
			if c.SecretName != secret {
				t.Errorf("the Certificate fills Secret %q, the pod mounts %q", c.SecretName, secret)
			}
			if c.CommonName != node.Name || !slices.Contains(c.DNSNames, node.Name) {
				t.Errorf("the Certificate is for %q %v; the node is %q (CommonName and a DNS name)", c.CommonName, c.DNSNames, node.Name)
			}
			for _, u := range []string{"server auth", "client auth"} {
				if !slices.Contains(c.Usages, u) {
					t.Errorf("the Certificate lacks usage %q: mutual TLS needs the peer certificate to serve and to dial", u)
				}
			}
			if c.IssuerRef.Name == "" {
				t.Error("the Certificate names no issuer")
			}
		})
	}
}

// TestChartStreamHeartbeatsOnly: node.streamHeartbeatsOnly, the way out on
// clusters whose peer Service cannot carry TCP and UDP at once, sets
// stream_heartbeats_only in node.yaml and leaves UDP off the peer Service,
// and the result still passes the wiring checks; by default node.yaml
// leaves datagrams on and the Service carries UDP (TestChartRendersStrictly).
func TestChartStreamHeartbeatsOnly(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run("streamHeartbeatsOnly="+strconv.FormatBool(on), func(t *testing.T) {
			objs, _ := render(t, "sidecar", "--set", "node.streamHeartbeatsOnly="+strconv.FormatBool(on))
			checkWiring(t, objs)
			var node nodeYAML
			var peerProtocols []corev1.Protocol
			for _, o := range objs {
				switch v := o.obj.(type) {
				case *corev1.ConfigMap:
					if err := sigsyaml.Unmarshal([]byte(v.Data["node.yaml"]), &node); err != nil {
						t.Fatal(err)
					}
				case *corev1.Service:
					if v.Name == "raftelect-peer" {
						for _, p := range v.Spec.Ports {
							peerProtocols = append(peerProtocols, protocol(p.Protocol))
						}
					}
				}
			}
			if node.StreamHeartbeatsOnly != on {
				t.Errorf("node.streamHeartbeatsOnly=%v: node.yaml has stream_heartbeats_only %v", on, node.StreamHeartbeatsOnly)
			}
			if udp := slices.Contains(peerProtocols, corev1.ProtocolUDP); udp == on {
				t.Errorf("node.streamHeartbeatsOnly=%v: the peer Service's protocols are %v (UDP wanted: %v; a mixed LoadBalancer Service is what older clusters refuse)", on, peerProtocols, !on)
			}
		})
	}
}

// TestChartRefusesIncompleteValues: without a node name or peers, or with
// an unknown layout, rendering fails and says what to set.
func TestChartRefusesIncompleteValues(t *testing.T) {
	values := filepath.Join(chartDir, "ci", "sidecar-values.yaml")
	for _, tt := range []struct{ set, want string }{
		{"node.name=", "node.name is required"},
		{"node.peers=null", "node.peers is required"},
		{"layout=daemon", `layout "daemon": want sidecar or exec`},
	} {
		out, err := runHelm(t, "template", "raftelect", chartDir, "-f", values, "--set", tt.set)
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("helm template --set %s: %v, output %q; want a failure saying %q", tt.set, err, out, tt.want)
		}
	}
}
