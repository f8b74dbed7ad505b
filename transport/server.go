package transport

import (
	"context"
	"crypto/x509"
	"fmt"
	"maps"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// peerServer is the inbound side: the gRPC Peer service.
type peerServer struct {
	pb.UnimplementedPeerServer
	t *Transport
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

// memberName names the member the caller's certificate identifies: the
// member whose identity (its name, unless configured) is the certificate's
// CommonName or one of its DNS SANs. For a certificate of no member it
// returns "" and the CommonName, for the error; without TLS, "" and "".
func (t *Transport) memberName(ctx context.Context) (member, commonName string, err error) {
	cert, err := callerCert(ctx)
	if cert == nil || err != nil {
		return "", "", err
	}
	if p := t.byIdentity[cert.Subject.CommonName]; p != nil {
		return p.Name, cert.Subject.CommonName, nil
	}
	for _, san := range cert.DNSNames {
		if p := t.byIdentity[san]; p != nil {
			return p.Name, cert.Subject.CommonName, nil
		}
	}
	return "", cert.Subject.CommonName, nil
}

// CallerName returns the node name (CommonName) in the verified client
// certificate of the caller of a gRPC handler on the peer server, or "" when
// the transport runs without TLS. Services added with
// Options.RegisterServices use it to authorize callers.
func CallerName(ctx context.Context) (string, error) { return callerName(ctx) }

// hang blocks until the caller gives up: a silently unresponsive node.
func hang(ctx context.Context) error {
	<-ctx.Done()
	return status.FromContextError(ctx.Err()).Err()
}

func (s *peerServer) Send(ctx context.Context, req *pb.SendRequest) (*pb.SendResponse, error) {
	t := s.t
	name, cn, err := t.memberName(ctx)
	if err != nil {
		return nil, err
	}
	if t.opts.Credentials == nil && len(req.GetMessages()) > 0 {
		// Without TLS there is no identity to check: take the claim.
		name = t.validator.peers[req.GetMessages()[0].GetFrom()]
	}
	if t.opts.Hooks.blocks(name) {
		return nil, hang(ctx)
	}
	if d := t.opts.Hooks.inboundDelay(); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	p := t.byName[name]
	if p == nil {
		return nil, status.Errorf(codes.PermissionDenied, "caller %q is not a member of this cluster", cn)
	}
	// A correct peer has at most one Send in flight per lane. More means a
	// misbehaving peer: refuse at once rather than let it hold goroutines
	// and memory here.
	select {
	case p.inflight <- struct{}{}:
		defer func() { <-p.inflight }()
	default:
		p.refused.Add(1)
		return nil, status.Errorf(codes.ResourceExhausted, "%s has %d Sends in flight already", name, cap(p.inflight))
	}
	for _, m := range req.GetMessages() {
		if err := t.validator.validate(m, p.ID); err != nil {
			code := codes.InvalidArgument
			if m.GetFrom() != p.ID {
				code = codes.PermissionDenied
			}
			return nil, status.Errorf(code, "rejected message from %s: %v", name, err)
		}
	}
	if err := checkLabels(req.GetLabels()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "labels from %s: %v", name, err)
	}
	needLabels := false
	p.mu.Lock()
	if req.GetLabels() != nil || req.GetLabelsDigest() == labelsDigest(nil) {
		p.labels, p.digest = maps.Clone(req.GetLabels()), req.GetLabelsDigest()
	} else if req.GetLabelsDigest() != p.digest {
		needLabels = true
	}
	p.mu.Unlock()

	// The peer is up: if our own connection to it is waiting out a
	// reconnect backoff (it was down a while), try again now, so a
	// restarted node hears from us in milliseconds, not seconds.
	if p.conn != nil && p.conn.GetState() == connectivity.TransientFailure {
		p.conn.ResetConnectBackoff()
	}
	var ack Ack
	if len(req.GetMessages()) > 0 {
		var err error
		ack, err = t.opts.Handler.Deliver(ctx, p.ID, req.GetMessages(), Stamp{At: req.GetStamp(), Incarnation: req.GetIncarnation()})
		if err != nil {
			return nil, status.FromContextError(err).Err()
		}
	}
	p.lastContact.Store(time.Now().UnixNano())
	if m := t.opts.Metrics; m != nil {
		for _, msg := range req.GetMessages() {
			m.Received(p.Name, msg.GetType())
		}
	}
	return &pb.SendResponse{
		AckTerm: ack.Term, AckLeader: ack.Leader, AckStamp: ack.Stamp.At, AckIncarnation: ack.Stamp.Incarnation,
		NeedLabels: needLabels,
	}, nil
}

func (s *peerServer) Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	name, _, err := s.t.memberName(ctx)
	if err != nil {
		return nil, err
	}
	if s.t.opts.Hooks.blocks(name) {
		return nil, hang(ctx)
	}
	return s.t.opts.Handler.Check(ctx, req.GetForwarded()), nil
}

func (s *peerServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	if _, err := callerName(ctx); err != nil {
		return nil, err
	}
	return &pb.StatusResponse{Node: s.t.opts.Handler.Status()}, nil
}

// Label bounds, the same as a node's own configuration allows: labels are
// small metadata, and a peer must not make us store megabytes.
const (
	MaxLabels          = 32
	MaxLabelKeyBytes   = 63
	MaxLabelValueBytes = 1024
)

func checkLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%d labels, at most %d", len(labels), MaxLabels)
	}
	for k, v := range labels {
		if k == "" || len(k) > MaxLabelKeyBytes || len(v) > MaxLabelValueBytes {
			return fmt.Errorf("label %.40q: keys must be 1-%d bytes, values at most %d", k, MaxLabelKeyBytes, MaxLabelValueBytes)
		}
	}
	return nil
}
