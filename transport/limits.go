package transport

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// Connection bounds on the peer listener. Anyone who can reach the port can
// open TCP connections, certificate or not, and each costs a file descriptor
// and a goroutine until it is closed. The bounds make that cost finite and
// keep room for members:
//
//   - A connection that has not completed its TLS handshake is pending. It is
//     closed after HandshakeTimeout (gRPC's ConnectionTimeout, 120 s by
//     default, is far too long). At most MaxPendingPerSource pending
//     connections come from one source address; more are closed at once. At
//     most MaxPendingConns are pending in total; when a new one arrives with
//     that many pending, the oldest pending connection is closed. Refusing
//     the newest instead would let a flood keep everyone out by renewing
//     its idle connections every HandshakeTimeout (MaxPendingConns / 5 s, a
//     few dozen connections a second); evicting the oldest means a flood
//     must open MaxPendingConns connections within one member's handshake
//     (a round trip or two) to shut it out.
//   - At most MaxConnsPerSource connections, pending or not, come from one
//     source address, and at most MaxConns are open in total; more are
//     closed at once.
//   - At most MaxConnsPerIdentity handshaken connections carry the same
//     certificate identity from the same source address. A member opens one
//     connection to each peer (a second one while a dead one is being
//     detected); counting per source keeps a thief of a member's key who
//     connects from elsewhere from using up the member's own allowance.
//   - Inbound Sends are limited per connection (maxInboundSendsPerConn), not
//     per identity, so extra connections of the same identity never take the
//     in-flight slots of the member's own connection.
//
// Every closed connection is counted by reason (Metrics.Rejected).
type Limits struct {
	MaxConns            int
	MaxConnsPerSource   int
	MaxPendingConns     int
	MaxPendingPerSource int
	MaxConnsPerIdentity int
	HandshakeTimeout    time.Duration
}

// Default connection bounds. A cluster has a handful of members, each with
// one connection to each peer, plus the odd status tool: these leave two
// orders of magnitude of room for legitimate use while bounding what a flood
// can take (about 1,000 file descriptors, well below the soft limit Go
// raises to at start).
const (
	DefaultMaxConns            = 1024
	DefaultMaxConnsPerSource   = 64
	DefaultMaxPendingConns     = 256
	DefaultMaxPendingPerSource = 16
	DefaultMaxConnsPerIdentity = 4
	// DefaultHandshakeTimeout bounds the TLS handshake and the HTTP/2
	// preface: one or two round trips for a member, even on a slow WAN link.
	DefaultHandshakeTimeout = 5 * time.Second

	// maxInboundSendsPerConn bounds the Sends in flight on one connection,
	// an open Stream counting as one. A peer holds one stream per lane (or,
	// falling back to unary Sends, one RPC per lane) plus its hello; the
	// slack covers streams it tore down and re-opened (its own deadline)
	// before the handlers here have seen the cancellation.
	maxInboundSendsPerConn = 8
)

// Validate reports limits that would lock members out or are negative.
// Zero fields take the defaults.
func (l Limits) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{
		{"max connections", l.MaxConns}, {"max connections per source", l.MaxConnsPerSource},
		{"max pending connections", l.MaxPendingConns}, {"max pending per source", l.MaxPendingPerSource},
		{"max connections per identity", l.MaxConnsPerIdentity},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d must be positive (0 takes the default)", f.name, f.v))
		}
	}
	if l.MaxConnsPerIdentity == 1 {
		errs = append(errs, errors.New("max connections per identity 1 would refuse a member's new connection while its old one is still being found dead; use at least 2"))
	}
	if l.HandshakeTimeout < 0 {
		errs = append(errs, fmt.Errorf("handshake timeout %v must be positive (0 takes the default %v)", l.HandshakeTimeout, DefaultHandshakeTimeout))
	} else if l.HandshakeTimeout > 0 && l.HandshakeTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("handshake timeout %v is below 100ms: members on slow links could not complete theirs", l.HandshakeTimeout))
	}
	return errors.Join(errs...)
}

func (l *Limits) setDefaults() {
	setDefault(&l.MaxConns, DefaultMaxConns)
	setDefault(&l.MaxConnsPerSource, DefaultMaxConnsPerSource)
	setDefault(&l.MaxPendingConns, DefaultMaxPendingConns)
	setDefault(&l.MaxPendingPerSource, DefaultMaxPendingPerSource)
	setDefault(&l.MaxConnsPerIdentity, DefaultMaxConnsPerIdentity)
	setDefault(&l.HandshakeTimeout, DefaultHandshakeTimeout)
}

