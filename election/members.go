package election

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/raftelect/raftelect/internal/core"
	"github.com/raftelect/raftelect/transport"
)

// Online membership (docs/operations.md, "Changing the members"). The
// members that raft applied are the truth: the peers of the configuration
// only bootstrap a brand-new cluster, and a configuration that lists other
// members is reported (Status.MembershipNote), never applied.

// Member is one member of the cluster, as its replicated membership records
// it.
type Member struct {
	Name     string
	Address  string // host:port of its peer listener
	Identity string // the name its certificate carries ("": Name)
	// PublicKeyPins pin its certificate's public key (see PeerConfig).
	PublicKeyPins []string
	// Witness: a voter that never leads (PeerConfig.Witness).
	Witness bool
	// Priority: leadership returns to the healthy voter with the highest
	// priority after Config.FailBackAfter (PeerConfig.Priority).
	Priority int
	// Learner: added, still catching up; it becomes a voter by itself.
	Learner bool
}

// Errors of membership changes.
var (
	// ErrChangeInProgress: another membership change has not finished;
	// try again once Members shows it done.
	ErrChangeInProgress = errors.New("election: another membership change is in progress")
	// ErrRemoved: this node was removed from the cluster (Run returns it).
	ErrRemoved = errors.New("election: this node was removed from the cluster")
)

// membershipView is the applied membership as the raft loop last published
// it, read without locks.
type membershipView struct {
	members []Member
	// names: every member this node knew in this run, removed ones
	// included, so logs and status still name them.
	names map[uint64]string
	// preferred: the member leadership should rest with ("" if no member
	// has a priority); lastMove: why leadership last moved to it.
	preferred, lastMove string
	// note: how the configured peers differ from the applied members.
	note string
	// published: set by publishMembers (not the configured peers New
	// starts with); member: this node is in the applied membership.
	published, member bool
	// joinedAt: when this node, joining, found itself added (zero if it
	// did not join in this run). Refusals from before say nothing of a
	// removal: a node that joins is refused until it is added.
	joinedAt time.Time
	// changed is closed when a newer view replaces this one.
	changed chan struct{}
}

func memberFromCore(m core.Member) Member {
	return Member{Name: m.Name, Address: m.Address, Identity: m.Identity, PublicKeyPins: slices.Clone(m.Pins),
		Witness: m.Witness, Priority: m.Priority, Learner: m.Learner}
}

func memberToCore(m Member) core.Member {
	return core.Member{ID: NodeID(m.Name), Name: m.Name, Address: m.Address, Identity: m.Identity,
		Pins: slices.Clone(m.PublicKeyPins), Witness: m.Witness, Priority: m.Priority}
}

// configuredMembers are the members the configuration lists, as records.
func (c Config) configuredMembers() []core.Member {
	out := make([]core.Member, 0, len(c.Peers))
	for _, p := range c.Peers {
		out = append(out, memberToCore(Member{Name: p.Name, Address: p.Address, Identity: p.Identity,
			PublicKeyPins: p.PublicKeyPins, Witness: p.Witness, Priority: p.Priority}))
	}
	return out
}

// name is the name of member id ("" for none).
func (e *Elector) name(id uint64) string {
	if id == 0 {
		return ""
	}
	if n, ok := e.membership.Load().names[id]; ok {
		return n
	}
	return fmt.Sprintf("%x", id)
}

// isMember reports whether name is a member of the applied membership.
func (e *Elector) isMember(name string) bool {
	return slices.ContainsFunc(e.membership.Load().members, func(m Member) bool { return m.Name == name })
}

// Members returns the cluster's members as this node applied them, sorted
// by name. Before Run, and on a node that joins and has not been added yet,
// it is the configured peers.
func (e *Elector) Members() []Member {
	return slices.Clone(e.membership.Load().members)
}

// AddMember adds m to the cluster and waits until it is a voter. It joins as
// a learner (start it with Config.Join) and the leader promotes it once it
// has caught up; until then it neither votes nor counts for the lease. Only
// the leader adds (ErrNotLeader names the leader); one change at a time
// (ErrChangeInProgress). If ctx ends first, m stays added and is promoted
// when it catches up (Members shows it as a learner).
func (e *Elector) AddMember(ctx context.Context, m Member) error {
	return e.changeMembers(ctx, m, "")
}

// ReplaceMember adds m in the place of the voter old, alive or dead: m joins
// as a learner, and once it has caught up one joint change makes it a voter
// and removes old, so no intermediate configuration has fewer voters. It
// waits until old is gone. old may be the leader: it hands leadership to
// a member that stays as soon as the joint configuration leaves it out, and
// then stops as removed.
func (e *Elector) ReplaceMember(ctx context.Context, old string, m Member) error {
	if !e.isMember(old) {
		return fmt.Errorf("%w: cannot replace %q, which is not a member", ErrUnknownPeer, old)
	}
	return e.changeMembers(ctx, m, old)
}

