package election

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/raftelect/raftelect/internal/logbound"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// Status is a node's view of itself and its peers.
type Status struct {
	Name        string
	ID          uint64
	Role        string // follower, pre-candidate, candidate, leader
	Term        uint64
	Leader      string // "" if none known
	HoldsLease  bool
	LeaseExpiry time.Time // when the current lease ends unless renewed
	// ClusterID is the cluster's ID as this node applied it; "" until the
	// first leader of a new cluster has had it committed.
	ClusterID string
	Labels    map[string]string
	Peers     []PeerStatus
	// ElectionsHeld: this node takes no part in elections (asks for no
	// votes, gives none) while a member disagrees with it on membership;
	// that peer's ConfigMismatch says so.
	ElectionsHeld bool
}

// PeerStatus is this node's view of one peer.
type PeerStatus struct {
	Name        string
	Addr        string
	Reachable   bool          // the last send to it succeeded
	LastContact time.Time     // last message either way; zero if never
	RTT         time.Duration // of the last successful send
	QueueDepth  int           // messages waiting to be sent to it
	Drops       uint64        // messages dropped (queue full or expired)
	SendErrors  uint64
	Labels      map[string]string // the peer's labels, once it sent them
	// ConfigMismatch lists how the peer's configuration differs from this
	// node's: transport.MismatchClusterID, MismatchMembership and
	// MismatchTimings; ConfigDetail says it in words, with what to do.
	// ConfigUnknown: the peer's configuration has not been seen yet.
	ConfigMismatch []string
	ConfigDetail   string
	ConfigUnknown  bool
}

// Status returns this node's current view. It never waits on a peer.
func (e *Elector) Status() Status {
	v := e.view.Load()
	s := Status{
		Name:   e.cfg.Name,
		ID:     e.self,
		Role:   roleName(v.role),
		Term:   v.term,
		Leader: e.names[v.lead],
		Labels: maps.Clone(e.cfg.Labels),
	}
	if v.lease != nil && time.Now().Before(v.leaseExpiry) {
		s.HoldsLease, s.LeaseExpiry = true, v.leaseExpiry
	}
	if l := e.loop.Load(); l != nil {
		s.ClusterID = l.currentClusterID()
		for _, p := range l.tr.Stats() {
			s.Peers = append(s.Peers, PeerStatus(p))
		}
		s.ElectionsHeld = l.tr.ElectionsHeld()
	}
	return s
}

