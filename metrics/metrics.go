// Package metrics exports a raftelect node's state to Prometheus, under the
// prefix raftelect_.
//
// Two sources feed it. The node calls the election.Metrics methods as
// messages move (sent, received, queue-full drops, send errors, latency).
// Everything that is state rather than an event (role, term, lease, and per
// peer: reachable, queue depth, RTT, last contact, and the total of dropped
// messages) is read from Elector.Status at scrape time by a custom
// collector, so there is no second bookkeeping to drift from the truth.
//
// raftelect_peer_config_mismatch{peer,kind} is 1 for each kind of
// difference (transport.MismatchKinds) between the peer's configuration and
// this node's, 0 otherwise: every kind is exported for every peer, so an
// alert on "== 1" needs no absent() clause.
//
// raftelect_peer_dropped_messages_total is the transport's own counter
// (PeerStats.Drops: queue full plus expired before sending), the same number
// the transport's periodic "dropped messages to peer" log reports the
// increase of. raftelect_peer_queue_full_drops_total breaks the queue-full
// part down by message type.
package metrics

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/transport"
)

const namespace = "raftelect"

// LatencyBuckets span 1ms (a LAN) to 10s (a send that ran into the data
// lane's deadline on a WAN), in seconds.
var LatencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Error classes of a failed send, the values of the "class" label.
const (
	ClassTimeout     = "timeout"
	ClassUnavailable = "unavailable"
	ClassCanceled    = "canceled"
	ClassAuth        = "auth"
	ClassOther       = "other"
)

// Metrics implements election.Metrics (give it to election.Config.Metrics)
// and prometheus.Collector.
type Metrics struct {
	sent, received, queueFull *prometheus.CounterVec
	sendErrors                *prometheus.CounterVec
	rejected                  *prometheus.CounterVec
	rejectedBy                map[string]prometheus.Counter
	latency                   *prometheus.HistogramVec
	leaderChanges, elections  prometheus.Counter
	preferredMoves            prometheus.Counter

	// per (peer, type) children, so the hot path does not hash labels or
	// allocate.
	mu       sync.RWMutex
	children map[childKey]prometheus.Counter
	hist     sync.Map // peer -> prometheus.Observer

	// Expiry of our certificate and of the CA bundle (its earliest), unix
	// nanoseconds; 0 until the transport loaded them (none without TLS).
	certExpiry, caExpiry atomic.Int64

	status   atomic.Pointer[func() election.Status]
	termMu   sync.Mutex
	lastTerm uint64
	seenTerm bool

	descs descs
}

type childKey struct {
	vec  *prometheus.CounterVec
	peer string
	t    string
}

type descs struct {
	isLeader, holdsLease, term, hasLeader                  *prometheus.Desc
	reachable, queueDepth, rtt, lastContact, drops, errors *prometheus.Desc
	datagrams                                              *prometheus.Desc
	certExpiry, caExpiry                                   *prometheus.Desc
	configMismatch, configUnknown, electionsHeld           *prometheus.Desc
	voters, learners                                       *prometheus.Desc
}

var _ election.Metrics = (*Metrics)(nil)
var _ election.CertificateMetrics = (*Metrics)(nil)
var _ election.MembershipMetrics = (*Metrics)(nil)
var _ prometheus.Collector = (*Metrics)(nil)