// Rejection reasons: the values of Metrics.Rejected's reason, and of the
// reason label of raftelect_rejected_total.
const (
	RejectInvalidMessage    = "invalid_message"    // a message failed the inbound checks
	RejectFromMismatch      = "from_mismatch"      // a message's From is not the caller
	RejectInvalidLabels     = "invalid_labels"     // labels over the bounds
	RejectNotMember         = "not_member"         // the caller's certificate names no member (nor operator, where operators may call)
	RejectRemovedMember     = "removed_member"     // the caller's certificate identifies a member this node removed (SetPeers)
	RejectInflight          = "too_many_in_flight" // more Sends in flight on one connection than a peer ever has
	RejectConnTotal         = "conn_total"         // MaxConns open already
	RejectConnPerSource     = "conn_per_source"    // MaxConnsPerSource open from that address
	RejectPendingPerSource  = "pending_per_source" // MaxPendingPerSource handshakes from that address
	RejectPendingEvicted    = "pending_evicted"    // oldest pending connection closed for a newer one
	RejectConnPerIdentity   = "conn_per_identity"  // MaxConnsPerIdentity open for that identity and address
	RejectHandshakeFailed   = "handshake_failed"   // TLS handshake failed (no or a bad certificate, not TLS)
	RejectHandshakeTimedOut = "handshake_timeout"  // no handshake within HandshakeTimeout
	// RejectStateCheck is counted by the election package: a message that
	// passed the transport's checks but failed the raft loop's state checks
	// (step guard) or that raft refused.
	RejectStateCheck = "state_check"
	// RejectDatagram: a datagram dropped unopened (datagram.go): too
	// short, under no key this node holds, failing authentication, or a
	// replay.
	RejectDatagram = "datagram"
)

// RejectReasons lists every reason, for metrics to export at zero from the
// start.
var RejectReasons = []string{
	RejectInvalidMessage, RejectFromMismatch, RejectInvalidLabels, RejectNotMember, RejectRemovedMember, RejectInflight,
	RejectConnTotal, RejectConnPerSource, RejectPendingPerSource, RejectPendingEvicted,
	RejectConnPerIdentity, RejectHandshakeFailed, RejectHandshakeTimedOut, RejectStateCheck, RejectDatagram,
}

// ConnStats counts the peer listener's open connections.
type ConnStats struct {
	Open    int // every open connection
	Pending int // not yet through the TLS handshake
}

// connLimiter wraps the peer listener and enforces Limits.
type connLimiter struct {
	net.Listener
	lim     Limits
	reject  func(reason string)
	members atomic.Pointer[Members] // to key connections by member; nil: by CommonName

	mu         sync.Mutex
	open       int
	bySource   map[string]int
	pending    map[*trackedConn]struct{}
	pendingSrc map[string]int
	byIdentity map[identityKey]int
	byAddr     map[string]*trackedConn // by remote address, for Sends' slots
}

type identityKey struct{ identity, source string }

func newConnLimiter(lis net.Listener, lim Limits, reject func(string)) *connLimiter {
	return &connLimiter{
		Listener: lis, lim: lim, reject: reject,
		bySource: map[string]int{}, pending: map[*trackedConn]struct{}{},
		pendingSrc: map[string]int{}, byIdentity: map[identityKey]int{},
		byAddr: map[string]*trackedConn{},
	}
}

// trackedConn is one accepted connection, counted until it is closed.
type trackedConn struct {
	net.Conn
	l        *connLimiter
	source   string
	addr     string
	accepted time.Time
	inflight chan struct{}

	// Under l.mu:
	pending  bool
	identity *identityKey // set once handshaken (with an identity)
	closed   bool
	evicted  bool // closed by us for a newer pending connection

	closeOnce sync.Once
	closeErr  error
}

// Accept returns the next connection within the bounds, closing the ones
// over them.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.admit(c); tc != nil {
			return tc, nil
		}
	}
}

