package election

import (
	"context"
	"strings"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/raftelect/raftelect/transport"
)

// Metrics receives counts of a node's network traffic: every raft message
// sent, received and dropped, per peer and message type; failed sends and
// their latency; and every refused connection, handshake or message, by
// reason. Methods are called from many goroutines, often per message: they
// must be safe for concurrent use and must not block. metrics.Metrics (the
// Prometheus collector `raftelect run` serves) implements it.
//
// msgType is raft's message type without its "Msg" prefix ("Heartbeat",
// "HeartbeatResp", "App", "AppResp", "Vote", "PreVote", ...). reason is a
// short stable word, such as "not_member", "handshake_timeout" or
// "state_check".
//
// A Metrics that also implements CertificateMetrics is told when this
// node's certificate and CA expire.
type Metrics interface {
	Sent(peer, msgType string)
	Received(peer, msgType string)
	// Dropped: a message dropped before it was sent (its queue was full).
	Dropped(peer, msgType string)
	SendFailed(peer string, err error)
	SendLatency(peer string, d time.Duration)
	Rejected(reason string)
}

// CertificateMetrics is implemented by Metrics that record when this node's
// certificate and its CA bundle (the earliest certificate in it) expire. A
// node with TLS tells them when it starts and after every reload of the
// files.
type CertificateMetrics interface {
	CertificatesLoaded(certNotAfter, caNotAfter time.Time)
}

// MembershipMetrics is implemented by Metrics that count the moves of
// leadership to a preferred member (Config.FailBackAfter): the leader that
// hands leadership over calls PreferredLeaderMoved once per move, with the
// reason Status.LastPreferredMove shows.
type MembershipMetrics interface {
	PreferredLeaderMoved(reason string)
}

// ConnectionLimits bound the connections of a node's peer listener, which
// anyone who can reach the port can open, certificate or not. Zero fields
// take the defaults (1024, 64, 256, 16, 4 and 5s); docs/transport.md
// explains each bound and what a flood can and cannot do against it.
type ConnectionLimits struct {
	// MaxConns: connections open in total, pending or not.
	MaxConns int
	// MaxConnsPerSource: connections from one source address.
	MaxConnsPerSource int
	// MaxPendingConns: connections that have not completed their TLS
	// handshake, in total; a new one beyond closes the oldest.
	MaxPendingConns int
	// MaxPendingPerSource: pending connections from one source address.
	MaxPendingPerSource int
	// MaxConnsPerIdentity: handshaken connections with the same certificate
	// identity from the same source address (at least 2).
	MaxConnsPerIdentity int
	// HandshakeTimeout closes a connection that has not completed its TLS
	// handshake (at least 100ms).
	HandshakeTimeout time.Duration
}

func (l ConnectionLimits) transport() transport.Limits {
	return transport.Limits{
		MaxConns:            l.MaxConns,
		MaxConnsPerSource:   l.MaxConnsPerSource,
		MaxPendingConns:     l.MaxPendingConns,
		MaxPendingPerSource: l.MaxPendingPerSource,
		MaxConnsPerIdentity: l.MaxConnsPerIdentity,
		HandshakeTimeout:    l.HandshakeTimeout,
	}
}

// transportMetrics adapts Metrics to the transport's interface, which names
// message types as raft does.
type transportMetrics struct{ m Metrics }

// msgType is the name Metrics are given for a raft message type.
func msgType(t raftpb.MessageType) string { return strings.TrimPrefix(t.String(), "Msg") }

func (a transportMetrics) Sent(peer string, t raftpb.MessageType)     { a.m.Sent(peer, msgType(t)) }
func (a transportMetrics) Received(peer string, t raftpb.MessageType) { a.m.Received(peer, msgType(t)) }
func (a transportMetrics) Dropped(peer string, t raftpb.MessageType)  { a.m.Dropped(peer, msgType(t)) }
func (a transportMetrics) SendFailed(peer string, err error)          { a.m.SendFailed(peer, err) }
func (a transportMetrics) SendLatency(peer string, d time.Duration)   { a.m.SendLatency(peer, d) }
func (a transportMetrics) Rejected(reason string)                     { a.m.Rejected(reason) }

// certTransportMetrics also passes on certificate expiry.
type certTransportMetrics struct {
	transportMetrics
	CertificateMetrics
}

// toTransport returns m as the transport's Metrics (nil for nil), keeping
// CertificateMetrics visible to the transport's type check.
func toTransport(m Metrics) transport.Metrics {
	if m == nil {
		return nil
	}
	if c, ok := m.(CertificateMetrics); ok {
		return certTransportMetrics{transportMetrics{m}, c}
	}
	return transportMetrics{m}
}

// CallerMember names the cluster member (this node included) that called a
// gRPC handler registered through Config.RegisterServices, by the identities
// and public-key pins in Peers: the rule raft traffic is checked by. Its
// errors are gRPC status errors, ready to return from the handler:
// Unauthenticated without a client certificate, PermissionDenied for a
// certificate that identifies no member.
func CallerMember(ctx context.Context) (string, error) { return transport.CallerMember(ctx) }
