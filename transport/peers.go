package transport

// Runtime membership. The member set is one immutable peerSet behind an
// atomic pointer: Send, the inbound handlers, Stats and the limiter load it
// once per call and never lock, and SetPeers builds the next set and swaps
// it in. A peer whose record (name, address, identity, pins) is unchanged
// keeps its *peer, with its lanes, connections, labels and agreement; a new
// or changed one gets a fresh *peer, started as at Start; a removed or
// changed one is stopped: its context is cancelled (its lanes, connection
// watcher and hello end), its queues are closed and what they held is
// counted as dropped, and its connections are closed off the caller's
// goroutine. Nothing of a removed peer is kept: it is no longer in the set.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// peerSet is the member set at one time. Never modified once stored.
type peerSet struct {
	byID    map[uint64]*peer
	byName  map[string]*peer
	members *Members // every member's identity, self included
	// former: members this transport removed (SetPeers), by identity and
	// pins, none of them a member now: so that a removed node with a
	// still-valid certificate is told apart from a stranger.
	former    *Members
	validator inboundValidator
	list      []Peer // every member as given, self included
}

// set returns the current member set.
func (t *Transport) set() *peerSet { return t.peers.Load() }

// PeerForgetter is implemented by Metrics that keep per-peer series: the
// transport calls ForgetPeer when a peer leaves the member set, so that a
// removed member's series do not stay behind.
type PeerForgetter interface {
	ForgetPeer(peer string)
}

// newPeerSet validates members (every member, self included) and builds
// the set, reusing from prev the *peer of every member whose record did not
// change.
func (t *Transport) newPeerSet(members []Peer, prev *peerSet) (*peerSet, error) {
	if err := t.validatePeers(members); err != nil {
		return nil, err
	}
	table, err := NewMembers(members)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	s := &peerSet{
		byID: map[uint64]*peer{}, byName: map[string]*peer{}, members: table,
		validator: inboundValidator{self: t.opts.Self.ID, peers: map[uint64]string{}},
		list:      slices.Clone(members),
	}
	for _, m := range members {
		if m.ID == t.opts.Self.ID {
			continue
		}
		var p *peer
		if prev != nil {
			if old := prev.byID[m.ID]; old != nil && samePeer(old.Peer, m) {
				p = old
			}
		}
		if p == nil {
			p = t.newPeer(m)
		}
		s.byID[m.ID], s.byName[m.Name] = p, p
		s.validator.peers[m.ID] = m.Name
	}
	return s, nil
}

// samePeer says whether a and b describe the same member the same way: if
// not, the transport re-dials it.
func samePeer(a, b Peer) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Addr == b.Addr && a.identity() == b.identity() &&
		slices.Equal(a.PublicKeyPins, b.PublicKeyPins)
}

// validatePeers checks a member list (self included) for what would make
// the transport misroute or misidentify.
func (t *Transport) validatePeers(members []Peer) error {
	ids, names := map[uint64]string{}, map[string]bool{}
	self := false
	var errs []error
	for _, m := range members {
		switch {
		case m.ID == 0:
			errs = append(errs, fmt.Errorf("member %q has ID 0; every member needs a non-zero ID", m.Name))
		case ids[m.ID] != "":
			errs = append(errs, fmt.Errorf("members %q and %q have the same ID %x; IDs must be unique", ids[m.ID], m.Name, m.ID))
		}
		ids[m.ID] = m.Name
		switch {
		case m.Name == "":
			errs = append(errs, fmt.Errorf("member %x has no name; every member needs one", m.ID))
		case names[m.Name]:
			errs = append(errs, fmt.Errorf("member name %q appears twice; names must be unique", m.Name))
		}
		names[m.Name] = true
		if m.Addr == "" && m.ID != t.opts.Self.ID { // ours is the listener's
			errs = append(errs, fmt.Errorf("member %q has no address; give the host:port of its peer listener", m.Name))
		}
		if m.ID == t.opts.Self.ID {
			self = true
			if m.Name != t.opts.Self.Name {
				errs = append(errs, fmt.Errorf("member %x is this node, named %q here but %q in the list; a node's name cannot change while it runs", m.ID, t.opts.Self.Name, m.Name))
			}
		}
	}
	if !self {
		errs = append(errs, fmt.Errorf("the member list does not name this node (%s, ID %x); pass every member, this node included", t.opts.Self.Name, t.opts.Self.ID))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("transport: invalid member list: %w", err)
	}
	return nil
}