func sourceOf(c net.Conn) string {
	a := c.RemoteAddr()
	if a == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// admit counts c in, or closes it and returns nil.
func (l *connLimiter) admit(c net.Conn) *trackedConn {
	src := sourceOf(c)
	tc := &trackedConn{
		Conn: c, l: l, source: src, addr: c.RemoteAddr().String(), accepted: time.Now(),
		inflight: make(chan struct{}, maxInboundSendsPerConn), pending: true,
	}
	var evict *trackedConn
	l.mu.Lock()
	reason := ""
	switch {
	case l.open >= l.lim.MaxConns:
		reason = RejectConnTotal
	case l.bySource[src] >= l.lim.MaxConnsPerSource:
		reason = RejectConnPerSource
	case l.pendingSrc[src] >= l.lim.MaxPendingPerSource:
		reason = RejectPendingPerSource
	}
	if reason == "" {
		if len(l.pending) >= l.lim.MaxPendingConns {
			for p := range l.pending {
				if evict == nil || p.accepted.Before(evict.accepted) {
					evict = p
				}
			}
			l.unpend(evict) // no longer pending: it is being closed
			evict.evicted = true
		}
		l.open++
		l.bySource[src]++
		l.pending[tc] = struct{}{}
		l.pendingSrc[src]++
		l.byAddr[tc.addr] = tc
	}
	l.mu.Unlock()
	if reason != "" {
		c.Close()
		l.reject(reason)
		return nil
	}
	if evict != nil {
		evict.Close()
		l.reject(RejectPendingEvicted)
	}
	return tc
}

// handshaken moves tc out of the pending set and counts its identity ("" for
// none: without TLS). It fails if the identity has too many connections from
// tc's source already.
func (l *connLimiter) handshaken(tc *trackedConn, identity string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tc.closed {
		return net.ErrClosed
	}
	l.unpend(tc)
	if identity == "" {
		return nil
	}
	k := identityKey{identity, tc.source}
	if l.byIdentity[k] >= l.lim.MaxConnsPerIdentity {
		return errTooManyForIdentity
	}
	l.byIdentity[k]++
	tc.identity = &k
	return nil
}

var errTooManyForIdentity = errors.New("too many connections with this certificate identity from this address")

func (l *connLimiter) unpend(tc *trackedConn) {
	if !tc.pending {
		return
	}
	tc.pending = false
	delete(l.pending, tc)
	if l.pendingSrc[tc.source]--; l.pendingSrc[tc.source] <= 0 {
		delete(l.pendingSrc, tc.source)
	}
}

// Close counts the connection out, once.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		l := c.l
		l.mu.Lock()
		c.closed = true
		l.unpend(c)
		l.open--
		if l.bySource[c.source]--; l.bySource[c.source] <= 0 {
			delete(l.bySource, c.source)
		}
		if c.identity != nil {
			if l.byIdentity[*c.identity]--; l.byIdentity[*c.identity] <= 0 {
				delete(l.byIdentity, *c.identity)
			}
		}
		if l.byAddr[c.addr] == c {
			delete(l.byAddr, c.addr)
		}
		l.mu.Unlock()
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

func (c *trackedConn) wasEvicted() bool {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	return c.evicted
}

// setMembers keys the connections handshaken from now on by the members of
// a new member set.
func (l *connLimiter) setMembers(m *Members) { l.members.Store(m) }

// closeMember closes every connection whose certificate identified the
// member name when it was handshaken: it left the member set.
func (l *connLimiter) closeMember(name string) {
	var conns []*trackedConn
	l.mu.Lock()
	for _, c := range l.byAddr {
		if c.identity != nil && c.identity.identity == "member "+name {
			conns = append(conns, c)
		}
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// conn returns the open connection with remote address addr, if any.
func (l *connLimiter) conn(addr string) *trackedConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byAddr[addr]
}

func (l *connLimiter) stats() ConnStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ConnStats{Open: l.open, Pending: len(l.pending)}
}

// limitedCreds wraps the server's transport credentials: it counts failed
// and timed-out handshakes, and tells the limiter when a connection is
// through its handshake and whose certificate it carries.
type limitedCreds struct {
	credentials.TransportCredentials
	l *connLimiter
}

func (c limitedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		var ne net.Error
		tc, _ := raw.(*trackedConn)
		if tc != nil && tc.wasEvicted() {
			// Counted as evicted already; the handshake failed because
			// we closed the connection.
		} else if errors.As(err, &ne) && ne.Timeout() {
			c.l.reject(RejectHandshakeTimedOut)
		} else {
			c.l.reject(RejectHandshakeFailed)
		}
		return nil, nil, err
	}
	tc, ok := raw.(*trackedConn)
	if !ok {
		return conn, info, nil
	}
	if err := c.l.handshaken(tc, c.l.certIdentity(info)); err != nil {
		conn.Close()
		if errors.Is(err, errTooManyForIdentity) {
			c.l.reject(RejectConnPerIdentity)
		}
		return nil, nil, err
	}
	return conn, info, nil
}

func (c limitedCreds) Clone() credentials.TransportCredentials {
	return limitedCreds{TransportCredentials: c.TransportCredentials.Clone(), l: c.l}
}

// certIdentity keys the per-identity connection count: the member the
// verified client certificate in info identifies (by the transport's
// identity rule), else its CommonName; "" without TLS. Who the caller is
// for authorization is decided per RPC.
func (l *connLimiter) certIdentity(info credentials.AuthInfo) string {
	ti, ok := info.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return ""
	}
	cert := ti.State.VerifiedChains[0][0]
	if members := l.members.Load(); members != nil {
		if m, err := members.Match(cert); err == nil && m != "" {
			return "member " + m
		}
	}
	return "cn " + cert.Subject.CommonName
}

// rejections counts rejections for tests and for Stats when no Metrics is
// configured.
type rejections struct {
	mu sync.Mutex
	n  map[string]uint64
}

func (r *rejections) add(reason string) {
	r.mu.Lock()
	if r.n == nil {
		r.n = map[string]uint64{}
	}
	r.n[reason]++
	r.mu.Unlock()
}

func (r *rejections) get(reason string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}
