package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// ErrNotLeader: the operation needs the leader, and this node is not it.
var ErrNotLeader = errors.New("election: this node is not the leader")

// maxTransferWait bounds a Transfer RPC whatever the caller's deadline: raft
// gives a transfer up after one election timeout, so waiting longer than a
// few cannot help.
const maxTransferWait = 3

// Transfer answers the Transfer RPC (transport.Transferer): Elector.Transfer
// within the caller's deadline, capped at a few election timeouts, with
// errors as gRPC status codes that say what to do.
func (l *raftLoop) Transfer(ctx context.Context, to string) (*pb.TransferResponse, error) {
	e := l.e
	if v := e.view.Load(); v.lead != e.self {
		if v.lead == 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "%s is not the leader and knows of none (term %d); retry when a leader is elected", e.cfg.Name, v.term)
		}
		return nil, status.Errorf(codes.FailedPrecondition, "%s is not the leader; %s is (term %d): ask it", e.cfg.Name, e.names[v.lead], v.term)
	}
	if _, ok := e.names[NodeID(to)]; to != "" && !ok {
		return nil, status.Errorf(codes.InvalidArgument, "%q is not a member of this cluster", to)
	}
	if to == e.cfg.Name {
		return nil, status.Errorf(codes.InvalidArgument, "%s leads already; name another node, or none to let it choose", to)
	}
	ctx, cancel := context.WithTimeout(ctx, maxTransferWait*e.electionTimeout)
	defer cancel()
	err := e.Transfer(ctx, to)
	switch {
	case err == nil:
		v := e.view.Load()
		return &pb.TransferResponse{Leader: e.names[v.lead], Term: v.term}, nil
	case errors.Is(err, ErrNotLeader):
		return nil, status.Errorf(codes.FailedPrecondition, "%s stopped leading before the transfer began; ask the new leader", e.cfg.Name)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return nil, status.Errorf(codes.DeadlineExceeded, "%v; no other node leads yet (a transfer is given up after one election timeout, %v)", err, e.electionTimeout.Round(time.Millisecond))
	default:
		return nil, status.Error(codes.FailedPrecondition, fmt.Sprint(err))
	}
}
