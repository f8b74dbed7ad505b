// Package config reads a raftelect node's YAML configuration, applies
// overrides from flags and RAFTELECT_* environment variables, validates it
// with errors that name the YAML field (and its line), and converts it to an
// election.Config.
//
// Precedence, highest first: command-line flag, environment variable, file,
// default. Relative paths in the file (tls.*, data_dir, event_log) are taken
// relative to the file's directory, so a config and its certificates can move
// together; paths from flags and the environment are relative to the working
// directory, as a shell user expects.
//
// docs/operations.md has a table of every field; examples/node.yaml is a
// commented sample.
package config

import (
	"fmt"
	"time"

	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/internal/nodeopts"
	"github.com/raftelect/raftelect/transport"
)

// Node is one node's configuration: the YAML file's top level.
type Node struct {
	// Name is this node's identity: unique in the cluster, one of Peers,
	// and the CommonName of its certificate.
	Name string `yaml:"name"`
	// Peers lists every node, this one included, the same on every node.
	Peers []Peer `yaml:"peers"`
	// ListenAddress overrides where the peer (gRPC) listener binds; default
	// is this node's own address in Peers.
	ListenAddress string `yaml:"listen_address"`
	// Labels are small metadata every peer sees (e.g. this replica's URL).
	Labels map[string]string `yaml:"labels"`

	// HeartbeatInterval: how often the leader heartbeats; the raft tick.
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	// ElectionTimeout: how long a follower waits for a leader before it
	// campaigns. About 10 heartbeats; see docs/operations.md.
	ElectionTimeout Duration `yaml:"election_timeout"`
	// LeaseDriftMargin: the fraction of the election timeout the lease
	// gives up for clock-rate drift.
	LeaseDriftMargin float64 `yaml:"lease_drift_margin"`
	// ClusterID: the ID this node's cluster must have (32 hex digits, as
	// `raftelect status` shows it); empty lets a new cluster make its own.
	ClusterID string `yaml:"cluster_id"`
	// FastFailoverOnRefusal: take a refused connection to the leader as
	// proof that its process is gone (milliseconds instead of an election
	// timeout). Only where nothing but the leader's own kernel can refuse
	// connections to its peer port; see docs/safety.md.
	FastFailoverOnRefusal bool `yaml:"fast_failover_on_refusal"`
	// StreamHeartbeatsOnly: send heartbeats only on the TCP streams, never
	// as UDP datagrams on the peer port's number (docs/transport.md,
	// "Datagram heartbeats").
	StreamHeartbeatsOnly bool `yaml:"stream_heartbeats_only"`
	// Join: this node joins a running cluster (cluster_id required): its
	// empty store waits until a member adds it (`raftelect members add`).
	// Without it, a node with an empty store bootstraps a new cluster from
	// peers.
	Join bool `yaml:"join"`
	// FailBackAfter: how long the leader and a voter of higher priority
	// must both have been stable before leadership moves to that voter
	// (default 3 election timeouts; negative: never move).
	FailBackAfter Duration `yaml:"fail_back_after"`

	TLS      TLS  `yaml:"tls"`
	Insecure bool `yaml:"insecure"`

	// DataDir holds the durable raft store; empty keeps raft state in
	// memory (a restart then waits out the vote guard; see docs/safety.md).
	DataDir string `yaml:"data_dir"`
	// HTTPAddress serves /metrics, /healthz, /readyz (and /debug/pprof);
	// empty serves nothing.
	HTTPAddress string `yaml:"http_address"`
	Log         Log    `yaml:"log"`
	// EventLog, if set, is a file that receives one JSON line per change
	// of term, vote, role, leader and lease (the checker reads it).
	EventLog string `yaml:"event_log"`
	// Pprof exposes /debug/pprof on HTTPAddress.
	Pprof bool `yaml:"pprof"`

	Transport Transport `yaml:"transport"`

	// Operators are the certificate identities (CommonName or DNS SAN) of
	// operator tools such as `raftelect status`: they may call every node's
	// Node service (status, check, transfer, watch), never send raft
	// messages. Certificates naming neither a member nor an operator get
	// nothing.
	Operators []string `yaml:"operators"`

	// UnsafeSyncSend makes the raft loop send every message synchronously,
	// as the reference system did before its fix. It exists only for the
	// chaos repro (`raftelect chaos repro --sync-send`), to show that the
	// asymmetric-drop test catches that bug: a silent peer then costs the
	// cluster its leader. Never set it otherwise.
	UnsafeSyncSend bool `yaml:"unsafe_sync_send"`

	// file is where the configuration was read from ("" if none); sources
	// records, per field, where its value came from.
	file    string
	lines   map[string]int
	sources map[string]string
}

// Peer is one member of the cluster.
type Peer struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	// Identity is the name the peer's certificate carries, as CommonName
	// or DNS SAN; empty means the peer's name.
	Identity string `yaml:"identity"`
	// PublicKeyPins, if set, pin the peer's public key: "sha256:" and the
	// hex SHA-256 of its DER SubjectPublicKeyInfo (`raftelect certs pin`).
	// Its certificate must match one. List two while rotating its key.
	PublicKeyPins []string `yaml:"public_key_pins"`
	// Witness: a voter that never leads (it only breaks ties, e.g. at a
	// third site). It takes no priority.
	Witness bool `yaml:"witness"`
	// Priority (0-1000): after the cluster has been stable for
	// fail_back_after, leadership moves to the healthy voter with the
	// highest priority. 0: no preference.
	Priority int `yaml:"priority"`
}