func (e *Elector) changeMembers(ctx context.Context, m Member, replaces string) error {
	if err := validateNewMember(m); err != nil {
		return err
	}
	cm := memberToCore(m)
	if replaces != "" {
		cm.Replaces = NodeID(replaces)
	}
	if err := e.onLoop(ctx, func(l *raftLoop, now time.Time) error { return l.node.AddMember(now, cm) }); err != nil {
		return err
	}
	return e.waitMembers(ctx, replaces == e.cfg.Name, fmt.Sprintf("%s is added but not yet a voter (it catches up as a learner, then the leader promotes it)", m.Name), func(ms []Member) bool {
		voter := slices.ContainsFunc(ms, func(x Member) bool { return x.Name == m.Name && !x.Learner })
		gone := replaces == "" || !slices.ContainsFunc(ms, func(x Member) bool { return x.Name == replaces })
		return voter && gone
	})
}

// RemoveMember removes the named member, alive or dead, and waits until
// this node applied the removal. The leader does not remove itself:
// transfer leadership first. It refuses a removal that would leave fewer
// live voters than a quorum.
func (e *Elector) RemoveMember(ctx context.Context, name string) error {
	if !e.isMember(name) {
		return fmt.Errorf("%w: cannot remove %q, which is not a member", ErrUnknownPeer, name)
	}
	id := NodeID(name)
	if err := e.onLoop(ctx, func(l *raftLoop, now time.Time) error { return l.node.RemoveMember(now, id) }); err != nil {
		return err
	}
	return e.waitMembers(ctx, false, fmt.Sprintf("the removal of %s is proposed but not yet applied here", name), func(ms []Member) bool {
		return !slices.ContainsFunc(ms, func(x Member) bool { return x.Name == name })
	})
}

func validateNewMember(m Member) error {
	switch {
	case m.Name == "":
		return errors.New("election: a new member needs a name")
	case m.Address == "":
		return fmt.Errorf("election: new member %s needs the address of its peer listener (host:port)", m.Name)
	case m.Witness && m.Priority != 0:
		return fmt.Errorf("election: new member %s is a witness, which never leads: it takes no priority", m.Name)
	case m.Priority < 0:
		return fmt.Errorf("election: new member %s: priority %d is negative", m.Name, m.Priority)
	}
	return nil
}

// onLoop runs f on the raft loop with the time it runs at, and maps the
// core's errors to the election package's.
func (e *Elector) onLoop(ctx context.Context, f func(l *raftLoop, now time.Time) error) error {
	l := e.loop.Load()
	if l == nil {
		return ErrNotRunning
	}
	req := changeRequest{f: f, result: make(chan error, 1)}
	select {
	case l.changes <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-l.stopped:
		return ErrStopped
	}
	err := <-req.result
	switch {
	case err == nil:
		return nil
	case errors.Is(err, core.ErrChangeInProgress):
		return &markedError{is: ErrChangeInProgress, err: err}
	case errors.Is(err, core.ErrNotLeader):
		v := e.view.Load()
		if v.lead == 0 {
			return fmt.Errorf("%w: %s knows of no leader (term %d)", ErrNotLeader, e.cfg.Name, v.term)
		}
		return fmt.Errorf("%w: %s is not, %s is (term %d): ask it", ErrNotLeader, e.cfg.Name, e.name(v.lead), v.term)
	default:
		return fmt.Errorf("election: %w", err)
	}
}

// waitMembers waits until done holds for the applied membership. selfOut:
// the change removes this node, so its stopping as removed means done (it
// may learn of its removal from the members' refusals, never applying it).
func (e *Elector) waitMembers(ctx context.Context, selfOut bool, pending string, done func([]Member) bool) error {
	l := e.loop.Load()
	if l == nil {
		return ErrNotRunning
	}
	for {
		v := e.membership.Load()
		if done(v.members) {
			return nil
		}
		select {
		case <-v.changed:
		case <-ctx.Done():
			return fmt.Errorf("election: %s: %w", pending, ctx.Err())
		case <-l.stopped:
			if done(e.membership.Load().members) || selfOut && errors.Is(l.removed, ErrRemoved) {
				return nil // the change removed this node, which then stopped
			}
			return ErrStopped
		}
	}
}

type changeRequest struct {
	f      func(l *raftLoop, now time.Time) error
	result chan error
}

