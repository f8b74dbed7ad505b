package election

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// The Node service's membership RPCs: members and operators may call them
// (the transport authorizes them as it does Transfer).

// maxMemberChangeWait caps how long a change waits, in election timeouts,
// whatever the caller's deadline: a learner that cannot catch up must not
// hold a call for ever (it stays added, and is promoted when it catches up).
const maxMemberChangeWait = 30

func (s *nodeService) Members(ctx context.Context, _ *pb.MembersRequest) (*pb.MembersResponse, error) {
	return s.e.membersResponse(), nil
}

func (s *nodeService) AddMember(ctx context.Context, req *pb.AddMemberRequest) (*pb.MembersResponse, error) {
	e := s.e
	m := req.GetMember()
	if m == nil {
		return nil, status.Error(codes.InvalidArgument, "member: missing; give at least its name and address")
	}
	nm := Member{Name: m.GetName(), Address: m.GetAddress(), Identity: m.GetIdentity(), PublicKeyPins: m.GetPublicKeyPins(),
		Witness: m.GetWitness(), Priority: int(m.GetPriority())}
	ctx, cancel := context.WithTimeout(ctx, maxMemberChangeWait*e.electionTimeout)
	defer cancel()
	var err error
	if r := req.GetReplaces(); r != "" {
		err = e.ReplaceMember(ctx, r, nm)
	} else {
		err = e.AddMember(ctx, nm)
	}
	if err != nil {
		return nil, memberChangeStatus(err)
	}
	return e.membersResponse(), nil
}

func (s *nodeService) RemoveMember(ctx context.Context, req *pb.RemoveMemberRequest) (*pb.MembersResponse, error) {
	e := s.e
	ctx, cancel := context.WithTimeout(ctx, maxMemberChangeWait*e.electionTimeout)
	defer cancel()
	if err := e.RemoveMember(ctx, req.GetName()); err != nil {
		return nil, memberChangeStatus(err)
	}
	return e.membersResponse(), nil
}

// memberChangeStatus maps a change's error to a gRPC status that says what
// to do.
func memberChangeStatus(err error) error {
	switch {
	case errors.Is(err, ErrNotLeader):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrChangeInProgress):
		return status.Error(codes.Aborted, err.Error()+"; try again once `raftelect members list` shows it finished")
	case errors.Is(err, ErrUnknownPeer):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrStopped), errors.Is(err, ErrNotRunning):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.Error(codes.DeadlineExceeded, err.Error())
	default:
		return status.Error(codes.InvalidArgument, err.Error())
	}
}

func (e *Elector) membersResponse() *pb.MembersResponse {
	v, mv := e.view.Load(), e.membership.Load()
	r := &pb.MembersResponse{Node: e.cfg.Name, Leader: e.name(v.lead), Term: v.term,
		PreferredLeader: mv.preferred, LastPreferredMove: mv.lastMove, MembershipNote: mv.note}
	if l := e.loop.Load(); l != nil {
		r.ClusterId = l.currentClusterID()
	}
	for _, m := range mv.members {
		r.Members = append(r.Members, &pb.ClusterMember{Name: m.Name, Address: m.Address, Identity: m.Identity,
			PublicKeyPins: m.PublicKeyPins, Witness: m.Witness, Priority: int32(m.Priority), Learner: m.Learner})
	}
	return r
}
