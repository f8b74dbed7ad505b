package transport

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// The identity rule, the same in both directions (a node accepting a
// caller, a node dialling a peer) and for our own certificate at start:
//
//   - A certificate carries a name if the name is exactly its Subject
//     CommonName or exactly one of its DNS SANs (no wildcards, no case
//     folding: an unexpected spelling fails closed).
//   - It identifies member M if it carries M's identity (its name unless
//     configured) and, if M has public-key pins, its public key matches one.
//   - A certificate that identifies more than one member identifies none:
//     it could pass as any of them, so it passes as none.
//
// Outbound, Go's own check of the server name looks at SANs only; the
// transport replaces it with this rule (the chain is still verified against
// the CA, see Credentials.verifyServer), so an identity carried only as a
// CommonName works both ways.

// Members is a cluster's identity table: which certificate identifies which
// member.
type Members struct {
	byIdentity map[string]*member
	byName     map[string]*member
}

type member struct {
	name, identity string
	pins           [][sha256.Size]byte
}

// NewMembers builds the identity table of a cluster made of peers (every
// member, this node included).
func NewMembers(peers []Peer) (*Members, error) {
	m := &Members{byIdentity: map[string]*member{}, byName: map[string]*member{}}
	for _, p := range peers {
		mem := &member{name: p.Name, identity: p.identity()}
		for _, s := range p.PublicKeyPins {
			pin, err := ParsePin(s)
			if err != nil {
				return nil, fmt.Errorf("peer %s: %w", p.Name, err)
			}
			mem.pins = append(mem.pins, pin)
		}
		if other := m.byIdentity[mem.identity]; other != nil {
			return nil, fmt.Errorf("peers %s and %s have the same identity %q; certificates must tell members apart", other.name, p.Name, mem.identity)
		}
		m.byIdentity[mem.identity] = mem
		m.byName[p.Name] = mem
	}
	return m, nil
}

// Match returns the member that cert identifies, "" (and no error) if it
// carries no member's identity, or an error saying why a certificate that
// carries one or more member identities identifies none of them.
func (m *Members) Match(cert *x509.Certificate) (string, error) {
	// Runs on every inbound RPC: no allocation unless the certificate
	// carries more than a few member identities.
	var buf [4]*member
	named := buf[:0]
	add := func(n string) {
		if mem := m.byIdentity[n]; mem != nil && !containsMember(named, mem) {
			named = append(named, mem)
		}
	}
	if cn := cert.Subject.CommonName; cn != "" {
		add(cn)
	}
	for _, n := range cert.DNSNames {
		add(n)
	}
	if len(named) == 0 {
		return "", nil
	}
	var match *member
	passed := 0
	for _, mem := range named {
		if mem.pinned(cert) {
			match = mem
			passed++
		}
	}
	if passed == 1 {
		return match.name, nil
	}
	var pass, pinFailed []string
	for _, mem := range named {
		if mem.pinned(cert) {
			pass = append(pass, mem.name)
		} else {
			pinFailed = append(pinFailed, mem.name)
		}
	}
	switch len(pass) {
	case 0:
		return "", fmt.Errorf("certificate %s carries the identity of %s, but its public key %s matches none of the public_key_pins configured for %s: a certificate with this name but another key is not that member; if its key was rotated, add the new pin to every node's configuration",
			describeCert(cert), strings.Join(pinFailed, ", "), PublicKeyPin(cert), strings.Join(pinFailed, ", "))
	default:
		return "", fmt.Errorf("certificate %s carries the identities of %d members (%s), so it identifies none of them: issue each node a certificate naming only its own identity, or pin each member's public key (public_key_pins)",
			describeCert(cert), len(pass), strings.Join(pass, ", "))
	}
}

// check verifies that cert identifies the member named name.
func (m *Members) check(cert *x509.Certificate, name string) error {
	got, err := m.Match(cert)
	if err != nil {
		return err
	}
	if got != name {
		want := name
		if mem := m.byName[name]; mem != nil {
			want = fmt.Sprintf("%s (identity %q)", name, mem.identity)
		}
		if got == "" {
			return fmt.Errorf("certificate %s does not carry the identity of %s as its CommonName or a DNS SAN", describeCert(cert), want)
		}
		return fmt.Errorf("certificate %s identifies %s, not %s", describeCert(cert), got, want)
	}
	return nil
}

func (mem *member) pinned(cert *x509.Certificate) bool {
	if len(mem.pins) == 0 {
		return true
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	for _, p := range mem.pins {
		if p == sum {
			return true
		}
	}
	return false
}

func containsMember(ms []*member, m *member) bool {
	for _, x := range ms {
		if x == m {
			return true
		}
	}
	return false
}

// certNames returns the names a certificate carries for the identity rule:
// its CommonName and its DNS SANs.
func certNames(cert *x509.Certificate) []string {
	names := make([]string, 0, 1+len(cert.DNSNames))
	if cert.Subject.CommonName != "" {
		names = append(names, cert.Subject.CommonName)
	}
	return append(names, cert.DNSNames...)
}

// carries reports whether cert carries name (CommonName or DNS SAN).
func carries(cert *x509.Certificate, name string) bool {
	for _, n := range certNames(cert) {
		if n == name {
			return true
		}
	}
	return false
}

func describeCert(cert *x509.Certificate) string {
	return fmt.Sprintf("(CommonName %q, DNS SANs %q)", cert.Subject.CommonName, cert.DNSNames)
}

// PublicKeyPin returns the pin of cert's public key, as public_key_pins
// takes it: "sha256:" and the hex SHA-256 of its DER SubjectPublicKeyInfo
// (the same as `openssl x509 -pubkey -noout | openssl pkey -pubin -outform
// der | sha256sum`).
func PublicKeyPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParsePin parses a public-key pin: "sha256:" (optional) and 64 hex digits.
func ParsePin(s string) ([sha256.Size]byte, error) {
	var pin [sha256.Size]byte
	h := strings.TrimPrefix(s, "sha256:")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return pin, fmt.Errorf("public key pin %.80q is not \"sha256:\" and 64 hex digits (`raftelect certs pin --cert FILE` prints a certificate's pin)", s)
	}
	copy(pin[:], b)
	return pin, nil
}