// New makes the metrics and registers them (and itself) with reg.
func New(reg prometheus.Registerer) *Metrics {
	peerType := []string{"peer", "type"}
	m := &Metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "peer_messages_sent_total",
			Help: "Raft messages sent to a peer, by type (counted when the send succeeded)."}, peerType),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "peer_messages_received_total",
			Help: "Raft messages received from a peer and accepted, by type."}, peerType),
		queueFull: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "peer_queue_full_drops_total",
			Help: "Messages to a peer dropped because its send queue was full, by type. raftelect_peer_dropped_messages_total also counts messages that expired in the queue."}, peerType),
		sendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "peer_send_errors_total",
			Help: "Failed sends (RPCs) to a peer by class: timeout, unavailable, canceled, auth, other."}, []string{"peer", "class"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "rejected_total",
			Help: "Connections, handshakes and inbound RPCs this node refused, by reason (see docs/operations.md)."}, []string{"reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "peer_send_latency_seconds",
			Help: "Duration of successful sends (RPCs) to a peer.", Buckets: LatencyBuckets}, []string{"peer"}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "leader_changes_total",
			Help: "Times this node learnt of a new leader (a different node, or the same one in a new term) since it started."}),
		elections: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "elections_started_total",
			Help: "Elections seen by this node since it started: the sum of the increases of the raft term it observed (each election, by any node, increases it by one)."}),
		preferredMoves: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "preferred_leader_moves_total",
			Help: "Times this node, leading, handed leadership to a member of higher priority (fail-back); the reason is in raftelect status and the log."}),
		children: map[childKey]prometheus.Counter{},
	}
	// Every reason exists from the start, at zero, so that rate() and
	// alerts see the first rejection.
	m.rejectedBy = map[string]prometheus.Counter{}
	for _, r := range transport.RejectReasons {
		m.rejectedBy[r] = m.rejected.WithLabelValues(r)
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	m.descs = descs{
		isLeader:    d("is_leader", "1 while this node holds the leader lease (may act as leader), else 0."),
		holdsLease:  d("raft_leader", "1 while raft on this node is in the leader role (the lease may have ended already), else 0."),
		term:        d("term", "The raft term this node is in: the fencing token of the current leadership."),
		hasLeader:   d("has_leader", "1 while this node knows of a leader (what /readyz reports), else 0."),
		reachable:   d("peer_reachable", "1 if the last send to the peer succeeded, else 0.", "peer"),
		queueDepth:  d("peer_queue_depth", "Messages waiting in the peer's send queues (both lanes).", "peer"),
		datagrams:   d("peer_datagram_heartbeats", "1 while this node's heartbeats to the peer go as UDP datagrams it answers; 0 on followers and where UDP does not get through (heartbeats then go on the TCP stream).", "peer"),
		rtt:         d("peer_rtt_seconds", "Round-trip time of the last successful send to the peer.", "peer"),
		lastContact: d("peer_last_contact_seconds", "Seconds since the last message to or from the peer; -1 if never.", "peer"),
		drops:       d("peer_dropped_messages_total", "Messages to the peer dropped by the transport (queue full or expired before sending); the numbers the periodic drop log reports.", "peer"),
		errors:      d("peer_send_failures_total", "Failed sends to the peer as the transport counts them (all classes).", "peer"),
		certExpiry:  d("tls_certificate_expiry_timestamp_seconds", "When this node's certificate (the one in use, updated when it is reloaded) expires, in unix seconds."),
		caExpiry:    d("tls_ca_expiry_timestamp_seconds", "When the CA bundle in use expires (its first certificate to expire), in unix seconds."),
		configMismatch: d("peer_config_mismatch", "1 while the peer's configuration differs from this node's in kind: cluster-id or membership (raft messages refused both ways) or timings (allowed, reported).",
			"peer", "kind"),
		configUnknown: d("peer_config_unknown", "1 while this node has not seen the peer's configuration (it never answered).", "peer"),
		electionsHeld: d("elections_held", "1 while this node takes no part in elections (asks for no votes, gives none) because a member disagrees with it on membership."),
		voters:        d("voters", "Voters of the cluster as this node applied its membership (witnesses included)."),
		learners:      d("learners", "Learners of the cluster as this node applied its membership: members added and still catching up, not yet voters."),
	}
	reg.MustRegister(m.sent, m.received, m.queueFull, m.sendErrors, m.rejected, m.latency, m.leaderChanges, m.elections, m.preferredMoves, m)
	return m
}

// Observe sets where state is read from at scrape time (Elector.Status).
// Until it is called, only event metrics are exported.
func (m *Metrics) Observe(status func() election.Status) { m.status.Store(&status) }

// CertificatesLoaded records when our certificate and the CA bundle expire;
// the transport calls it at start and after every reload.
func (m *Metrics) CertificatesLoaded(cert, ca time.Time) {
	m.certExpiry.Store(cert.UnixNano())
	m.caExpiry.Store(ca.UnixNano())
}

// PreferredLeaderMoved implements election.MembershipMetrics.
func (m *Metrics) PreferredLeaderMoved(string) { m.preferredMoves.Inc() }

// Callbacks wraps next so that leader changes and terms are counted; the
// wrapped callbacks are called as before.
func (m *Metrics) Callbacks(next election.Callbacks) election.Callbacks {
	out := next
	out.OnNewLeader = func(leader string, term uint64) {
		m.observeTerm(term)
		if leader != "" {
			m.leaderChanges.Inc()
		}
		if next.OnNewLeader != nil {
			next.OnNewLeader(leader, term)
		}
	}
	return out
}

// StartTerm sets the term the node starts in (from its store; 0 for a new
// node, which raft bootstraps into term 1), the baseline from which
// elections are counted. Call it before Run.
func (m *Metrics) StartTerm(term uint64) {
	// A new node's raft bootstraps into term 1 without an election, so
	// the first election moves 1 -> 2: counting from 0 would say 2.
	term = max(term, 1)
	m.termMu.Lock()
	defer m.termMu.Unlock()
	m.lastTerm, m.seenTerm = term, true
}

// observeTerm counts elections from term increases. Without StartTerm, the
// first term seen is the baseline.
func (m *Metrics) observeTerm(term uint64) {
	m.termMu.Lock()
	defer m.termMu.Unlock()
	if m.seenTerm && term > m.lastTerm {
		m.elections.Add(float64(term - m.lastTerm))
	}
	if !m.seenTerm || term > m.lastTerm {
		m.lastTerm, m.seenTerm = term, true
	}
}

