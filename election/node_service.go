package election

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

// The Node service (proto/raftelect/v1/node.proto) is the node's operator
// surface: Status, Check, Transfer and Watch, for `raftelect status`,
// `raftelect transfer`, `raftelect status --watch` and for a follower that
// forwards a Check to its leader. The election package serves it on the
// peer port; the transport lets only members and configured operators call
// it (transport.RegisterOperatorService) and knows nothing else about it.
type nodeService struct {
	pb.UnimplementedNodeServer
	e *Elector
}

// registerNodeService is chained in front of Config.RegisterServices.
func (e *Elector) registerNodeService(user func(grpc.ServiceRegistrar)) func(grpc.ServiceRegistrar) {
	return func(r grpc.ServiceRegistrar) {
		transport.RegisterOperatorService(r, &pb.Node_ServiceDesc, &nodeService{e: e})
		if user != nil {
			user(r)
		}
	}
}

func (s *nodeService) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{Node: statusProto(s.e.Status(), time.Now())}, nil
}

func (s *nodeService) Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	r := s.e.check(ctx, req.GetForwarded())
	return &pb.CheckResponse{
		Node: r.Node, HasLeader: r.HasLeader, Leader: r.Leader, Term: r.Term,
		Unhealthy: r.Unhealthy, LeaderUnreachable: r.LeaderUnreachable,
	}, nil
}

// maxTransferWait bounds a Transfer RPC whatever the caller's deadline: raft
// gives a transfer up after one election timeout, so waiting longer than a
// few cannot help.
const maxTransferWait = 3

// Transfer is Elector.Transfer within the caller's deadline, capped at a few
// election timeouts, with errors as gRPC status codes that say what to do.
func (s *nodeService) Transfer(ctx context.Context, req *pb.TransferRequest) (*pb.TransferResponse, error) {
	e, to := s.e, req.GetTo()
	if v := e.view.Load(); v.lead != e.self {
		if v.lead == 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "%s is not the leader and knows of none (term %d); retry when a leader is elected", e.cfg.Name, v.term)
		}
		return nil, status.Errorf(codes.FailedPrecondition, "%s is not the leader; %s is (term %d): ask it", e.cfg.Name, e.name(v.lead), v.term)
	}
	if to != "" && !e.isMember(to) {
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
		return &pb.TransferResponse{Leader: e.name(v.lead), Term: v.term}, nil
	case errors.Is(err, ErrNotLeader):
		return nil, status.Errorf(codes.FailedPrecondition, "%s stopped leading before the transfer began; ask the new leader", e.cfg.Name)
	case errors.Is(err, ErrStopped), errors.Is(err, ErrNotRunning):
		return nil, status.Errorf(codes.Unavailable, "%s stopped during the transfer; ask `raftelect status` who leads now", e.cfg.Name)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return nil, status.Errorf(codes.DeadlineExceeded, "%v; no other node leads yet (a transfer is given up after one election timeout, %v)", err, e.electionTimeout.Round(time.Millisecond))
	default:
		return nil, status.Error(codes.FailedPrecondition, fmt.Sprint(err))
	}
}

// Watch bounds. A status is looked at every sampling period (the heartbeat,
// at least watchMinSample) and sent when it changed; the caller's
// status_interval is raised to watchMinInterval, so a caller cannot make a
// node send statuses faster than that.
const (
	watchMinSample   = 20 * time.Millisecond
	watchMinInterval = 100 * time.Millisecond
)

// Watch sends the node's status, then its leadership events (Events) and its
// status whenever it changed, until the caller goes or the node stops. It
// never slows the node, and a slow reader costs a bounded amount: events
// wait in the Events queue (1024 at most; beyond that the oldest are dropped
// and the next event says how many, in missed), and a status is read from
// the node only when it can be sent, so it is current when sent and never
// queued.
func (s *nodeService) Watch(req *pb.WatchRequest, stream pb.Node_WatchServer) error {
	e := s.e
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	interval := time.Duration(req.GetStatusIntervalNs())
	if interval > 0 {
		interval = max(interval, watchMinInterval)
	}
	events := e.Events(ctx)
	last := e.Status()
	lastSent := time.Now()
	if err := stream.Send(&pb.WatchResponse{Update: &pb.WatchResponse_Status{Status: statusProto(last, lastSent)}}); err != nil {
		return err
	}
	sample := time.NewTicker(max(e.tick, watchMinSample))
	defer sample.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return status.FromContextError(ctx.Err()).Err()
				}
				return status.Errorf(codes.Unavailable, "%s stopped", e.cfg.Name)
			}
			resp := &pb.WatchResponse{Update: &pb.WatchResponse_Event{Event: eventProto(ev)}, Missed: uint64(ev.Missed)}
			if err := stream.Send(resp); err != nil {
				return err
			}
		case <-sample.C:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		now := time.Now()
		st := e.Status()
		if sameWatchedStatus(st, last) && (interval == 0 || now.Sub(lastSent) < interval) {
			continue
		}
		last, lastSent = st, now
		if err := stream.Send(&pb.WatchResponse{Update: &pb.WatchResponse_Status{Status: statusProto(st, now)}}); err != nil {
			return err
		}
	}
}