func (t *Transport) newPeer(m Peer) *peer {
	p := &peer{
		Peer: m, control: newSendQueue(t.opts.ControlQueue), data: newSendQueue(t.opts.DataQueue),
		hedge: newSendQueue(1),
	}
	p.path.ready, p.path.took = make(chan struct{}, 1), make(chan struct{}, 1)
	p.sendLabels.Store(true)
	p.sendConfig.Store(true)
	return p
}

// SetPeers replaces the member set while the transport runs (or before it
// starts): members lists every member, this node included, as the
// replicated membership names them. New members are dialled and get their
// lanes as at Start; removed members' lanes stop, their queued messages are
// dropped (counted as drops, a snapshot among them reported failed) and
// their connections close; a member whose address, identity or pins
// changed is removed and added again, so it is re-dialled. Inbound RPCs are
// authorized against the new set from the moment it returns; connections
// from removed members are closed.
//
// It never waits for the network (connections are closed on goroutines of
// their own), so the raft loop may call it; it is safe to call
// concurrently with Send and inbound RPCs. A set equal to the current one
// changes nothing. After Stop it does nothing. It fails, changing nothing,
// if members are invalid: a duplicate ID or name, an empty address, this
// node missing or under another name, two members with the same identity,
// or a list in which this node's certificate no longer identifies it.
func (t *Transport) SetPeers(members []Peer) error {
	t.setMu.Lock()
	defer t.setMu.Unlock()
	prev := t.set()
	next, err := t.newPeerSet(members, prev)
	if err != nil {
		return err
	}
	if c := t.opts.Credentials; c != nil {
		if err := c.checkOwnIdentity(next.members, t.opts.Self.Name); err != nil {
			return fmt.Errorf("transport: invalid member list: %w", err)
		}
	}
	next.former = t.formerMembers(prev, next)
	if t.stopped {
		return nil
	}
	var added, removed []*peer
	for id, p := range next.byID {
		if prev.byID[id] != p {
			added = append(added, p)
		}
	}
	for id, p := range prev.byID {
		if next.byID[id] != p {
			removed = append(removed, p)
		}
	}
	if len(added) == 0 && len(removed) == 0 && samePeerList(prev.list, next.list) {
		return nil
	}
	if t.ctx != nil {
		for _, p := range added {
			if err := t.startPeer(p); err != nil {
				for _, q := range added {
					if q.cancel != nil {
						t.stopPeer(q, false)
					}
				}
				return err
			}
		}
	}
	t.peers.Store(next)
	if t.updateOwnMembers(next.list) && t.ctx != nil {
		// Our description changed: tell the peers we keep now, as a
		// hello does. One that had judged our old list different may
		// send us nothing until it hears the new one.
		for id, p := range next.byID {
			if prev.byID[id] == p {
				t.announce(p)
			}
		}
	}
	if t.limiter != nil {
		t.limiter.setMembers(next.members)
	}
	if t.ctx != nil {
		for _, p := range removed {
			t.stopPeer(p, true)
		}
	}
	for _, p := range removed {
		if next.byName[p.Name] == nil {
			if t.limiter != nil {
				t.limiter.closeMember(p.Name)
			}
			if f, ok := t.opts.Metrics.(PeerForgetter); ok {
				f.ForgetPeer(p.Name)
			}
		}
	}
	t.log.Info("member set changed", "members", len(next.list), "added", peerNames(added), "removed", peerNames(removed))
	return nil
}

func samePeerList(a, b []Peer) bool {
	return slices.EqualFunc(a, b, samePeer)
}

func peerNames(ps []*peer) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

// startPeer dials p and starts its goroutines. Called with setMu held,
// after Start and before Stop.
func (t *Transport) startPeer(p *peer) error {
	conn, err := t.dial(p, true)
	if err != nil {
		return err
	}
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	p.conn = conn
	p.client = pb.NewPeerClient(conn)
	t.wg.Add(1)
	go t.watchConn(p)
	if !t.opts.SyncSend {
		t.wg.Add(2)
		go t.runLane(p, p.control, p.client, t.opts.ControlTimeout)
		go t.runLane(p, p.data, p.client, t.opts.DataTimeout)
	}
	return nil
}