// child is the counter of peer and message type t ("Heartbeat", "App", ...:
// raft's name without the Msg prefix, as election.Metrics is given it).
func (m *Metrics) child(vec *prometheus.CounterVec, peer, t string) prometheus.Counter {
	k := childKey{vec, peer, t}
	m.mu.RLock()
	c, ok := m.children[k]
	m.mu.RUnlock()
	if ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok = m.children[k]; !ok {
		c = vec.WithLabelValues(peer, t)
		m.children[k] = c
	}
	return c
}

// Sent implements election.Metrics.
func (m *Metrics) Sent(peer, t string) { m.child(m.sent, peer, t).Inc() }

// Received implements election.Metrics.
func (m *Metrics) Received(peer, t string) { m.child(m.received, peer, t).Inc() }

// Dropped implements election.Metrics (queue-full drops).
func (m *Metrics) Dropped(peer, t string) { m.child(m.queueFull, peer, t).Inc() }

// SendFailed implements election.Metrics.
func (m *Metrics) SendFailed(peer string, err error) {
	m.sendErrors.WithLabelValues(peer, Classify(err)).Inc()
}

// Rejected implements election.Metrics.
func (m *Metrics) Rejected(reason string) {
	c, ok := m.rejectedBy[reason]
	if !ok {
		c = m.rejected.WithLabelValues(reason)
	}
	c.Inc()
}

// SendLatency implements election.Metrics.
func (m *Metrics) SendLatency(peer string, d time.Duration) {
	o, ok := m.hist.Load(peer)
	if !ok {
		o, _ = m.hist.LoadOrStore(peer, m.latency.WithLabelValues(peer))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}

// Classify sorts an RPC error into one of the classes above. A TLS
// handshake failure surfaces as Unavailable; it is an auth problem (wrong
// CA, expired or misnamed certificate), and retrying will not fix it.
func Classify(err error) string {
	switch {
	case err == nil:
		return ClassOther
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTimeout
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	}
	s, _ := status.FromError(err)
	switch s.Code() {
	case codes.DeadlineExceeded:
		return ClassTimeout
	case codes.Canceled:
		return ClassCanceled
	case codes.Unauthenticated, codes.PermissionDenied:
		return ClassAuth
	case codes.Unavailable:
		msg := s.Message()
		if strings.Contains(msg, "handshake") || strings.Contains(msg, "certificate") || strings.Contains(msg, "tls:") {
			return ClassAuth
		}
		return ClassUnavailable
	}
	return ClassOther
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	d := m.descs
	for _, x := range []*prometheus.Desc{d.isLeader, d.holdsLease, d.term, d.hasLeader, d.reachable, d.queueDepth, d.datagrams, d.rtt, d.lastContact, d.drops, d.errors, d.certExpiry, d.caExpiry,
		d.configMismatch, d.configUnknown, d.electionsHeld, d.voters, d.learners} {
		ch <- x
	}
}

// Collect implements prometheus.Collector: state read from the elector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	// Not exported before they are known: a 0 would read as "expired".
	if ns := m.certExpiry.Load(); ns != 0 {
		ch <- prometheus.MustNewConstMetric(m.descs.certExpiry, prometheus.GaugeValue, float64(ns)/1e9)
	}
	if ns := m.caExpiry.Load(); ns != 0 {
		ch <- prometheus.MustNewConstMetric(m.descs.caExpiry, prometheus.GaugeValue, float64(ns)/1e9)
	}
	f := m.status.Load()
	if f == nil {
		return
	}
	s := (*f)()
	m.observeTerm(s.Term)
	d := m.descs
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	gauge(d.isLeader, b2f(s.HoldsLease))
	gauge(d.holdsLease, b2f(s.Role == "leader"))
	gauge(d.term, float64(s.Term))
	gauge(d.hasLeader, b2f(s.Leader != ""))
	gauge(d.electionsHeld, b2f(s.ElectionsHeld))
	voters, learners := 0, 0
	for _, mb := range s.Members {
		if mb.Learner {
			learners++
		} else {
			voters++
		}
	}
	gauge(d.voters, float64(voters))
	gauge(d.learners, float64(learners))
	now := time.Now()
	for _, p := range s.Peers {
		gauge(d.reachable, b2f(p.Reachable), p.Name)
		gauge(d.queueDepth, float64(p.QueueDepth), p.Name)
		gauge(d.datagrams, b2f(p.DatagramHeartbeats), p.Name)
		gauge(d.rtt, p.RTT.Seconds(), p.Name)
		ago := -1.0
		if !p.LastContact.IsZero() {
			ago = now.Sub(p.LastContact).Seconds()
		}
		gauge(d.lastContact, ago, p.Name)
		ch <- prometheus.MustNewConstMetric(d.drops, prometheus.CounterValue, float64(p.Drops), p.Name)
		ch <- prometheus.MustNewConstMetric(d.errors, prometheus.CounterValue, float64(p.SendErrors), p.Name)
		for _, kind := range transport.MismatchKinds {
			gauge(d.configMismatch, b2f(slices.Contains(p.ConfigMismatch, kind)), p.Name, kind)
		}
		gauge(d.configUnknown, b2f(p.ConfigUnknown), p.Name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
