package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftelect/raftelect/internal/nodeopts"
)

// base is a valid insecure config; tests replace lines of it.
const base = `name: n1
peers:
  - name: n1
    address: 127.0.0.1:7001
  - name: n2
    address: 127.0.0.1:7002
  - name: n3
    address: 127.0.0.1:7003
heartbeat_interval: 100ms
election_timeout: 1s
insecure: true
`

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadValidConfigAppliesDefaultsAndConverts(t *testing.T) {
	n, err := Load(write(t, base+"labels: {url: 'http://a'}\ndata_dir: data\n"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Log.Level != "info" || n.Log.Format != "text" || n.LeaseDriftMargin != 0.1 {
		t.Errorf("defaults not applied: %+v", n)
	}
	if !filepath.IsAbs(n.DataDir) || filepath.Dir(n.DataDir) != filepath.Dir(n.File()) {
		t.Errorf("data_dir %q not resolved against the config's directory", n.DataDir)
	}
	c := n.ElectionConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Name != "n1" || len(c.Peers) != 3 || c.HeartbeatInterval != 100*time.Millisecond || c.ElectionTimeout != time.Second || c.Labels["url"] != "http://a" {
		t.Errorf("conversion lost something: %+v", c)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	// examples/node.yaml documents every field; it must stay loadable.
	// Its TLS files do not exist here, so take them away with insecure.
	n, err := Load("../examples/node.yaml", LoadOptions{Flags: map[string]string{"insecure": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if n.Name == "" || len(n.Peers) < 3 {
		t.Errorf("example lost its peers: %+v", n)
	}
}

func TestFlagsOverrideEnvironmentOverrideFile(t *testing.T) {
	env := map[string]string{
		"RAFTELECT_NAME":         "n2",
		"RAFTELECT_HTTP_ADDRESS": "127.0.0.1:9002",
		"RAFTELECT_LOG_FORMAT":   "text",
	}
	n, err := Load(write(t, base+"http_address: 127.0.0.1:9001\nlog: {format: text}\n"), LoadOptions{
		Env:   func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Flags: map[string]string{"log-format": "json", "data-dir": "rel"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "n2" || n.HTTPAddress != "127.0.0.1:9002" || n.Log.Format != "json" || n.DataDir != "rel" {
		t.Errorf("overrides not applied in order: name=%s http=%s format=%s data=%s", n.Name, n.HTTPAddress, n.Log.Format, n.DataDir)
	}
	if s := n.Source("log.format"); s != "--log-format" {
		t.Errorf("source of log.format = %q", s)
	}
}

func TestNoFileEverythingFromEnvironment(t *testing.T) {
	env := map[string]string{
		"RAFTELECT_NAME":     "a",
		"RAFTELECT_PEERS":    "a=127.0.0.1:1,b=127.0.0.1:2,c=127.0.0.1:3",
		"RAFTELECT_INSECURE": "true",
	}
	n, err := Load("", LoadOptions{Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Peers) != 3 || n.Peers[2].Address != "127.0.0.1:3" {
		t.Errorf("peers = %+v", n.Peers)
	}
}

// TestInvalidFieldsAreNamed: every invalid field gives an error naming the
// field (with its line when it came from the file) and what is wrong.
func TestInvalidFieldsAreNamed(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string            // replaces base when it has no "name:" line, appended otherwise
		flags map[string]string // optional
		want  string
	}{
		{"unknown top-level field", base + "heartbeat: 1s\n", nil, `node.yaml:12: heartbeat: unknown field "heartbeat"; known fields here: name, peers,`},
		{"unknown nested field", strings.Replace(base, "    address: 127.0.0.1:7002", "    adress: 127.0.0.1:7002", 1), nil, `node.yaml:6: peers[1].adress: unknown field "adress"; known fields here: name, address`},
		{"unknown tls field", base + "tls:\n  ca: x\n", nil, `node.yaml:13: tls.ca: unknown field "ca"`},
		{"wrong type", base + "lease_drift_margin: lots\n", nil, "node.yaml:12: lease_drift_margin: cannot unmarshal !!str `lots` into float64"},
		{"duration without unit", strings.Replace(base, "100ms", "100", 1), nil, `node.yaml:9: heartbeat_interval: "100" is not a duration; write it with a unit`},
		{"bad yaml", "name: [\n", nil, "node.yaml: line 1: did not find expected node content"},
		{"duplicate key", base + "name: n2\n", nil, `mapping key "name" already defined at line 1`},
		{"name empty", strings.Replace(base, "name: n1\npeers", "peers", 1), nil, "name: empty; give this node a name that appears in peers"},
		{"name not a peer", strings.Replace(base, "name: n1\npeers", "name: n9\npeers", 1), nil, `node.yaml:1: name: "n9" is not among peers`},
		{"no peers", "name: n1\ninsecure: true\n", nil, "node.yaml: peers: empty; list every node of the cluster"},
		{"peer name empty", strings.Replace(base, "  - name: n2", "  - name: ''", 1), nil, "node.yaml:5: peers[1].name: empty"},
		{"peer name twice", strings.Replace(base, "  - name: n2", "  - name: n1", 1), nil, `node.yaml:5: peers[1].name: "n1" appears twice (also peers[0])`},
		{"peer address empty", strings.Replace(base, "    address: 127.0.0.1:7002", "    address: ''", 1), nil, "node.yaml:6: peers[1].address: empty; give host:port"},
		{"peer address not host:port", strings.Replace(base, "    address: 127.0.0.1:7002", "    address: x", 1), nil, `node.yaml:6: peers[1].address: "x" is not host:port`},
		{"peer address twice", strings.Replace(base, "127.0.0.1:7003", "127.0.0.1:7002", 1), nil, "node.yaml:8: peers[2].address: 127.0.0.1:7002 is also the address of peers[1] (n2)"},
		{"peer pin not a pin", strings.Replace(base, "    address: 127.0.0.1:7002", "    address: 127.0.0.1:7002\n    public_key_pins: [sha256:abcd]", 1), nil, `node.yaml:7: peers[1].public_key_pins[0]: public key pin "sha256:abcd" is not "sha256:" and 64 hex digits`},
		{"peer identity twice", strings.Replace(base, "    address: 127.0.0.1:7003", "    address: 127.0.0.1:7003\n    identity: n2", 1), nil, `node.yaml:9: peers[2].identity: "n2" is also the identity of peers[1] (n2)`},
		{"listen address", base + "listen_address: 7000\n", nil, `node.yaml:12: listen_address: "7000" is not host:port`},
		{"heartbeat too small", strings.Replace(base, "100ms", "1ms", 1), nil, "node.yaml:9: heartbeat_interval: 1ms is below 10ms"},
		{"heartbeat negative", strings.Replace(base, "100ms", "-1s", 1), nil, "node.yaml:9: heartbeat_interval: -1s must be positive"},
		{"election timeout too small", strings.Replace(base, "election_timeout: 1s", "election_timeout: 150ms", 1), nil, "node.yaml:10: election_timeout: 150ms must be more than twice heartbeat_interval (100ms)"},
		{"drift margin", base + "lease_drift_margin: 0.9\n", nil, "node.yaml:12: lease_drift_margin: 0.9 must be between 0.01 and 0.5"},
		{"tls missing", strings.Replace(base, "insecure: true\n", "", 1), nil, "node.yaml: tls.ca_file: empty; mutual TLS needs"},
		{"tls file missing", strings.Replace(base, "insecure: true\n", "tls: {ca_file: /nonexistent/ca.crt, cert_file: /x.crt, key_file: /x.key}\n", 1), nil, "node.yaml:11: tls.ca_file: stat /nonexistent/ca.crt: no such file or directory"},
		{"http address", base + "http_address: localhost\n", nil, `node.yaml:12: http_address: "localhost" is not host:port`},
		{"log level", base + "log:\n  level: loud\n", nil, `node.yaml:13: log.level: "loud" is not one of debug, info, warn, error`},
		{"log format", base + "log:\n  format: xml\n", nil, `node.yaml:13: log.format: "xml" is not text or json`},
		{"data dir is a file", base + "data_dir: node.yaml\n", nil, "node.yaml:12: data_dir: "},
		{"label key too long", base + "labels:\n  " + strings.Repeat("k", 64) + ": v\n", nil, "node.yaml:13: labels." + strings.Repeat("k", 64) + ": keys must be 1-63 bytes"},
		{"control queue", base + "transport:\n  control_queue: -1\n", nil, "node.yaml:13: transport.control_queue: -1 must be between 1 and 65536"},
		{"data queue", base + "transport:\n  data_queue: 100000\n", nil, "node.yaml:13: transport.data_queue: 100000 must be between 1 and 65536"},
		{"keepalive below grpc minimum", base + "transport:\n  keepalive_time: 1s\n", nil, "node.yaml:13: transport.keepalive_time: 1s is below gRPC's 10s minimum"},
		{"negative backoff", base + "transport:\n  max_reconnect_backoff: -1s\n", nil, "node.yaml:13: transport.max_reconnect_backoff: -1s must be positive"},
		{"negative keepalive timeout", base + "transport:\n  keepalive_timeout: -1s\n", nil, "node.yaml:13: transport.keepalive_timeout: -1s must be positive"},
		{"drop log interval", base + "transport:\n  drop_log_interval: 10ms\n", nil, "node.yaml:13: transport.drop_log_interval: 10ms is below 1s"},
		{"operator empty", base + "operators: ['']\n", nil, "node.yaml:12: operators[0]: empty; give the CommonName or DNS SAN"},
		{"operator twice", base + "operators: [ops, ops]\n", nil, `node.yaml:12: operators[1]: "ops" appears twice (also operators[0])`},
		{"operator is a member", base + "operators: [n2]\n", nil, `node.yaml:12: operators[0]: "n2" is the identity of peers[1] (n2); give operators certificates of their own`},
		{"negative connection cap", base + "transport:\n  max_connections_per_source: -1\n", nil, "node.yaml:13: transport.max_connections_per_source: -1 must be positive"},
		{"one connection per identity", base + "transport:\n  max_connections_per_identity: 1\n", nil, "node.yaml:13: transport.max_connections_per_identity: 1 would refuse a member's new connection"},
		{"handshake timeout too short", base + "transport:\n  handshake_timeout: 10ms\n", nil, "node.yaml:13: transport.handshake_timeout: 10ms is below 100ms"},
		{"witness with priority", strings.Replace(base, "    address: 127.0.0.1:7003", "    address: 127.0.0.1:7003\n    witness: true\n    priority: 5", 1), nil, "node.yaml:10: peers[2].priority: 5 on a witness: a witness never leads, so it takes no priority; remove priority, or witness to let n3 lead"},
		{"priority too high", strings.Replace(base, "    address: 127.0.0.1:7002", "    address: 127.0.0.1:7002\n    priority: 1001", 1), nil, "node.yaml:7: peers[1].priority: 1001 is outside 0..1000"},
		{"priority negative", strings.Replace(base, "    address: 127.0.0.1:7002", "    address: 127.0.0.1:7002\n    priority: -1", 1), nil, "node.yaml:7: peers[1].priority: -1 is outside 0..1000"},
		{"witness not a bool", strings.Replace(base, "    address: 127.0.0.1:7002", "    address: 127.0.0.1:7002\n    witness: sometimes", 1), nil, "node.yaml:7: peers[1].witness: cannot unmarshal !!str `sometimes` into bool"},
		{"join without cluster id", base + "join: true\n", nil, "node.yaml:12: join: true needs cluster_id: the ID of the cluster to join (`raftelect members list` prints it)"},
		{"join flag without cluster id", base, map[string]string{"join": "true"}, "join (from --join): true needs cluster_id"},
		{"fail back below election timeout", base + "fail_back_after: 500ms\n", nil, "node.yaml:12: fail_back_after: 500ms is below election_timeout (1s): leadership would move back before the cluster is known to be stable"},
		{"fail back without unit", base + "fail_back_after: 30\n", nil, `node.yaml:12: fail_back_after: "30" is not a duration`},
		{"bad flag value", base, map[string]string{"election-timeout": "soon"}, `election_timeout (from --election-timeout): "soon" is not a duration`},
		{"bad flag peers", base, map[string]string{"peers": "n1=127.0.0.1:1,n2"}, `peers (from --peers): "n2" is not name=host:port`},
		{"flag makes field invalid", base, map[string]string{"log-format": "yaml"}, `log.format (from --log-format): "yaml" is not text or json`},
		{"bad bool flag", base, map[string]string{"insecure": "maybe"}, `insecure (from --insecure): "maybe" is not true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, tt.yaml), LoadOptions{Flags: tt.flags})
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			got := strings.ReplaceAll(err.Error(), filepath.Dir(err.(*Error).File)+"/", "")
			if !strings.Contains(got, tt.want) {
				t.Errorf("error:\n%s\nwant it to contain:\n%s", got, tt.want)
			}
		})
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	_, err := Load(write(t, "name: n1\npeers: [{name: n1, address: x}]\nlog: {format: xml}\ninsecure: true\n"), LoadOptions{})
	if err == nil {
		t.Fatal("no error")
	}
	if n := len(err.(*Error).Problems); n != 2 {
		t.Errorf("got %d problems, want 2:\n%v", n, err)
	}
}

// Identities and pins reach the election configuration as written.
func TestIdentityAndPinsReachElectionConfig(t *testing.T) {
	pin := "sha256:" + strings.Repeat("ab", 32)
	body := strings.Replace(base, "    address: 127.0.0.1:7002", "    address: 127.0.0.1:7002\n    identity: n2.example\n    public_key_pins: ['"+pin+"']", 1)
	n, err := Load(write(t, body), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := n.ElectionConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if p := c.Peers[1]; p.Identity != "n2.example" || len(p.PublicKeyPins) != 1 || p.PublicKeyPins[0] != pin {
		t.Errorf("peers[1] = %+v, want identity n2.example and pin %s", p, pin)
	}
}

func TestUnsafeSyncSendReachesElectionConfig(t *testing.T) {
	// The chaos repro turns the reference system's synchronous sends on
	// through the node config; off unless asked for.
	n, err := Load(write(t, base), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	syncSend := func(n *Node) bool {
		ec := n.ElectionConfig()
		return nodeopts.Of(&ec).UnsafeSyncSend
	}
	if syncSend(n) {
		t.Fatal("unsafe_sync_send is on by default")
	}
	n, err = Load(write(t, base+"unsafe_sync_send: true\n"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !syncSend(n) {
		t.Fatal("unsafe_sync_send: true did not reach election.Config")
	}
}

func TestOperatorsAndConnectionLimitsReachElectionConfig(t *testing.T) {
	n, err := Load(write(t, base+"operators: [ops, ops.example]\ntransport:\n  max_connections: 100\n  max_connections_per_source: 10\n  max_pending_connections: 50\n  max_pending_per_source: 5\n  max_connections_per_identity: 3\n  handshake_timeout: 2s\n"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := n.ElectionConfig()
	if len(c.Operators) != 2 || c.Operators[0] != "ops" || c.Operators[1] != "ops.example" {
		t.Errorf("operators = %v", c.Operators)
	}
	l := c.ConnectionLimits
	if l.MaxConns != 100 || l.MaxConnsPerSource != 10 || l.MaxPendingConns != 50 || l.MaxPendingPerSource != 5 || l.MaxConnsPerIdentity != 3 || l.HandshakeTimeout != 2*time.Second {
		t.Errorf("connection limits = %+v", l)
	}
}

// TestMarshalRoundTrips: a configuration written by Marshal loads back
// equal, and the file holds only the fields that were set.
func TestMarshalRoundTrips(t *testing.T) {
	want := Node{
		Name: "n1",
		Peers: []Peer{
			{Name: "n1", Address: "127.0.0.1:7001"},
			{Name: "n2", Address: "127.0.0.1:7002", Identity: "two", PublicKeyPins: []string{"sha256:" + strings.Repeat("ab", 32)}},
			{Name: "n3", Address: "127.0.0.1:7003"},
		},
		HeartbeatInterval:     Duration(50 * time.Millisecond),
		ElectionTimeout:       Duration(1500 * time.Millisecond),
		FastFailoverOnRefusal: true,
		Insecure:              true,
		Labels:                map[string]string{"url": "0"}, // a string "0" is a value, not a zero
		Transport:             Transport{KeepaliveTime: Duration(20 * time.Second)},
		FailBackAfter:         Duration(10 * time.Second),
	}
	want.Peers[1].Priority = 7
	want.Peers[2].Witness = true
	dir := t.TempDir()
	want.DataDir = filepath.Join(dir, "data")
	path := filepath.Join(dir, "n1.yaml")
	if err := want.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"listen_address", "cluster_id", "lease_drift_margin", "tls", "log", "control_queue", "operators", "pprof", "join"} {
		if strings.Contains(string(b), absent) {
			t.Errorf("zero field %s written:\n%s", absent, b)
		}
	}
	got, err := Load(path, LoadOptions{})
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if got.Name != want.Name || got.HeartbeatInterval != want.HeartbeatInterval || got.ElectionTimeout != want.ElectionTimeout ||
		!got.FastFailoverOnRefusal || !got.Insecure || got.DataDir != want.DataDir || got.Labels["url"] != "0" ||
		got.Transport.KeepaliveTime != want.Transport.KeepaliveTime || len(got.Peers) != 3 ||
		got.Peers[1].Identity != "two" || len(got.Peers[1].PublicKeyPins) != 1 ||
		got.Peers[1].Priority != 7 || !got.Peers[2].Witness || got.FailBackAfter != want.FailBackAfter {
		t.Errorf("loaded back %+v\nfrom:\n%s", got, b)
	}
}

// Join, fail_back_after, witnesses and priorities reach the election
// configuration as written (from the file and from flags), and the
// defaults are those election.Config takes.
func TestMembershipFieldsReachElectionConfig(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	body := strings.Replace(base, "    address: 127.0.0.1:7002", "    address: 127.0.0.1:7002\n    priority: 10", 1)
	body = strings.Replace(body, "    address: 127.0.0.1:7003", "    address: 127.0.0.1:7003\n    witness: true", 1)
	n, err := Load(write(t, body+"join: true\ncluster_id: "+id+"\nfail_back_after: 30s\n"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := n.ElectionConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.Join || c.ClusterID != id || c.FailBackAfter != 30*time.Second {
		t.Errorf("join %v, cluster ID %q, fail-back %v; want true, %s, 30s", c.Join, c.ClusterID, c.FailBackAfter, id)
	}
	if p := c.Peers[1]; p.Priority != 10 || p.Witness {
		t.Errorf("peers[1] = %+v, want priority 10, no witness", p)
	}
	if p := c.Peers[2]; !p.Witness || p.Priority != 0 {
		t.Errorf("peers[2] = %+v, want a witness", p)
	}

	// Defaults: no join, fail-back after 3 election timeouts.
	n, err = Load(write(t, base), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := n.ElectionConfig(); c.Join || c.FailBackAfter != 3*time.Second {
		t.Errorf("defaults: join %v, fail-back %v; want false, 3s", c.Join, c.FailBackAfter)
	}

	// Flags, as `raftelect run --join --fail-back-after -1s` gives them: a
	// negative fail-back never moves leadership.
	n, err = Load(write(t, base), LoadOptions{Flags: map[string]string{"join": "true", "cluster-id": id, "fail-back-after": "-1s"}})
	if err != nil {
		t.Fatal(err)
	}
	if c := n.ElectionConfig(); !c.Join || c.FailBackAfter >= 0 || n.Source("join") != "--join" {
		t.Errorf("from flags: join %v (source %q), fail-back %v; want true from --join, negative", c.Join, n.Source("join"), c.FailBackAfter)
	}
}

// pflag takes a back-quoted word of a flag's usage for the name of its
// value (`--join raftelect members add[="true"]` in run's help): no
// override may have one.
func TestOverrideUsagesHaveNoBackquotes(t *testing.T) {
	for _, ov := range Overrides {
		if strings.Contains(ov.Usage, "`") {
			t.Errorf("--%s: usage %q has a backquote", ov.Flag, ov.Usage)
		}
	}
}
