package config

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/internal/clusterid"
	"github.com/raftelect/raftelect/transport"
)

// validate checks every field and returns every problem, each naming its
// YAML field. It covers what election.Config.Validate checks, with the
// file's field names; that check runs afterwards as a backstop for rules
// added there later.
func (n *Node) validate() []FieldError {
	var errs []FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}

	if n.Name == "" {
		bad("name", "empty; give this node a name that appears in peers")
	}
	if len(n.Peers) == 0 {
		bad("peers", "empty; list every node of the cluster, this one included")
	}
	names := map[string]int{}
	addrs := map[string]int{}
	identities := map[string]int{}
	ids := map[uint64]int{}
	self := false
	for i, p := range n.Peers {
		f := fmt.Sprintf("peers[%d]", i)
		switch j, dup := names[p.Name]; {
		case p.Name == "":
			bad(f+".name", "empty; every peer needs the name in its certificate")
		case dup:
			bad(f+".name", "%q appears twice (also peers[%d])", p.Name, j)
		default:
			names[p.Name] = i
			if id := election.NodeID(p.Name); id == 0 {
				bad(f+".name", "%q hashes to raft ID 0, which raft reserves; rename the node", p.Name)
			} else if j, ok := ids[id]; ok {
				bad(f+".name", "%q and peers[%d].name %q hash to the same raft ID; rename one", p.Name, j, n.Peers[j].Name)
			} else {
				ids[id] = i
			}
		}
		if p.Name != "" && p.Name == n.Name {
			self = true
		}
		if p.Name != "" {
			identity := p.Identity
			if identity == "" {
				identity = p.Name
			}
			if j, dup := identities[identity]; dup {
				bad(f+".identity", "%q is also the identity of peers[%d] (%s); certificates must tell members apart", identity, j, n.Peers[j].Name)
			} else {
				identities[identity] = i
			}
		}
		for k, pin := range p.PublicKeyPins {
			if _, err := transport.ParsePin(pin); err != nil {
				bad(fmt.Sprintf("%s.public_key_pins[%d]", f, k), "%v", err)
			}
		}
		switch {
		case p.Witness && p.Priority != 0:
			bad(f+".priority", "%d on a witness: a witness never leads, so it takes no priority; remove priority, or witness to let %s lead", p.Priority, p.Name)
		case p.Priority < 0 || p.Priority > 1000:
			bad(f+".priority", "%d is outside 0..1000 (0: no preference; leadership returns to the highest)", p.Priority)
		}
		switch j, dup := addrs[p.Address]; {
		case p.Address == "":
			bad(f+".address", "empty; give host:port of its peer listener")
		case !isHostPort(p.Address):
			bad(f+".address", "%q is not host:port", p.Address)
		case dup:
			bad(f+".address", "%s is also the address of peers[%d] (%s)", p.Address, j, n.Peers[j].Name)
		default:
			addrs[p.Address] = i
		}
	}
	if n.Name != "" && len(n.Peers) > 0 && !self {
		bad("name", "%q is not among peers; add it to peers or fix the name", n.Name)
	}
	if n.ListenAddress != "" && !isHostPort(n.ListenAddress) {
		bad("listen_address", "%q is not host:port", n.ListenAddress)
	}

	hb, et := n.HeartbeatInterval.D(), n.ElectionTimeout.D()
	switch {
	case hb < 0:
		bad("heartbeat_interval", "%v must be positive", hb)
	case hb < 10*time.Millisecond:
		bad("heartbeat_interval", "%v is below 10ms; it is also the raft tick, keep it at 10ms or more", hb)
	}
	if et <= 2*hb {
		bad("election_timeout", "%v must be more than twice heartbeat_interval (%v); about 10 heartbeats is usual", et, hb)
	}
	if m := n.LeaseDriftMargin; m < 0.01 || m > 0.5 {
		bad("lease_drift_margin", "%v must be between 0.01 and 0.5 (a fraction of election_timeout)", m)
	}
	if n.ClusterID != "" && !clusterid.Valid(n.ClusterID) {
		bad("cluster_id", "%q must be 32 lowercase hex digits (as `raftelect status` shows it), or empty for a new cluster to make its own", n.ClusterID)
	}

	if n.Join && n.ClusterID == "" {
		bad("join", "true needs cluster_id: the ID of the cluster to join (`raftelect members list` prints it), so that the node cannot join another cluster by mistake")
	}
	if fb := n.FailBackAfter.D(); fb > 0 && fb < et {
		bad("fail_back_after", "%v is below election_timeout (%v): leadership would move back before the cluster is known to be stable; use at least %v (default 3 election timeouts), or a negative value never to move it", fb, et, et)
	}

	if !n.Insecure {
		for _, f := range []struct{ field, path string }{
			{"tls.ca_file", n.TLS.CAFile}, {"tls.cert_file", n.TLS.CertFile}, {"tls.key_file", n.TLS.KeyFile},
		} {
			if f.path == "" {
				bad(f.field, "empty; mutual TLS needs the CA, certificate and key files (`raftelect certs` makes a development set), or set insecure: true for tests on loopback")
			} else if _, err := os.Stat(f.path); err != nil {
				bad(f.field, "%v", err)
			}
		}
	}

	if n.HTTPAddress != "" && !isHostPort(n.HTTPAddress) {
		bad("http_address", "%q is not host:port", n.HTTPAddress)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, n.Log.Level) {
		bad("log.level", "%q is not one of debug, info, warn, error", n.Log.Level)
	}
	if n.Log.Format != "text" && n.Log.Format != "json" {
		bad("log.format", "%q is not text or json", n.Log.Format)
	}
	if n.DataDir != "" {
		if fi, err := os.Stat(n.DataDir); err == nil && !fi.IsDir() {
			bad("data_dir", "%s is not a directory", n.DataDir)
		}
	}

	if len(n.Labels) > 32 {
		bad("labels", "%d labels; at most 32 (they are small metadata)", len(n.Labels))
	}
	for _, k := range sortedKeys(n.Labels) {
		if v := n.Labels[k]; k == "" || len(k) > 63 || len(v) > 1024 {
			bad("labels."+k, "keys must be 1-63 bytes and values at most 1024 bytes")
		}
	}

	t := n.Transport
	for _, q := range []struct {
		field string
		v     int
	}{{"transport.control_queue", t.ControlQueue}, {"transport.data_queue", t.DataQueue}} {
		if q.v < 0 || q.v > 1<<16 {
			bad(q.field, "%d must be between 1 and 65536 (0 takes the default)", q.v)
		}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"transport.max_reconnect_backoff", t.MaxReconnectBackoff.D()},
		{"transport.keepalive_time", t.KeepaliveTime.D()},
		{"transport.keepalive_timeout", t.KeepaliveTimeout.D()},
		{"transport.drop_log_interval", t.DropLogInterval.D()},
	} {
		if d.v < 0 {
			bad(d.field, "%v must be positive (0 takes the default)", d.v)
		}
	}
	for _, c := range []struct {
		field string
		v     int
	}{
		{"transport.max_connections", t.MaxConnections},
		{"transport.max_connections_per_source", t.MaxConnectionsPerSource},
		{"transport.max_pending_connections", t.MaxPendingConnections},
		{"transport.max_pending_per_source", t.MaxPendingPerSource},
		{"transport.max_connections_per_identity", t.MaxConnectionsPerIdentity},
	} {
		if c.v < 0 {
			bad(c.field, "%d must be positive (0 takes the default)", c.v)
		}
	}
	if t.MaxConnectionsPerIdentity == 1 {
		bad("transport.max_connections_per_identity", "1 would refuse a member's new connection while its old one is still being found dead; use at least 2 (0 takes the default)")
	}
	if h := t.HandshakeTimeout.D(); h < 0 {
		bad("transport.handshake_timeout", "%v must be positive (0 takes the default)", h)
	} else if h > 0 && h < 100*time.Millisecond {
		bad("transport.handshake_timeout", "%v is below 100ms: members on slow links could not complete their TLS handshakes", h)
	}
	ops := map[string]int{}
	for i, o := range n.Operators {
		f := fmt.Sprintf("operators[%d]", i)
		j, dup := ops[o]
		switch {
		case o == "":
			bad(f, "empty; give the CommonName or DNS SAN of the operator's certificate")
		case dup:
			bad(f, "%q appears twice (also operators[%d])", o, j)
		default:
			ops[o] = i
			for k, p := range n.Peers {
				if id := cmp.Or(p.Identity, p.Name); id == o {
					bad(f, "%q is the identity of peers[%d] (%s); give operators certificates of their own (`raftelect certs issue --operator --name NAME`)", o, k, p.Name)
				}
			}
		}
	}
	if k := t.KeepaliveTime.D(); k > 0 && k < 10*time.Second {
		bad("transport.keepalive_time", "%v is below gRPC's 10s minimum for client pings", k)
	}
	if d := t.DropLogInterval.D(); d > 0 && d < time.Second {
		bad("transport.drop_log_interval", "%v is below 1s; drop logs would flood", d)
	}

	if len(errs) == 0 {
		// Backstop: anything the election package rejects that we missed.
		if err := n.ElectionConfig().Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				errs = append(errs, FieldError{Msg: line})
			}
		}
	}
	return errs
}

func isHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	return err == nil && port != ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
