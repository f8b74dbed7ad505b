package election

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"

	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/internal/clusterid"
	"github.com/raftelect/raftelect/internal/core"
	"github.com/raftelect/raftelect/internal/nodeopts"
	"github.com/raftelect/raftelect/storage"
	"github.com/raftelect/raftelect/transport"
)

// Defaults suit a WAN: sites tens to hundreds of milliseconds apart.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultElectionTimeout   = 10 * time.Second
	DefaultLeaseDriftMargin  = 0.1
)

// PeerConfig names one node of the cluster.
type PeerConfig struct {
	// Name is the node's name: unique, and the identity its certificate
	// carries unless Identity is set.
	Name string
	// Address is host:port of its peer (gRPC) listener.
	Address string
	// Identity is the name its certificate must carry, as the Subject
	// CommonName or a DNS SAN (default: Name). Set it when certificates
	// come from a PKI with its own naming, such as
	// "raftelect.eu-west.svc.cluster.local". Peers verify it on every
	// connection, both ways, by the same rule (see docs/operations.md): a
	// certificate that carries the identities of two members identifies
	// neither.
	Identity string
	// PublicKeyPins, if set, pin the node's public key: its certificate
	// must also have a public key whose pin (`raftelect certs pin`,
	// "sha256:" and the hex SHA-256 of the DER SubjectPublicKeyInfo) is one
	// of these, so that another certificate that happens to carry its
	// identity (a SAN added by mistake, another service's certificate from
	// the same CA) does not pass as this node. List two during a key
	// rotation.
	PublicKeyPins []string
	// Witness: a voter that never leads, for a third site that only breaks
	// ties (docs/operations.md, "Witnesses"). It takes no priority.
	Witness bool
	// Priority: after a failover, leadership returns to the healthy voter
	// with the highest priority once it and the leader have been stable
	// for FailBackAfter (0: no preference).
	Priority int
}

// TLSConfig names the PEM files for mutual TLS. All three are read again
// when they change, so certificates and the CA rotate without a restart
// (docs/operations.md).
type TLSConfig struct {
	CAFile   string // the CA bundle that signed every node's certificate
	CertFile string // this node's certificate (carries its identity)
	KeyFile  string // its private key
}

