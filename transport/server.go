package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// peerServer is the inbound side: the gRPC Peer service.
type peerServer struct {
	pb.UnimplementedPeerServer
	t *Transport
}

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
	// A correct peer has at most one Send in flight per lane, on its one
	// connection. More means a misbehaving peer: refuse at once rather than
	// let it hold goroutines and memory here. The slots belong to the
	// connection, not the identity: whoever else holds the same certificate
	// cannot take the member's own connection's slots (limits.go).
	release, err := t.takeSendSlot(ctx, name)
	if err != nil {
		return nil, err
	}
	defer release()
	t.unarySends.Add(1)
	return t.handleSend(ctx, name, cn, req)
}

// Stream serves one lane of a peer as a long-lived stream: every request
// is handled as a unary Send would be (the same identity, bounds, agreement
// and acknowledgement), and answered on the stream, in order. The caller's
// identity is its certificate's, checked once for the stream and against
// every message's From. The stream holds one of its connection's Send slots
// while open. Fields a request or response leaves out because they repeat
// the previous one (peer.proto, "stream:") are filled in and left out here.
func (s *peerServer) Stream(stream pb.Peer_StreamServer) error {
	t := s.t
	ctx := stream.Context()
	name, cn, err := t.memberName(ctx)
	if err != nil {
		return err
	}
	release, err := t.takeSendSlot(ctx, name)
	if err != nil {
		return err
	}
	defer release()
	t.streamsServed.Add(1)
	var sess *datagramSession // this stream's datagram key, once its context came
	defer func() {
		if sess != nil {
			t.dgram.release(sess)
		}
	}()
	var in streamRequests
	var out streamResponses
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		in.fill(req)
		if sess == nil && t.dgram != nil && len(req.DatagramContext) > 0 {
			sess = t.dgram.session(ctx, name, cn, req.DatagramContext)
		}
		if req.Heartbeat != nil {
			// From is the caller, as its certificate says: a caller
			// that is no member gets no message made for it.
			if p := t.set().byName[name]; p != nil {
				expandHeartbeat(req, p.ID, t.opts.Self.ID)
			}
		}
		resp, err := t.handleSend(ctx, name, cn, req)
		if err != nil {
			return err
		}
		sess.record(req, resp)
		out.elide(resp, req.GetStamp(), req.GetIncarnation())
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// takeSendSlot takes one of the Send slots of the caller's connection, or
// refuses the caller when they are all taken.
func (t *Transport) takeSendSlot(ctx context.Context, name string) (release func(), err error) {
	slots := t.sendSlots(ctx)
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	default:
		t.reject(RejectInflight)
		return nil, status.Errorf(codes.ResourceExhausted, "%s has %d Sends in flight on this connection already", name, cap(slots))
	}
}

// handleSend checks one batch from the caller named name (a member, or ""
// for none) and hands its messages to the node; Send and Stream share it.
func (t *Transport) handleSend(ctx context.Context, name, cn string, req *pb.SendRequest) (*pb.SendResponse, error) {
	set := t.set()
	if t.opts.Credentials == nil {
		if len(req.GetMessages()) == 0 && req.GetHeartbeat() == nil {
			// Without TLS there is no identity, and a request without raft
			// messages (a hello, a description) claims none: answer it
			// empty rather than refuse it as no member's, which its
			// sender would log as a failed send every heartbeat.
			return &pb.SendResponse{}, nil
		}
		// Without TLS there is no identity to check: take the claim.
		if len(req.GetMessages()) > 0 {
			name = set.validator.peers[req.GetMessages()[0].GetFrom()]
		}
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
	p := set.byName[name]
	if p == nil {
		if err := t.refuseRemoved(ctx, set, cn); err != nil {
			return nil, err
		}
		t.reject(RejectNotMember)
		if t.isOperator(ctx) {
			return nil, status.Errorf(codes.PermissionDenied, "caller %q is an operator: it may call the Node service (Status, Check, Transfer, Watch, Members, AddMember, RemoveMember), not Send", cn)
		}
		return nil, status.Errorf(codes.PermissionDenied, "caller %q "+notMemberText, cn)
	}
	if err := ValidateRequest(req); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "rejected request from %s: %v", name, err)
	}
	for _, m := range req.GetMessages() {
		if err := set.validator.validate(m, p.ID); err != nil {
			code, reason := codes.InvalidArgument, RejectInvalidMessage
			if m.GetFrom() != p.ID {
				code, reason = codes.PermissionDenied, RejectFromMismatch
			}
			t.reject(reason)
			return nil, status.Errorf(code, "rejected message from %s: %v", name, err)
		}
	}
	if err := checkLabels(req.GetLabels()); err != nil {
		t.reject(RejectInvalidLabels)
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
	resp := &pb.SendResponse{NeedLabels: needLabels}
	msgs, err := t.agreedMessages(p, req, resp)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "configuration from %s: %v", name, err)
	}

	// The peer is up: if our own connection to it is waiting out a
	// reconnect backoff (it was down a while), try again now, so a
	// restarted node hears from us in milliseconds, not seconds.
	if p.conn != nil && p.conn.GetState() == connectivity.TransientFailure {
		p.conn.ResetConnectBackoff()
	}
	if len(msgs) > 0 {
		ack, err := t.opts.Handler.Deliver(ctx, p.ID, msgs, Stamp{At: req.GetStamp(), Incarnation: req.GetIncarnation()})
		if err != nil {
			return nil, status.FromContextError(err).Err()
		}
		resp.AckTerm, resp.AckLeader, resp.AckStamp, resp.AckIncarnation = ack.Term, ack.Leader, ack.Stamp.At, ack.Stamp.Incarnation
		resp.AckPromiseNs = int64(ack.Promise)
	}
	p.lastContact.Store(time.Now().UnixNano())
	if m := t.opts.Metrics; m != nil {
		for _, msg := range msgs {
			m.Received(p.Name, msg.GetType())
		}
	}
	return resp, nil
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
