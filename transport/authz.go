package transport

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Who may call what on the peer port:
//
//	Peer service (Send)      members only (and every message's From must be
//	                         the caller)
//	operator services        members and operators (Options.Operators), for
//	(the Node service:       every RPC, unary or streaming, present or added
//	Status, Check, Transfer, later: registered with RegisterOperatorService,
//	Watch)                   the transport's interceptors check the caller
//	                         before the handler runs
//	other services           whatever the service checks itself
//	(RegisterServices)       (CallerMember)
//
// A certificate from the cluster's CA that names neither gets
// PermissionDenied from every RPC of the Peer service and of operator
// services, so a leaked or stray certificate of the same CA learns nothing
// about the cluster. Without TLS (tests, demos on loopback) there are no
// identities and everything is allowed.

// RegisterOperatorService registers impl for desc on r, the registrar
// Options.RegisterServices is given, as an operator service: the transport
// lets only members (this node included) and configured operators call any
// of its RPCs, and answers everyone else PermissionDenied before a handler
// runs. The fault hooks apply to it as to Send (FaultHooks). It panics when
// r is not that registrar: a service registered elsewhere would not be
// authorized.
func RegisterOperatorService(r grpc.ServiceRegistrar, desc *grpc.ServiceDesc, impl any) {
	sr, ok := r.(serviceRegistrar)
	if !ok {
		panic("transport.RegisterOperatorService: register on the registrar that Options.RegisterServices is given, so that the transport authorizes the service's callers")
	}
	// Written before the server serves, read-only afterwards.
	if sr.t.operatorServices == nil {
		sr.t.operatorServices = map[string]bool{}
	}
	sr.t.operatorServices[desc.ServiceName] = true
	sr.t.server.RegisterService(desc, impl)
}

// serviceRegistrar is what Options.RegisterServices is given: the peer
// server, and the way to mark a service as an operator service.
type serviceRegistrar struct{ t *Transport }

func (r serviceRegistrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	r.t.server.RegisterService(desc, impl)
}

// operatorRPC says whether fullMethod ("/package.Service/Method") belongs
// to an operator service, and returns its method name.
func (t *Transport) operatorRPC(fullMethod string) (string, bool) {
	service, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return method, ok && t.operatorServices[service]
}

// authorizeOperatorRPC lets a member or an operator through; for anyone
// else it returns PermissionDenied. A caller the fault hooks block hangs
// until its deadline instead, as a silently unresponsive node would.
func (t *Transport) authorizeOperatorRPC(ctx context.Context, rpc string) error {
	name, err := t.memberOrOperator(ctx, rpc)
	if err != nil {
		return err
	}
	if t.opts.Hooks.blocks(name) {
		return hang(ctx)
	}
	return nil
}

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