func (s Status) proto() *pb.NodeStatus {
	out := &pb.NodeStatus{
		Name: s.Name, Id: s.ID, Role: s.Role, Term: s.Term, Leader: s.Leader,
		HoldsLease: s.HoldsLease, Labels: s.Labels, ElectionsHeld: s.ElectionsHeld,
	}
	now := time.Now()
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

// publish stores the loop's view for readers on other goroutines.
func (e *Elector) publish(l *raftLoop) { e.publishLease(l, time.Time{}) }

func (e *Elector) publishLease(l *raftLoop, expiry time.Time) {
	v := &nodeView{role: l.role, term: l.term, vote: l.vote, lead: l.lead, lease: l.current}
	if l.current != nil {
		v.leaseExpiry = expiry
	}
	old := e.view.Load()
	if *old == *v {
		return // nothing changed: no allocation for readers to see
	}
	e.view.Store(v)
}

// Check tells whether this node sees a leader and, asking the leader with a
// deadline of half an election timeout, which nodes look unhealthy from
// there. It answers within that bound whatever the peers do.
func (e *Elector) Check(ctx context.Context) *pb.CheckResponse {
	l := e.loop.Load()
	if l == nil {
		return &pb.CheckResponse{Node: e.cfg.Name}
	}
	return e.check(ctx, l, false)
}

// check answers the Check RPC: does this node see a leader, and which nodes
// look unhealthy from the leader. A follower asks the leader, with a
// deadline, so the answer comes within a bounded time whatever peers do.
func (e *Elector) check(ctx context.Context, l *raftLoop, forwarded bool) *pb.CheckResponse {
	v := e.view.Load()
	resp := &pb.CheckResponse{Node: e.cfg.Name, HasLeader: v.lead != 0, Leader: e.names[v.lead], Term: v.term}
	switch {
	case v.lead == e.self:
		for id, name := range e.names {
			if id != e.self && time.Since(l.lease.lastAck(id)) > e.electionTimeout {
				resp.Unhealthy = append(resp.Unhealthy, name)
			}
		}
	case v.lead != 0 && !forwarded:
		client, ok := l.tr.PeerClient(e.names[v.lead])
		if !ok {
			resp.LeaderUnreachable = true
			break
		}
		cctx, cancel := context.WithTimeout(ctx, e.electionTimeout/2)
		defer cancel()
		r, err := client.Check(cctx, &pb.CheckRequest{Forwarded: true})
		if err != nil {
			resp.LeaderUnreachable = true
			break
		}
		resp.Unhealthy = r.GetUnhealthy()
	}
	return resp
}

// raftLogger sends raft's own logging to slog. Raft's Info messages
// (elections, role changes) go to Debug: the election package logs those
// transitions itself, once, and a healthy cluster stays quiet. Raft names
// nodes by their IDs in hex ("8b37d07b558d826 stepped down"); names, when
// set, turns each member's ID into its name.
type raftLogger struct {
	log   *slog.Logger
	names *strings.Replacer
}

// newRaftLogger names every member of e's cluster in raft's log lines.
func newRaftLogger(e *Elector) raftLogger {
	var pairs []string
	for id, name := range e.names {
		pairs = append(pairs, strconv.FormatUint(id, 16), name)
	}
	return raftLogger{log: e.log, names: strings.NewReplacer(pairs...)}
}

func (r raftLogger) name(s string) string {
	if r.names == nil {
		return s
	}
	return r.names.Replace(s)
}

var _ raft.Logger = raftLogger{}

func (r raftLogger) Debug(v ...any) { r.logf(slog.LevelDebug, "", fmt.Sprint, v) }
func (r raftLogger) Debugf(f string, v ...any) {
	r.logf(slog.LevelDebug, f, nil, v)
}
func (r raftLogger) Info(v ...any)               { r.logf(slog.LevelDebug, "", fmt.Sprint, v) }
func (r raftLogger) Infof(f string, v ...any)    { r.logf(slog.LevelDebug, f, nil, v) }
func (r raftLogger) Warning(v ...any)            { r.logf(slog.LevelWarn, "", fmt.Sprint, v) }
func (r raftLogger) Warningf(f string, v ...any) { r.logf(slog.LevelWarn, f, nil, v) }
func (r raftLogger) Error(v ...any)              { r.logf(slog.LevelError, "", fmt.Sprint, v) }
func (r raftLogger) Errorf(f string, v ...any)   { r.logf(slog.LevelError, f, nil, v) }

// logf formats only what will be written, and names the line's kind by its
// format string, so the rate limit (internal/logbound) treats "ignored a
// vote from X in term N" as one kind whatever X and N a peer sends.
func (r raftLogger) logf(level slog.Level, f string, sprint func(...any) string, v []any) {
	ctx := context.Background()
	if !r.log.Enabled(ctx, level) {
		return
	}
	if sprint != nil {
		r.log.Log(ctx, level, r.name(sprint(v...)))
		return
	}
	r.log.Log(ctx, level, r.name(fmt.Sprintf(f, v...)), logbound.KindKey, f)
}
func (r raftLogger) Fatal(v ...any)            { r.Panic(v...) }
func (r raftLogger) Fatalf(f string, v ...any) { r.Panicf(f, v...) }
func (r raftLogger) Panic(v ...any)            { s := r.name(fmt.Sprint(v...)); r.log.Error(s); panic(s) }
func (r raftLogger) Panicf(f string, v ...any) {
	s := r.name(fmt.Sprintf(f, v...))
	r.log.Error(s)
	panic(s)
}
