package transport

import (
	"context"

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

// memberOrOperator returns the member the caller's certificate identifies
// (this node included: `raftelect status --config node.yaml` beside a node
// uses the node's own certificate), "" for an operator or without TLS, or
// PermissionDenied saying why.
func (t *Transport) memberOrOperator(ctx context.Context, rpc string) (string, error) {
	if t.opts.Credentials == nil {
		return "", nil
	}
	c := t.identify(ctx)
	switch {
	case c.err != nil:
		// It carries member identities but identifies none (ambiguous, or
		// a pin does not match): fail closed, even if it also names an
		// operator.
		t.reject(RejectNotMember)
		return "", c.err
	case c.member != "":
		return c.member, nil
	case t.isOperator(ctx):
		return "", nil
	}
	t.reject(RejectNotMember)
	return "", status.Errorf(codes.PermissionDenied,
		"%s: the caller's certificate (CommonName %q) names no member of this cluster and no configured operator; use a member's or an operator's certificate (operators: in the node configuration)", rpc, c.cn)
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
	for _, n := range certNames(cert) {
		if t.operators[n] {
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