// Config configures one node. Validate reports every problem it finds.
type Config struct {
	// Name of this node; it must appear in Peers.
	Name string
	// Peers lists every node of the cluster, this one included. Every node
	// must be given the same list. It bootstraps a brand-new cluster; from
	// then on the members raft applied are the truth (Elector.Members), and
	// a list that differs is reported (Status.MembershipNote), never applied.
	Peers []PeerConfig
	// ListenAddress overrides where this node listens (default: its own
	// Address in Peers), for example 0.0.0.0:7000 behind NAT.
	ListenAddress string
	// Labels are small metadata every node sees for every peer, such as the
	// URL of this replica's API, so followers can find the leader.
	Labels map[string]string

	// HeartbeatInterval is how often the leader tells followers it is alive
	// (default 1s). It is also the raft tick: no timer runs faster.
	HeartbeatInterval time.Duration
	// ElectionTimeout is how long a follower waits without hearing from a
	// leader before it campaigns (default 10s); it must be more than twice
	// HeartbeatInterval and should be several round trips between the
	// farthest sites. Shorter fails over faster, longer tolerates slower
	// links.
	ElectionTimeout time.Duration
	// LeaseDriftMargin is the fraction of the election timeout the lease
	// gives up to cover clocks running at different rates (default 0.1;
	// allowed 0.01 to 0.5). See docs/safety.md.
	LeaseDriftMargin float64

	// ClusterID, if set, is the ID this node's cluster must have: a brand-new
	// cluster takes it (its first leader proposes it), and a node whose store
	// or peers belong to another cluster is refused. Empty: the first leader
	// of a new cluster makes a random one, which every node records in its
	// store and `raftelect status` shows. 32 lowercase hex digits.
	ClusterID string

	// FastFailoverOnRefusal lets followers take a refused connection to
	// the leader as proof that its process is gone, and elect a new leader
	// in milliseconds instead of after their promise to it (one election
	// timeout). Only safe where nothing but the leader's own kernel can
	// refuse a connection to its peer port: no firewall reject rules, no
	// Service proxy, load balancer or NAT in the path. A live leader behind
	// any of those keeps acting while another is elected. Off by default;
	// see docs/safety.md, "A leader that is gone".
	FastFailoverOnRefusal bool

	// StreamHeartbeatsOnly keeps heartbeats and their acknowledgements on
	// the TCP streams. By default they also travel as UDP datagrams on the
	// peer port's number, sealed with keys from the peers' TLS sessions,
	// so that one lost TCP segment cannot stall a quorum's
	// acknowledgements for longer than the lease (docs/transport.md,
	// "Datagram heartbeats"). Where UDP is dropped the streams carry them
	// as before; this option only saves the datagrams then.
	StreamHeartbeatsOnly bool

	// Join: this node joins a running cluster. Its empty store starts with
	// no membership of its own; a member adds it (Elector.AddMember,
	// `raftelect members add`), and it learns the members from the leader.
	// Peers must list this node and the members it may hear from.
	Join bool
	// FailBackAfter is how long the leader and a voter of higher priority
	// must both have been stable before leadership moves to that voter
	// (default: 3 election timeouts; negative: never). Only matters when
	// some member has a Priority.
	FailBackAfter time.Duration

	// TLS material. Required unless Insecure.
	TLS TLSConfig
	// Insecure turns mutual TLS off. Only for tests and demos on loopback:
	// without certificates no peer identity can be checked.
	Insecure bool

	// Storage holds raft state. Nil means in memory (see docs/safety.md for
	// what that costs on a restart). The caller closes it.
	Storage storage.Store
	// EventLog, if set, receives every change of term, vote, role, leader
	// and lease.
	EventLog *eventlog.Writer
	// Logger receives structured logs (default: discard).
	Logger *slog.Logger

	// Callbacks are told about leadership changes, in order, one at a time.
	Callbacks Callbacks

	// Transport tuning; zero values take the transport's defaults.
	ControlQueue        int
	DataQueue           int
	MaxReconnectBackoff time.Duration
	KeepaliveTime       time.Duration
	KeepaliveTimeout    time.Duration
	DropLogInterval     time.Duration

	// Metrics, if set, receives counts of this node's network traffic
	// (metrics.New makes the Prometheus one `raftelect run` serves).
	Metrics Metrics

	// Operators are the certificate identities (CommonName or DNS SAN) of
	// operator tools such as `raftelect status`: they may call the Node
	// service on the peer port (Status, Check, Transfer, Watch, Members, AddMember, RemoveMember), never Send.
	// A certificate from the CA that names neither a member nor an operator
	// gets nothing. An operator's identity must be no member's.
	Operators []string
	// ConnectionLimits bound the peer listener's connections: per source
	// address, in total, per certificate identity, and the TLS handshake's
	// time. Zero fields take the transport's defaults; see
	// docs/transport.md.
	ConnectionLimits ConnectionLimits

	// RegisterServices, if set, registers more gRPC services on this node's
	// peer server (same port, same mutual TLS), beside the node's own Node
	// service; handlers name the member that called with CallerMember.
	RegisterServices func(grpc.ServiceRegistrar)

	// internal holds the switches only this module's tests, chaos harness
	// and CLI set (a caller's listener, fault hooks, synchronous sends, no
	// vote guard), through internal/nodeopts.
	internal nodeopts.Options
}

func init() {
	nodeopts.Install(func(cfg any) *nodeopts.Options { return &cfg.(*Config).internal })
}

// NodeID derives a node's raft ID from its name: the 64-bit FNV-1a hash of
// the name's bytes. It is stable across restarts, versions and machines, so
// nodes need no ID in their configuration. Validate rejects names whose IDs
// collide (or hash to 0, which raft reserves).
func NodeID(name string) uint64 { return core.NodeID(name) }

// withDefaults returns a copy with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.LeaseDriftMargin == 0 {
		c.LeaseDriftMargin = DefaultLeaseDriftMargin
	}
	if c.FailBackAfter == 0 {
		c.FailBackAfter = 3 * c.ElectionTimeout
	}
	return c
}