// TLS names the PEM files for mutual TLS.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Log configures the structured log on stderr.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error (default info)
	Format string `yaml:"format"` // text or json (default text)
}

// Transport tunes the per-peer senders. Zero takes the transport default.
type Transport struct {
	ControlQueue        int      `yaml:"control_queue"`
	DataQueue           int      `yaml:"data_queue"`
	MaxReconnectBackoff Duration `yaml:"max_reconnect_backoff"`
	KeepaliveTime       Duration `yaml:"keepalive_time"`
	KeepaliveTimeout    Duration `yaml:"keepalive_timeout"`
	DropLogInterval     Duration `yaml:"drop_log_interval"`

	// Connection bounds on the peer listener (docs/transport.md); zero
	// takes the transport default.
	MaxConnections            int      `yaml:"max_connections"`
	MaxConnectionsPerSource   int      `yaml:"max_connections_per_source"`
	MaxPendingConnections     int      `yaml:"max_pending_connections"`
	MaxPendingPerSource       int      `yaml:"max_pending_per_source"`
	MaxConnectionsPerIdentity int      `yaml:"max_connections_per_identity"`
	HandshakeTimeout          Duration `yaml:"handshake_timeout"`
}

// Duration is a time.Duration written as "100ms", "1s", "1m30s" in YAML.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as Go formats it ("1.5s").
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// File returns the path the configuration was read from ("" if none).
func (n *Node) File() string { return n.file }

// Source says where a field's value came from: "file line 7",
// "RAFTELECT_NAME", "--name", or "" for a default.
func (n *Node) Source(field string) string {
	if s, ok := n.sources[field]; ok {
		return s
	}
	if l, ok := n.lines[field]; ok {
		return fmt.Sprintf("%s line %d", n.file, l)
	}
	return ""
}

// withDefaults fills zero fields the way election.Config would, so status
// and logs show the values actually in effect.
func (n *Node) withDefaults() {
	if n.HeartbeatInterval == 0 {
		n.HeartbeatInterval = Duration(election.DefaultHeartbeatInterval)
	}
	if n.ElectionTimeout == 0 {
		n.ElectionTimeout = Duration(election.DefaultElectionTimeout)
	}
	if n.LeaseDriftMargin == 0 {
		n.LeaseDriftMargin = election.DefaultLeaseDriftMargin
	}
	if n.FailBackAfter == 0 {
		n.FailBackAfter = Duration(3 * n.ElectionTimeout.D())
	}
	if n.Log.Level == "" {
		n.Log.Level = "info"
	}
	if n.Log.Format == "" {
		n.Log.Format = "text"
	}
}

// ElectionConfig converts the node configuration to an election.Config.
// Storage, EventLog, Logger, Callbacks and Metrics are left for the caller,
// which owns their lifetimes (see cmd/raftelect).
func (n *Node) ElectionConfig() election.Config {
	c := election.Config{
		Name:                  n.Name,
		ListenAddress:         n.ListenAddress,
		Labels:                n.Labels,
		HeartbeatInterval:     n.HeartbeatInterval.D(),
		ElectionTimeout:       n.ElectionTimeout.D(),
		LeaseDriftMargin:      n.LeaseDriftMargin,
		ClusterID:             n.ClusterID,
		FastFailoverOnRefusal: n.FastFailoverOnRefusal,
		StreamHeartbeatsOnly:  n.StreamHeartbeatsOnly,
		Join:                  n.Join,
		FailBackAfter:         n.FailBackAfter.D(),
		TLS:                   election.TLSConfig{CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile},
		Insecure:              n.Insecure,
		ControlQueue:          n.Transport.ControlQueue,
		DataQueue:             n.Transport.DataQueue,
		MaxReconnectBackoff:   n.Transport.MaxReconnectBackoff.D(),
		KeepaliveTime:         n.Transport.KeepaliveTime.D(),
		KeepaliveTimeout:      n.Transport.KeepaliveTimeout.D(),
		DropLogInterval:       n.Transport.DropLogInterval.D(),
		Operators:             n.Operators,
		ConnectionLimits: election.ConnectionLimits{
			MaxConns:            n.Transport.MaxConnections,
			MaxConnsPerSource:   n.Transport.MaxConnectionsPerSource,
			MaxPendingConns:     n.Transport.MaxPendingConnections,
			MaxPendingPerSource: n.Transport.MaxPendingPerSource,
			MaxConnsPerIdentity: n.Transport.MaxConnectionsPerIdentity,
			HandshakeTimeout:    n.Transport.HandshakeTimeout.D(),
		},
	}
	nodeopts.Of(&c).UnsafeSyncSend = n.UnsafeSyncSend
	for _, p := range n.Peers {
		c.Peers = append(c.Peers, election.PeerConfig{Name: p.Name, Address: p.Address, Identity: p.Identity, PublicKeyPins: p.PublicKeyPins,
			Witness: p.Witness, Priority: p.Priority})
	}
	return c
}

// Credentials loads the TLS files for a client of the cluster (such as
// `raftelect status`); nil with Insecure.
func (n *Node) Credentials() (*transport.Credentials, error) {
	if n.Insecure {
		return nil, nil
	}
	return transport.LoadCredentials(n.TLS.CAFile, n.TLS.CertFile, n.TLS.KeyFile)
}