// stopPeer stops a peer that left the set: its goroutines end, its queues
// refuse further messages, what they held is reported dropped (when
// report), and its connections close on a goroutine of their own, since
// closing may wait for the connection's own goroutines.
func (t *Transport) stopPeer(p *peer, report bool) {
	p.removed.Store(true)
	p.cancel()
	closeAnswers(p)
	dropped := map[raftpb.MessageType]int{}
	n := 0
	for _, q := range []*sendQueue{p.control, p.data, p.hedge} {
		for _, qm := range q.close() {
			n++
			dropped[qm.msg.GetType()]++
			if report && qm.msg.GetType() == raftpb.MsgSnap {
				t.opts.Handler.ReportSnapshot(p.ID, true)
			}
		}
	}
	if report && n > 0 {
		p.drops.Add(uint64(n))
		if m := t.opts.Metrics; m != nil {
			for typ, k := range dropped {
				for range k {
					m.Dropped(p.Name, typ)
				}
			}
		}
		t.log.Warn("dropped messages queued to a peer that left the member set", "peer", p.Name, "dropped", n)
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		p.spareMu.Lock()
		spare := p.spare
		p.spareTried = true // no spare after this
		p.spareMu.Unlock()
		if spare != nil {
			spare.Close()
		}
		p.conn.Close()
	}()
}

// announce sends p an empty Send carrying our description, on a goroutine
// of its own, bounded by ControlTimeout. Called with setMu held, after
// Start and before Stop.
func (t *Transport) announce(p *peer) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		p.sendConfig.Store(true)
		t.send(p, nil, t.opts.ControlTimeout)
	}()
}

// maxFormerMembers bounds how many removed members are remembered.
const maxFormerMembers = maxConfigMembers

// formerMembers is prev's former members and the members prev has and next
// has not, newest last, without anyone next has (by name or identity) and
// at most maxFormerMembers of them. Called with setMu held.
func (t *Transport) formerMembers(prev, next *peerSet) *Members {
	current := map[string]bool{}
	for _, m := range next.list {
		current[m.Name], current["identity "+m.identity()] = true, true
		t.refusedRemoved.Delete(m.Name) // added again: log a new removal
	}
	keep := func(m Peer) bool { return !current[m.Name] && !current["identity "+m.identity()] }
	var list []Peer
	for _, m := range t.formerList {
		if keep(m) {
			list = append(list, m)
		}
	}
	for _, m := range prev.list {
		if keep(m) {
			// Newest wins: drop an older record of the same name or identity.
			list = slices.DeleteFunc(list, func(o Peer) bool { return o.Name == m.Name || o.identity() == m.identity() })
			list = append(list, m)
		}
	}
	if len(list) > maxFormerMembers {
		list = list[len(list)-maxFormerMembers:]
	}
	t.formerList = list
	former, err := NewMembers(list)
	if err != nil {
		// Cannot happen: names and identities are unique in list. Then
		// removed members are refused as strangers, which is safe.
		t.log.Error("cannot index removed members", "err", err)
		return nil
	}
	return former
}

// refuseRemoved refuses a caller whose certificate identifies a member
// this node removed: PermissionDenied with notMemberText, so that the
// caller learns it (NotMember), counted under RejectRemovedMember and
// logged once per removed member. It returns nil for any other caller.
func (t *Transport) refuseRemoved(ctx context.Context, set *peerSet, cn string) error {
	if set.former == nil {
		return nil
	}
	cert, err := callerCert(ctx)
	if cert == nil || err != nil {
		return nil
	}
	name, err := set.former.Match(cert)
	if name == "" || err != nil {
		return nil
	}
	t.reject(RejectRemovedMember)
	if _, logged := t.refusedRemoved.LoadOrStore(name, true); !logged {
		t.log.Warn("refusing a removed member: its certificate is valid, but it is no member of this cluster any more",
			"member", name, "common_name", cn)
	}
	return status.Errorf(codes.PermissionDenied, "caller %q (member %s until it was removed) "+notMemberText+
		" any more: a removed node must stop; to rejoin, add it again as a new member", cn, name)
}

// probe announces us to p, whose verdict stops our raft messages to it, at
// most once per ControlTimeout. The verdict holds until p describes itself
// anew, and p may have nothing to send us: its own announcement of a new
// member list (SetPeers) can be lost (a timeout, a broken connection), and
// then neither side would ever send again. The answer to the probe carries
// p's description if it changed. Called on the raft loop (Send).
func (t *Transport) probe(p *peer) {
	now := int64(time.Since(monoBase))
	last := p.probed.Load()
	if last != 0 && time.Duration(now-last) < t.opts.ControlTimeout || !p.probed.CompareAndSwap(last, now) {
		return
	}
	t.setMu.Lock()
	defer t.setMu.Unlock()
	if t.stopped || p.ctx == nil || p.ctx.Err() != nil {
		return
	}
	t.announce(p)
}