// callerCert returns the caller's verified client certificate, or nil when
// the transport runs without TLS.
func callerCert(ctx context.Context) (*x509.Certificate, error) {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil, nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, nil
	}
	if len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil, status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	return ti.State.VerifiedChains[0][0], nil
}

// callerName returns the CommonName of the caller's verified client
// certificate, or "" when the transport runs without TLS.
func callerName(ctx context.Context) (string, error) {
	cert, err := callerCert(ctx)
	if cert == nil || err != nil {
		return "", err
	}
	return cert.Subject.CommonName, nil
}

// caller is what the transport's interceptor found out about the caller of
// an RPC on the peer server.
type caller struct {
	member string // "" unless the certificate identifies a member
	cn     string
	tls    bool  // a verified certificate was presented
	err    error // a status error: why the caller identifies no member
}

type callerKey struct{}

// identify maps the caller of an RPC to a member by this node's identity
// table (self included).
func (t *Transport) identify(ctx context.Context) caller {
	if c, ok := ctx.Value(callerKey{}).(caller); ok {
		return c
	}
	cert, err := callerCert(ctx)
	if err != nil {
		return caller{err: err}
	}
	if cert == nil {
		return caller{}
	}
	c := caller{cn: cert.Subject.CommonName, tls: true}
	if c.member, err = t.set().members.Match(cert); err != nil {
		c.err = status.Error(codes.PermissionDenied, err.Error())
	}
	return c
}

// intercept identifies the caller once per RPC, for every service on the
// peer server (CallerMember reads it), and lets only members and operators
// call operator services (RegisterOperatorService).
func (t *Transport) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if strings.HasPrefix(info.FullMethod, peerServicePrefix) {
		// The Peer service identifies its callers itself (memberName):
		// spare its hot path the context allocation.
		return handler(ctx, req)
	}
	ctx = context.WithValue(ctx, callerKey{}, t.identify(ctx))
	if rpc, ok := t.operatorRPC(info.FullMethod); ok {
		if err := t.authorizeOperatorRPC(ctx, rpc); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

var peerServicePrefix = "/" + pb.Peer_ServiceDesc.ServiceName + "/"

func (t *Transport) interceptStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := context.WithValue(ss.Context(), callerKey{}, t.identify(ss.Context()))
	if rpc, ok := t.operatorRPC(info.FullMethod); ok {
		if err := t.authorizeOperatorRPC(ctx, rpc); err != nil {
			return err
		}
	}
	return handler(srv, &identifiedStream{ServerStream: ss, ctx: ctx})
}

type identifiedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identifiedStream) Context() context.Context { return s.ctx }

// memberName names the peer the caller's certificate identifies by the
// identity rule above. For a certificate of no peer (or of this node) it
// returns "" and the CommonName, for the error; without TLS, "" and "". A
// certificate that carries member identities but identifies none of them
// (ambiguous, or a pin does not match) is an error.
func (t *Transport) memberName(ctx context.Context) (member, commonName string, err error) {
	c := t.identify(ctx)
	if c.err != nil {
		return "", c.cn, c.err
	}
	if c.member == t.opts.Self.Name {
		return "", c.cn, nil
	}
	return c.member, c.cn, nil
}

// CallerName returns the CommonName in the verified client certificate of
// the caller of a gRPC handler on the peer server, or "" when the transport
// runs without TLS. It is not a member name when identities are configured:
// to authorize members, use CallerMember.
func CallerName(ctx context.Context) (string, error) { return callerName(ctx) }

// CallerMember returns the name of the cluster member (this node included)
// that the caller of a gRPC handler on the peer server is, by the node's
// configured identities and pins: the rule the transport applies to raft
// messages. Services added with Options.RegisterServices use it to
// authorize callers. Its errors are gRPC status errors, ready to return:
// Unauthenticated without a client certificate, PermissionDenied for a
// certificate that identifies no member.
func CallerMember(ctx context.Context) (string, error) {
	c, ok := ctx.Value(callerKey{}).(caller)
	if !ok {
		return "", status.Error(codes.Internal, "transport.CallerMember called outside a handler of a raftelect peer server (register the service with RegisterServices)")
	}
	switch {
	case c.err != nil:
		return "", c.err
	case !c.tls:
		return "", status.Error(codes.Unauthenticated, "no client certificate: this service is served over mutual TLS only")
	case c.member == "":
		return "", status.Errorf(codes.PermissionDenied, "the caller's certificate (CommonName %q) carries the identity of no member of this cluster", c.cn)
	}
	return c.member, nil
}