// sameWatchedStatus says whether nothing a watcher is told of as a change
// differs between a and b: ages, round trips, queue depths and counters
// move all the time and go out with the periodic status only.
func sameWatchedStatus(a, b Status) bool {
	if a.Role != b.Role || a.Term != b.Term || a.Leader != b.Leader || a.HoldsLease != b.HoldsLease ||
		a.ClusterID != b.ClusterID || a.ElectionsHeld != b.ElectionsHeld || !maps.Equal(a.Labels, b.Labels) ||
		len(a.Peers) != len(b.Peers) {
		return false
	}
	for i := range a.Peers {
		p, q := a.Peers[i], b.Peers[i]
		if p.Name != q.Name || p.Reachable != q.Reachable || p.LastContact.IsZero() != q.LastContact.IsZero() ||
			p.ConfigUnknown != q.ConfigUnknown || p.ConfigDetail != q.ConfigDetail ||
			!slices.Equal(p.ConfigMismatch, q.ConfigMismatch) || !maps.Equal(p.Labels, q.Labels) {
			return false
		}
	}
	return true
}

func statusProto(s Status, now time.Time) *pb.NodeStatus {
	out := &pb.NodeStatus{
		Name: s.Name, Id: s.ID, Role: s.Role, Term: s.Term, Leader: s.Leader,
		HoldsLease: s.HoldsLease, Labels: s.Labels, ElectionsHeld: s.ElectionsHeld,
	}
	for _, p := range s.Peers {
		ago := int64(-1)
		if !p.LastContact.IsZero() {
			ago = int64(now.Sub(p.LastContact))
		}
		out.Peers = append(out.Peers, &pb.PeerStatus{
			Name: p.Name, Address: p.Addr, Reachable: p.Reachable,
			LastContactAgoNs: ago, QueueDepth: uint64(p.QueueDepth), Drops: p.Drops,
			Labels: p.Labels, RttNs: int64(p.RTT),
			ConfigMismatch: p.ConfigMismatch, ConfigUnknown: p.ConfigUnknown, ConfigDetail: p.ConfigDetail,
		})
	}
	return out
}

var eventKinds = map[EventKind]pb.LeadershipEvent_Kind{
	EventCurrent:        pb.LeadershipEvent_KIND_CURRENT,
	EventLeader:         pb.LeadershipEvent_KIND_LEADER,
	EventStartedLeading: pb.LeadershipEvent_KIND_STARTED_LEADING,
	EventStoppedLeading: pb.LeadershipEvent_KIND_STOPPED_LEADING,
}

func eventProto(ev Event) *pb.LeadershipEvent {
	out := &pb.LeadershipEvent{Kind: eventKinds[ev.Kind], UnixNano: ev.Time.UnixNano(), Leader: ev.Leader, Term: ev.Term}
	if l := ev.Lease; l != nil {
		out.Lease = &pb.Lease{Holder: l.Holder, Token: l.Token, StartUnixNano: l.Start.UnixNano()}
	}
	return out
}

// CheckResult is a node's answer to Check.
type CheckResult struct {
	Node      string
	HasLeader bool
	Leader    string
	Term      uint64
	// Unhealthy: the nodes the leader has not heard from within an
	// election timeout. Empty when the leader could not be asked (see
	// LeaderUnreachable).
	Unhealthy         []string
	LeaderUnreachable bool
}

// Check tells whether this node sees a leader and, asking the leader with a
// deadline of half an election timeout, which nodes look unhealthy from
// there. It answers within that bound whatever the peers do.
func (e *Elector) Check(ctx context.Context) CheckResult {
	return e.check(ctx, false)
}

// check answers Check. A follower asks the leader (unless the Check was
// forwarded to it already), with a deadline, so the answer comes within a
// bounded time whatever peers do.
func (e *Elector) check(ctx context.Context, forwarded bool) CheckResult {
	l := e.loop.Load()
	if l == nil {
		return CheckResult{Node: e.cfg.Name}
	}
	v := e.view.Load()
	r := CheckResult{Node: e.cfg.Name, HasLeader: v.lead != 0, Leader: e.name(v.lead), Term: v.term}
	switch {
	case v.lead == e.self:
		for _, m := range e.Members() {
			if id := NodeID(m.Name); id != e.self && time.Since(l.ackedAt.get(id)) > e.electionTimeout {
				r.Unhealthy = append(r.Unhealthy, m.Name)
			}
		}
		slices.Sort(r.Unhealthy)
	case v.lead != 0 && !forwarded:
		conn, ok := l.tr.PeerConn(e.name(v.lead))
		if !ok {
			r.LeaderUnreachable = true
			break
		}
		cctx, cancel := context.WithTimeout(ctx, e.electionTimeout/2)
		defer cancel()
		resp, err := pb.NewNodeClient(conn).Check(cctx, &pb.CheckRequest{Forwarded: true})
		if err != nil {
			r.LeaderUnreachable = true
			break
		}
		r.Unhealthy = resp.GetUnhealthy()
	}
	return r
}