// publishMembers publishes the applied membership and points the transport
// at it. A node that joins and has no configuration yet keeps its
// configured peers: the leader reaches it once it is added. A node that was
// removed publishes the membership without it, and leaves the transport as
// it is: it stops.
func (l *raftLoop) publishMembers() {
	e := l.e
	cms := l.node.Members()
	old := e.membership.Load()
	if len(cms) == 0 {
		return
	}
	member := slices.ContainsFunc(cms, func(m core.Member) bool { return m.ID == e.self })
	v := &membershipView{names: map[uint64]string{}, changed: make(chan struct{}), published: true, member: member, joinedAt: old.joinedAt}
	if member && !old.member && (old.published || e.cfg.Join) {
		v.joinedAt = time.Now()
	}
	for id, n := range old.names {
		v.names[id] = n
	}
	peers := make([]transport.Peer, 0, len(cms))
	for _, m := range cms {
		v.members = append(v.members, memberFromCore(m))
		v.names[m.ID] = m.Name
		p := transport.Peer{ID: m.ID, Name: m.Name, Addr: m.Address, Identity: m.Identity, PublicKeyPins: m.Pins}
		if m.ID == e.self && p.Addr == "" {
			// Our own entry as peers know it: the replicated address (not
			// a listen_address), else the configured one.
			p.Addr, p.Identity, p.PublicKeyPins = l.self.Addr, l.self.Identity, l.self.PublicKeyPins
			for _, c := range e.cfg.Peers {
				if c.Name == m.Name {
					p.Addr = c.Address
				}
			}
		} else if p.Addr == "" {
			// A record from before addresses were replicated: the
			// configured address.
			for _, c := range e.cfg.Peers {
				if c.Name == m.Name {
					p.Addr, p.Identity, p.PublicKeyPins = c.Address, c.Identity, c.PublicKeyPins
				}
			}
		}
		peers = append(peers, p)
	}
	if pm, ok := l.node.Preferred(); ok {
		v.preferred = pm.Name
	}
	v.lastMove = l.node.LastPreferredMove()
	// The core records the reason of each move it makes; a new reason is a
	// new move (it names how long the leader and the member were stable,
	// to the millisecond).
	if mm, ok := e.cfg.Metrics.(MembershipMetrics); ok && v.lastMove != "" && v.lastMove != old.lastMove {
		mm.PreferredLeaderMoved(v.lastMove)
	}
	v.note = membershipNote(e.cfg.Peers, v.members)
	if v.note != "" && v.note != old.note {
		e.log.Warn("the configured peers differ from the cluster's members; the cluster's members apply (update the configuration to match)", "difference", v.note)
	}
	if l.tr != nil && member {
		if err := l.tr.SetPeers(peers); err != nil {
			e.log.Error("cannot point the transport at the new members", "err", err)
		}
	}
	e.membership.Store(v)
	close(old.changed)
}

// membershipNote says how the configured peers differ from the applied
// members ("" if they agree on names and addresses).
func membershipNote(configured []PeerConfig, applied []Member) string {
	var extra, missing, moved []string
	for _, p := range configured {
		i := slices.IndexFunc(applied, func(m Member) bool { return m.Name == p.Name })
		switch {
		case i < 0:
			extra = append(extra, p.Name)
		case applied[i].Address != "" && applied[i].Address != p.Address:
			moved = append(moved, fmt.Sprintf("%s at %s, not %s", p.Name, applied[i].Address, p.Address))
		}
	}
	for _, m := range applied {
		if !slices.ContainsFunc(configured, func(p PeerConfig) bool { return p.Name == m.Name }) {
			missing = append(missing, m.Name)
		}
	}
	var note string
	add := func(what string, names []string) {
		if len(names) == 0 {
			return
		}
		if note != "" {
			note += "; "
		}
		note += what + fmt.Sprint(names)
	}
	add("configured but not members: ", extra)
	add("members not configured: ", missing)
	add("members elsewhere: ", moved)
	return note
}

// notMemberVerdict decides, from the members that refused this node as no
// member, whether it was removed: a majority of the voters of its applied
// configuration refused it within the last few election timeouts, and it
// follows no leader (a removed node hears from none: the leader dropped
// it). One member's refusal is not enough (it may not have applied our
// addition yet, while the leader that added us keeps us), and a node that
// is not a member of its own configuration (it joins) ignores refusals: it
// waits to be added. The transport reports a member's refusal once, and
// again only after that member accepted us in between.
//
// Only an established node can have been removed: a brand-new node whose
// list differs from its peers' is misconfigured, not removed; it stays up,
// takes no part in elections and reports the difference (the transport's
// agreement).
func (l *raftLoop) notMemberVerdict(now time.Time) error {
	if l.lead != 0 || !l.node.Established() {
		return nil
	}
	ms := l.node.Members()
	if !slices.ContainsFunc(ms, func(m core.Member) bool { return m.ID == l.e.self }) {
		return nil
	}
	joined := l.e.membership.Load().joinedAt
	voters, refusing := 0, []string{}
	for _, m := range ms {
		if m.Learner {
			continue
		}
		voters++
		if at, ok := l.refusedBy[m.ID]; ok && now.Sub(at) < refusalMemory*l.e.electionTimeout && at.After(joined) {
			refusing = append(refusing, m.Name)
		}
	}
	if len(refusing) < voters/2+1 {
		return nil
	}
	return fmt.Errorf("%w: members %v refuse it as no member; give it an empty data directory and add it again (`raftelect members add`) to bring it back",
		ErrRemoved, refusing)
}

// refusalMemory: a member's refusal counts for this many election
// timeouts (a removed node's campaigns, which draw the refusals, come one
// election timeout apart or more).
const refusalMemory = 3

// markedError carries a lower layer's error, with its message, and matches
// election's own sentinel is as well (errors.Is).
type markedError struct{ is, err error }

func (e *markedError) Error() string   { return e.err.Error() }
func (e *markedError) Unwrap() []error { return []error{e.is, e.err} }