// Validate checks the configuration (after defaults) and returns every
// problem found, joined, each saying what is wrong and what to do.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Name == "" {
		bad("name: empty; give this node a name that appears in peers")
	}
	if len(c.Peers) == 0 {
		bad("peers: empty; list every node of the cluster, this one included")
	}
	names := map[string]bool{}
	identities := map[string]string{}
	addrs := map[string]string{}
	ids := map[uint64]string{}
	self := false
	for i, p := range c.Peers {
		switch {
		case p.Name == "":
			bad("peers[%d]: name is empty", i)
			continue
		case names[p.Name]:
			bad("peers[%d]: name %q appears twice", i, p.Name)
		}
		names[p.Name] = true
		identity := p.Identity
		if identity == "" {
			identity = p.Name
		}
		if other, ok := identities[identity]; ok {
			bad("peers[%d] (%s): identity %q is also the identity of %s; certificates must tell nodes apart", i, p.Name, identity, other)
		} else {
			identities[identity] = p.Name
		}
		for _, pin := range p.PublicKeyPins {
			if _, err := transport.ParsePin(pin); err != nil {
				bad("peers[%d] (%s): %v", i, p.Name, err)
			}
		}
		if p.Name == c.Name {
			self = true
		}
		if p.Witness && p.Priority != 0 {
			bad("peers[%d] (%s): a witness never leads, so it takes no priority; remove priority or witness", i, p.Name)
		}
		if p.Priority < 0 || p.Priority > 1000 {
			bad("peers[%d] (%s): priority %d is outside 0..1000", i, p.Name, p.Priority)
		}
		if id := NodeID(p.Name); id == 0 {
			bad("peers[%d]: name %q hashes to raft ID 0, which raft reserves; rename the node", i, p.Name)
		} else if other, ok := ids[id]; ok && other != p.Name {
			bad("peers[%d]: names %q and %q hash to the same raft ID %x; rename one", i, other, p.Name, id)
		} else {
			ids[id] = p.Name
		}
		if p.Address == "" {
			bad("peers[%d] (%s): address is empty; give host:port of its peer listener", i, p.Name)
		} else if _, port, err := net.SplitHostPort(p.Address); err != nil || port == "" {
			bad("peers[%d] (%s): address %q is not host:port", i, p.Name, p.Address)
		} else if other, ok := addrs[p.Address]; ok {
			bad("peers[%d] (%s): address %s is also the address of %s", i, p.Name, p.Address, other)
		} else {
			addrs[p.Address] = p.Name
		}
	}
	if c.Name != "" && len(c.Peers) > 0 && !self {
		bad("name: this node %q is not among the peers; add it to peers", c.Name)
	}
	if c.HeartbeatInterval < 0 {
		bad("heartbeat interval %v must be positive", c.HeartbeatInterval)
	} else if c.HeartbeatInterval < 10*time.Millisecond {
		bad("heartbeat interval %v is below 10ms; it is also the raft tick, keep it at 10ms or more", c.HeartbeatInterval)
	}
	if c.ElectionTimeout <= 2*c.HeartbeatInterval {
		bad("election timeout %v must be more than twice the heartbeat interval %v", c.ElectionTimeout, c.HeartbeatInterval)
	}
	if c.ClusterID != "" && !clusterid.Valid(c.ClusterID) {
		bad("cluster ID %q must be 32 lowercase hex digits (as `raftelect status` shows it), or empty for a new cluster to make its own", c.ClusterID)
	}
	if c.LeaseDriftMargin < 0.01 || c.LeaseDriftMargin > 0.5 {
		bad("lease drift margin %v must be between 0.01 and 0.5 (a fraction of the election timeout)", c.LeaseDriftMargin)
	}
	if !c.Insecure {
		if c.TLS.CAFile == "" || c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			bad("tls: CA, certificate and key files are all required (or set insecure for tests on loopback); `raftelect certs` makes a development set")
		}
	}
	seenOps := map[string]bool{}
	for i, o := range c.Operators {
		switch {
		case o == "":
			bad("operators[%d]: empty; give the CommonName or DNS SAN of the operator's certificate", i)
		case seenOps[o]:
			bad("operators[%d]: %q appears twice", i, o)
		case identities[o] != "":
			bad("operators[%d]: %q is the identity of member %s; give operators certificates of their own (`raftelect certs issue --operator`)", i, o, identities[o])
		}
		seenOps[o] = true
	}
	if err := c.ConnectionLimits.transport().Validate(); err != nil {
		bad("connection limits: %v", err)
	}
	for k, v := range c.Labels {
		if k == "" || len(k) > 63 || len(v) > 1024 {
			bad("labels: %q=%q: keys must be 1-63 bytes and values at most 1024 bytes", k, v)
		}
	}
	if len(c.Labels) > 32 {
		bad("labels: %d labels; at most 32 (they are small metadata)", len(c.Labels))
	}
	return errors.Join(errs...)
}

// CheckCertificate checks this node's certificate, key and CA as Run will
// when it starts the node: the key matches, the certificate is valid now,
// chains to the CA and identifies this node. New calls it; call it yourself
// to refuse to start before opening anything else. Its errors match
// ErrCertificate (errors.Is) and say what is wrong; nil with Insecure.
func (c Config) CheckCertificate() error {
	if c.Insecure {
		return nil
	}
	members := make([]transport.Peer, 0, len(c.Peers))
	for _, p := range c.Peers {
		members = append(members, transport.Peer{Name: p.Name, Identity: p.Identity, PublicKeyPins: p.PublicKeyPins})
	}
	return markCertificate(transport.CheckCredentials(c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile, c.Name, members))
}
