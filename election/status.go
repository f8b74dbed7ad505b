package election

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/raftelect/raftelect/internal/core"
	"github.com/raftelect/raftelect/internal/logbound"
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
	// Members: the cluster's members as this node applied them.
	Members []Member
	// PreferredLeader: the member leadership returns to ("" if no member
	// has a priority); LastPreferredMove: why leadership last moved to it
	// (on the node that moved it).
	PreferredLeader   string
	LastPreferredMove string
	// MembershipNote: how the configured peers differ from the members
	// ("" if they agree). The members apply; update the configuration.
	MembershipNote string
}

// Kinds of configuration difference between a peer and this node, as
// PeerStatus.ConfigMismatch lists them.
const (
	// MismatchClusterID: the peer belongs to another cluster; raft
	// messages are refused both ways.
	MismatchClusterID = "cluster-id"
	// MismatchMembership: the peer lists other members; raft messages are
	// refused both ways and elections held (Status.ElectionsHeld).
	MismatchMembership = "membership"
	// MismatchTimings: the peer runs with other timings; allowed (a rolling
	// change), reported.
	MismatchTimings = "timings"
)

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
	// node's: MismatchClusterID, MismatchMembership and MismatchTimings;
	// ConfigDetail says it in words, with what to do.
	// ConfigUnknown: the peer's configuration has not been seen yet.
	ConfigMismatch []string
	ConfigDetail   string
	ConfigUnknown  bool
	// DatagramHeartbeats: this node's heartbeats to the peer go as UDP
	// datagrams, which it answered lately (docs/transport.md, "Datagram
	// heartbeats"); false on followers, which send no heartbeats, and
	// where UDP does not get through.
	DatagramHeartbeats bool
}

// Status returns this node's current view. It never waits on a peer.
func (e *Elector) Status() Status {
	v := e.view.Load()
	s := Status{
		Name:   e.cfg.Name,
		ID:     e.self,
		Role:   core.RoleName(v.role),
		Term:   v.term,
		Leader: e.name(v.lead),
		Labels: maps.Clone(e.cfg.Labels),
	}
	mv := e.membership.Load()
	s.Members, s.PreferredLeader, s.LastPreferredMove, s.MembershipNote = slices.Clone(mv.members), mv.preferred, mv.lastMove, mv.note
	if v.lease != nil && time.Now().Before(v.leaseExpiry) {
		s.HoldsLease, s.LeaseExpiry = true, v.leaseExpiry
	}
	if l := e.loop.Load(); l != nil {
		s.ClusterID = l.currentClusterID()
		for _, p := range l.tr.Stats() {
			s.Peers = append(s.Peers, PeerStatus(p))
		}
		s.ElectionsHeld = l.electionsHeld.Load()
	}
	return s
}

// publish stores the loop's view for readers on other goroutines.
func (e *Elector) publish(l *raftLoop) {
	v := &nodeView{role: l.role, term: l.term, vote: l.vote, lead: l.lead, lease: l.current}
	if l.current != nil {
		_, _, _, v.leaseExpiry = l.node.Lease()
	}
	old := e.view.Load()
	if *old == *v {
		return // nothing changed: no allocation for readers to see
	}
	e.view.Store(v)
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
	for id, name := range e.membership.Load().names {
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
