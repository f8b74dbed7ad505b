package transport

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// Transferer is the optional part of a Handler that answers the Transfer
// RPC: hand leadership over and wait, within ctx, for another node to lead.
// Its errors are gRPC status errors.
type Transferer interface {
	Transfer(ctx context.Context, to string) (*pb.TransferResponse, error)
}

// authorizeOperator lets a caller change the cluster (Transfer): a member or
// a configured operator (Options.Operators), identified by its certificate.
// Without TLS (tests and demos on loopback) there is no identity to check,
// and every caller is let in.
func (t *Transport) authorizeOperator(ctx context.Context) error {
	_, err := t.memberOrOperator(ctx, "Transfer")
	return err
}

func (s *peerServer) Transfer(ctx context.Context, req *pb.TransferRequest) (*pb.TransferResponse, error) {
	if err := s.t.authorizeOperator(ctx); err != nil {
		return nil, err
	}
	tr, ok := s.t.opts.Handler.(Transferer)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this node does not transfer leadership")
	}
	return tr.Transfer(ctx, req.GetTo())
}
