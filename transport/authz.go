package transport

import (
	"context"
	"crypto/x509"

	"google.golang.org/grpc/codes"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Who may call what on the peer service:
//
//	Send            members only (and every message's From must be the caller)
//	Status, Check,  members and operators (Options.Operators)
//	Transfer
//
// A certificate from the cluster's CA that names neither gets
// PermissionDenied from every RPC, so a leaked or stray certificate of the
// same CA learns nothing about the cluster. Without TLS (tests, demos on
// loopback) there are no identities and everything is allowed.

// memberOrOperator returns the member the caller is ("" for an operator or
// without TLS), or PermissionDenied naming the certificate's CommonName.
func (t *Transport) memberOrOperator(ctx context.Context, rpc string) (string, error) {
	name, cn, err := t.memberName(ctx)
	if err != nil {
		return "", err
	}
	if name != "" || t.opts.Credentials == nil || t.isOperator(ctx) || t.isSelf(ctx) {
		return name, nil
	}
	t.reject(RejectNotMember)
	return "", status.Errorf(codes.PermissionDenied,
		"%s: the caller's certificate (CommonName %q) names no member of this cluster and no configured operator; use a member's or an operator's certificate (operators: in the node configuration)", rpc, cn)
}

// isOperator says whether the caller's verified certificate carries one of
// the configured operator identities, as CommonName or DNS SAN.
func (t *Transport) isOperator(ctx context.Context) bool {
	if len(t.operators) == 0 {
		return false
	}
	cert, err := callerCert(ctx)
	if cert == nil || err != nil {
		return false
	}
	return carriesIdentity(cert, t.operators)
}

// isSelf says whether the caller holds this node's own identity: `raftelect
// status --config node.yaml` run next to a node uses the node's certificate,
// and a node is a member (Send still takes only peers: nobody sends raft
// messages to itself over the network).
func (t *Transport) isSelf(ctx context.Context) bool {
	cert, err := callerCert(ctx)
	if cert == nil || err != nil {
		return false
	}
	return carriesIdentity(cert, map[string]bool{t.opts.Self.identity(): true})
}

func carriesIdentity(cert *x509.Certificate, ids map[string]bool) bool {
	if ids[cert.Subject.CommonName] {
		return true
	}
	for _, san := range cert.DNSNames {
		if ids[san] {
			return true
		}
	}
	return false
}

// sendSlots returns the in-flight slots of the connection the RPC in ctx
// came on.
func (t *Transport) sendSlots(ctx context.Context) chan struct{} {
	if p, ok := grpcpeer.FromContext(ctx); ok && p.Addr != nil && t.limiter != nil {
		if c := t.limiter.conn(p.Addr.String()); c != nil {
			return c.inflight
		}
	}
	// Not one of our listener's connections (cannot happen while serving):
	// a fresh channel would bound nothing, so share one.
	return t.strays
}
