package transport

// Configuration agreement: one cluster, one configuration.
//
// Every Send carries the digest of the sender's configuration (cluster ID,
// membership, timings) and every response the receiver's, so each side
// checks the other's on every connection, both ways. The configuration
// itself crosses the wire only when the other side does not know its digest:
// with the hello on every new connection, after it changed (the cluster ID
// became known), or when the receiver asked (need_config). On the per-message
// path the check is one atomic load and two integer compares.
//
// What differs decides what happens:
//   - cluster ID (both known): the two nodes belong to different clusters.
//     Raft messages are refused both ways.
//   - membership (names, identities, addresses), unless BOTH nodes are
//     established (SetEstablished: the node's membership is raft's: its
//     cluster elected a leader, or it joins one and has no list of its
//     own): a node that bootstrapped from its list and has not yet been
//     part of an elected cluster counts votes over that list, so its
//     majorities need not intersect another list's. Raft messages are
//     refused both ways, and the node is told (Handler.MembershipDiffers):
//     while it knows of any member that disagrees it takes no part in
//     elections (internal/core, agreement.go, says why refusing the pair is
//     not enough). One established side is not enough: brand-new nodes n1
//     and n2 listing {n1,n2,n3} beside an established n3, n4, n5 listing
//     five elected a second leader with each other's votes (chaos
//     peer-lists-5-first, when only one side had to be established).
//   - membership, once both nodes are established: allowed, reported only.
//     The membership is replicated in raft then, and members' lists differ
//     legitimately while a change commits and applies; raft's joint
//     consensus keeps the majorities of the old and the new configuration
//     intersecting across the change, which the file comparison stood in
//     for. A node outside a member's set is refused by that member as a
//     non-member (server.go, peers.go), not by this comparison.
//   - timings (heartbeat, election timeout, lease drift margin): allowed, as
//     in a rolling change of election_timeout; reported only.
//
// Every difference is reported once per peer and change: one log line, the
// raftelect_peer_config_mismatch gauge, and the CONFIG column of status.

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// Kinds of configuration difference, as status and metrics name them.
const (
	MismatchClusterID  = "cluster-id"
	MismatchMembership = "membership"
	MismatchTimings    = "timings"
)

// MismatchKinds lists every kind, in the order they are reported.
var MismatchKinds = []string{MismatchClusterID, MismatchMembership, MismatchTimings}

// Timings are the election timings a node runs with. Members may differ in
// them (a rolling change); a difference is reported, not refused.
type Timings struct {
	Heartbeat        time.Duration
	ElectionTimeout  time.Duration
	LeaseDriftMargin float64
}

// Bounds on a peer's configuration description: it lists the members of an
// election, a handful of nodes, and a peer must not make us store megabytes.
const (
	maxConfigMembers     = 256
	maxConfigStringBytes = 512
)

// localConfig is this node's own description and its digest. It changes
// when the cluster ID becomes known and when the member set changes
// (SetPeers).
type localConfig struct {
	clusterID string
	desc      *pb.NodeConfig // shared by every Send: never modified
	digest    uint64
}

// agreement is the verdict on one peer's configuration: what it was
// computed from, and what differs.
type agreement struct {
	remoteDigest uint64 // the peer's digest it judges
	ownDigest    uint64 // ours at the time
	kinds        []string
	detail       string
	refuse       bool // cluster ID or membership differ: no raft messages
	// membershipRefused: the member lists differ while neither node is
	// established; the node is told (Handler.MembershipDiffers).
	membershipRefused bool
}

func (a *agreement) has(kind string) bool { return a != nil && slices.Contains(a.kinds, kind) }

func (a *agreement) refusesMembership() bool { return a != nil && a.membershipRefused }

// newLocalConfig describes this node's configuration.
func newLocalConfig(clusterID string, members []Peer, tm Timings) *localConfig {
	desc := &pb.NodeConfig{
		ClusterId:         clusterID,
		HeartbeatNs:       int64(tm.Heartbeat),
		ElectionTimeoutNs: int64(tm.ElectionTimeout),
		LeaseDriftMargin:  tm.LeaseDriftMargin,
	}
	for _, m := range members {
		desc.Members = append(desc.Members, &pb.Member{Name: m.Name, Identity: m.identity(), Address: m.Addr})
	}
	slices.SortFunc(desc.Members, func(a, b *pb.Member) int { return strings.Compare(a.GetName(), b.GetName()) })
	return &localConfig{clusterID: clusterID, desc: desc, digest: configDigest(desc)}
}

// configDigest is a stable 64-bit FNV-1a digest of a description, never 0
// (0 on the wire means "not described"). Members are hashed in name order,
// so the order of a peer list in a file does not matter.
func configDigest(c *pb.NodeConfig) uint64 {
	h := fnv.New64a()
	str := func(s string) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	num := func(v uint64) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], v)
		h.Write(n[:])
	}
	str(c.GetClusterId())
	members := slices.Clone(c.GetMembers())
	slices.SortFunc(members, func(a, b *pb.Member) int { return strings.Compare(a.GetName(), b.GetName()) })
	num(uint64(len(members)))
	for _, m := range members {
		str(m.GetName())
		str(m.GetIdentity())
		str(m.GetAddress())
	}
	num(uint64(c.GetHeartbeatNs()))
	num(uint64(c.GetElectionTimeoutNs()))
	num(math.Float64bits(c.GetLeaseDriftMargin()))
	if c.GetEstablished() {
		// Hashed only when set: digests of descriptions without it are
		// those of the release before it.
		num(1)
	}
	if d := h.Sum64(); d != 0 {
		return d
	}
	return 1
}

// ownConfig returns this node's description, rebuilt when the cluster ID
// changed since (it becomes known once; a string compare per call).
func (t *Transport) ownConfig() *localConfig {
	c := t.local.Load()
	if t.opts.ClusterID == nil || t.opts.ClusterID() == c.clusterID {
		return c
	}
	t.localMu.Lock()
	defer t.localMu.Unlock()
	return t.rebuildLocalLocked()
}

// rebuildLocalLocked describes this node's configuration as it is now and
// stores the description. Called with localMu held.
func (t *Transport) rebuildLocalLocked() *localConfig {
	id := ""
	if t.opts.ClusterID != nil {
		id = t.opts.ClusterID()
	}
	n := newLocalConfig(id, t.localMembers, t.opts.Timings)
	if t.established {
		n.desc.Established = true
		n.digest = configDigest(n.desc)
	}
	t.local.Store(n)
	return n
}

// SetEstablished tells the transport whether this node's cluster is
// established: its store holds the replicated membership (or a recorded
// cluster ID), so the member list it was started with no longer decides
// anything (Options.Established gives the value at New). While neither node
// of a pair is established, a difference of their member lists is refused
// (two brand-new nodes started with different lists must not form a
// cluster); once either is, a difference is reported only, since members
// legitimately differ while a membership change commits and applies. The
// description carries it; peers are told at once when it changes. It never
// waits for the network.
func (t *Transport) SetEstablished(established bool) {
	t.localMu.Lock()
	changed := t.established != established
	t.established = established
	if changed {
		t.rebuildLocalLocked()
	}
	t.localMu.Unlock()
	if !changed {
		return
	}
	t.setMu.Lock()
	defer t.setMu.Unlock()
	if t.ctx == nil || t.stopped {
		return
	}
	for _, p := range t.set().byID {
		t.announce(p)
	}
}

// updateOwnMembers makes the description carry a new member list, and
// says whether the description changed.
func (t *Transport) updateOwnMembers(members []Peer) bool {
	t.localMu.Lock()
	defer t.localMu.Unlock()
	t.localMembers = members
	prev := t.local.Load().digest
	return t.rebuildLocalLocked().digest != prev
}

// checkConfigBounds refuses a description no real configuration has.
func checkConfigBounds(c *pb.NodeConfig) error {
	if len(c.GetMembers()) > maxConfigMembers {
		return fmt.Errorf("configuration lists %d members, at most %d", len(c.GetMembers()), maxConfigMembers)
	}
	if len(c.GetClusterId()) > maxConfigStringBytes {
		return fmt.Errorf("cluster ID of %d bytes, at most %d", len(c.GetClusterId()), maxConfigStringBytes)
	}
	for _, m := range c.GetMembers() {
		if len(m.GetName()) > maxConfigStringBytes || len(m.GetIdentity()) > maxConfigStringBytes || len(m.GetAddress()) > maxConfigStringBytes {
			return fmt.Errorf("member %.40q: names, identities and addresses are at most %d bytes", m.GetName(), maxConfigStringBytes)
		}
	}
	return nil
}

// agreeInbound is the receiver's half of the check, for one Send from p. It
// fills the response's side of the exchange and returns why the batch's raft
// messages must not be stepped ("" when they may).
func (t *Transport) agreeInbound(p *peer, req *pb.SendRequest, resp *pb.SendResponse) (refused string, err error) {
	own := t.ownConfig()
	resp.ConfigDigest = own.digest
	if req.GetKnownConfigDigest() != own.digest {
		resp.Config = own.desc
	}
	d := req.GetConfigDigest()
	if d == 0 {
		// An older raftelect or a test tool: nothing to check against.
		return "", nil
	}
	if req.GetConfig() != nil {
		if err := checkConfigBounds(req.GetConfig()); err != nil {
			return "", err
		}
	}
	a := t.judge(p, own, d, req.GetConfig())
	switch {
	case a == nil:
		resp.NeedConfig = true
		return fmt.Sprintf("%s does not know %s's configuration yet and asked for it", t.opts.Self.Name, p.Name), nil
	case a.refuse:
		return a.detail, nil
	}
	return "", nil
}

// agreeOutbound is the sender's half: it learns p's configuration from the
// response to a Send.
func (t *Transport) agreeOutbound(p *peer, own *localConfig, resp *pb.SendResponse) error {
	// Judged against our description now, not the one the request
	// carried: ours may have changed while it was in flight, and a verdict
	// on an old one would replace a newer verdict.
	own = t.ownConfig()
	d := resp.GetConfigDigest()
	if d == 0 {
		return nil // an older raftelect: nothing to check against
	}
	if resp.GetConfig() != nil {
		if err := checkConfigBounds(resp.GetConfig()); err != nil {
			return err
		}
	}
	t.judge(p, own, d, resp.GetConfig())
	return nil
}

// judge returns the verdict on p's configuration with digest d, given in
// full as desc when the peer sent it. It returns nil while p's description
// for d is not known. A new verdict is reported once.
func (t *Transport) judge(p *peer, own *localConfig, d uint64, desc *pb.NodeConfig) *agreement {
	if a := p.agreement.Load(); a != nil && a.remoteDigest == d && a.ownDigest == own.digest && desc == nil {
		return a // the per-message path
	}
	p.confMu.Lock()
	defer p.confMu.Unlock()
	if desc != nil {
		p.remoteConfig, p.remoteDigest = desc, d
	}
	if p.remoteConfig == nil || p.remoteDigest != d {
		return nil
	}
	prev := p.agreement.Load()
	if prev != nil && prev.remoteDigest == d && prev.ownDigest == own.digest {
		return prev
	}
	a := compareConfigs(t.opts.Self.Name, p.Name, own.desc, p.remoteConfig)
	a.remoteDigest, a.ownDigest = d, own.digest
	p.agreement.Store(a)
	p.knownDigest.Store(d)
	t.reportAgreement(p, prev, a)
	return a
}

// reportAgreement logs a changed verdict once and keeps count of the peers
// that disagree on membership.
func (t *Transport) reportAgreement(p *peer, prev, a *agreement) {
	if prev.refusesMembership() != a.refusesMembership() {
		t.noteConflicts(p, a.refusesMembership())
	}
	if prev != nil && slices.Equal(prev.kinds, a.kinds) && prev.detail == a.detail {
		return
	}
	switch {
	case len(a.kinds) > 0:
		t.log.Warn("peer's configuration differs from this node's", "peer", p.Name,
			"differs", strings.Join(a.kinds, ","), "refusing_raft_messages", a.refuse, "detail", a.detail)
	case prev != nil && len(prev.kinds) > 0:
		t.log.Info("peer's configuration agrees with this node's again", "peer", p.Name)
	}
}

// noteConflicts tells the node that peer p's membership differs from ours,
// or agrees again. The node decides what follows (internal/core: it takes
// no part in elections while any member differs); the transport only
// refuses raft messages between the two nodes of the pair.
func (t *Transport) noteConflicts(p *peer, conflict bool) {
	t.opts.Handler.MembershipDiffers(p.ID, conflict)
}

// compareConfigs says how remote (peer's) differs from own (self's).
func compareConfigs(self, peer string, own, remote *pb.NodeConfig) *agreement {
	a := &agreement{}
	var details []string
	if o, r := own.GetClusterId(), remote.GetClusterId(); o != "" && r != "" && o != r {
		a.kinds = append(a.kinds, MismatchClusterID)
		details = append(details, fmt.Sprintf("%s belongs to cluster %q, this node (%s) to cluster %q: one of the two was started "+
			"with another cluster's data directory or peer list; give it the data directory and peers of its own cluster "+
			"(to join this cluster instead, an empty data directory and this cluster's peers)", peer, r, self, o))
	}
	established := own.GetEstablished() && remote.GetEstablished()
	if d := membershipDiff(peer, own.GetMembers(), remote.GetMembers()); d != "" {
		a.kinds = append(a.kinds, MismatchMembership)
		a.membershipRefused = !established
		switch {
		case established:
			details = append(details, d+" (allowed: the cluster is established, its replicated membership decides, and members' lists differ "+
				"while a change commits and applies; if it lasts, a node has not applied a change: check that it is connected and follows the leader)")
		case own.GetEstablished() || remote.GetEstablished():
			details = append(details, d+"; refused: one of the two bootstrapped a cluster from its own list and was never part of this one: "+
				"to join the established cluster, give it an empty data directory and join (`raftelect run --join`), then add it (`raftelect members add`)")
		default:
			details = append(details, d+"; every node must list the same peers: fix the list of the nodes that are wrong and restart them")
		}
	}
	if d := timingsDiff(peer, own, remote); d != "" {
		a.kinds = append(a.kinds, MismatchTimings)
		details = append(details, d+" (allowed during a rolling change; finish it so that every node runs the same timings)")
	}
	a.refuse = a.has(MismatchClusterID) || a.membershipRefused
	a.detail = strings.Join(details, "; ")
	return a
}

// membershipDiff names the members only one side lists and the members
// whose identity or address differ; "" when the lists agree.
func membershipDiff(peer string, own, remote []*pb.Member) string {
	index := func(ms []*pb.Member) map[string]*pb.Member {
		out := make(map[string]*pb.Member, len(ms))
		for _, m := range ms {
			out[m.GetName()] = m
		}
		return out
	}
	o, r := index(own), index(remote)
	var onlyOwn, onlyRemote, changed []string
	for _, name := range slices.Sorted(maps.Keys(o)) {
		rm, ok := r[name]
		switch {
		case !ok:
			onlyOwn = append(onlyOwn, name)
		case rm.GetAddress() != o[name].GetAddress():
			changed = append(changed, fmt.Sprintf("%s's address is %s here, %s on %s", name, o[name].GetAddress(), rm.GetAddress(), peer))
		case rm.GetIdentity() != o[name].GetIdentity():
			changed = append(changed, fmt.Sprintf("%s's identity is %q here, %q on %s", name, o[name].GetIdentity(), rm.GetIdentity(), peer))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r)) {
		if _, ok := o[name]; !ok {
			onlyRemote = append(onlyRemote, name)
		}
	}
	var parts []string
	if len(onlyRemote) > 0 {
		parts = append(parts, fmt.Sprintf("%s lists members this node does not: %s", peer, strings.Join(onlyRemote, ", ")))
	}
	if len(onlyOwn) > 0 {
		parts = append(parts, fmt.Sprintf("this node lists members %s does not: %s", peer, strings.Join(onlyOwn, ", ")))
	}
	parts = append(parts, changed...)
	return strings.Join(parts, "; ")
}

func timingsDiff(peer string, own, remote *pb.NodeConfig) string {
	var parts []string
	if o, r := own.GetHeartbeatNs(), remote.GetHeartbeatNs(); o != r {
		parts = append(parts, fmt.Sprintf("heartbeat interval %v here, %v on %s", time.Duration(o), time.Duration(r), peer))
	}
	if o, r := own.GetElectionTimeoutNs(), remote.GetElectionTimeoutNs(); o != r {
		parts = append(parts, fmt.Sprintf("election timeout %v here, %v on %s", time.Duration(o), time.Duration(r), peer))
	}
	if o, r := own.GetLeaseDriftMargin(), remote.GetLeaseDriftMargin(); o != r {
		parts = append(parts, fmt.Sprintf("lease drift margin %v here, %v on %s", o, r, peer))
	}
	return strings.Join(parts, "; ")
}

// mayDeliver decides, on the raft loop, whether m may go to p: nothing goes
// to a peer that disagrees on the cluster ID or membership (it would refuse
// it); an announcement of our description goes instead, now and then
// (probe).
func (t *Transport) mayDeliver(p *peer, m *raftpb.Message) bool {
	// A verdict on an older description of ours (the member set or the
	// cluster ID changed since) is stale: the next exchange judges again,
	// and the peer checks its side of it.
	if a := p.agreement.Load(); a != nil && a.refuse && a.ownDigest == t.local.Load().digest {
		p.refusedOut.Add(1)
		t.probe(p)
		if m.GetType() == raftpb.MsgSnap {
			t.opts.Handler.ReportSnapshot(p.ID, true)
		}
		return false
	}
	return true
}

// agreedMessages is the Send handler's agreement check: it fills resp's side
// of the exchange and returns the messages of req that may be stepped: none
// when the two nodes disagree on the cluster ID or the membership (or this
// node does not know the sender's configuration yet).
func (t *Transport) agreedMessages(p *peer, req *pb.SendRequest, resp *pb.SendResponse) ([]*raftpb.Message, error) {
	refused, err := t.agreeInbound(p, req, resp)
	if err != nil {
		return nil, err
	}
	if refused != "" {
		resp.Refused = refused
		return nil, nil
	}
	return req.GetMessages(), nil
}

// notMemberText ends the error with which the Send handler refuses a caller
// whose certificate names no member; the sender recognises it by this text.
const notMemberText = "is not a member of this cluster"

// refusedAsNonMember takes a peer's refusal of this node as a non-member as
// a membership difference: the peer is in our list, and its answer
// (authenticated by its server certificate) says we are not in its list, or
// not with the identity our certificate carries. It never describes its
// configuration to a non-member, so this is all we learn; but it is enough
// to hold elections. Without it, nodes whose list names a member that does
// not list them ({n3..n7} against n3's {n1,n2,n3}) would see no difference
// and could elect a second leader.
func (t *Transport) refusedAsNonMember(p *peer, own *localConfig, err error) {
	if t.opts.Credentials == nil {
		// Without TLS nobody has an identity: a receiver cannot tell who
		// sent a request without raft messages (a hello, a description)
		// and refuses it as no member's. That says nothing about us, and
		// taking it as a verdict stopped every insecure cluster from
		// electing (each node's hello refused, raft messages then held).
		return
	}
	s, ok := status.FromError(err)
	if !ok || s.Code() != codes.PermissionDenied || !strings.Contains(s.Message(), notMemberText) {
		return
	}
	own = t.ownConfig() // as in agreeOutbound
	if p.ctx.Err() == nil && !p.notMember.Swap(true) {
		t.log.Warn("a member refuses this node as no member of its cluster", "peer", p.Name, "answer", s.Message())
		t.opts.Handler.NotMember(p.ID)
	}
	p.confMu.Lock()
	defer p.confMu.Unlock()
	prev := p.agreement.Load()
	if prev != nil && prev.remoteDigest == 0 && prev.ownDigest == own.digest {
		return // known already
	}
	a := &agreement{
		ownDigest: own.digest, kinds: []string{MismatchMembership}, refuse: true, membershipRefused: true,
		detail: fmt.Sprintf("%s refuses this node (%s) as no member of its cluster: its peer list does not name %s, "+
			"or names it with another identity than this node's certificate carries; every node must list the same peers: "+
			"fix the lists and restart the nodes whose list is wrong", p.Name, t.opts.Self.Name, t.opts.Self.Name),
	}
	if own.desc.GetEstablished() {
		// Reported only (and to the node as NotMember): in an
		// established cluster the member's set is replicated, and it
		// removed us or has not applied our addition yet.
		a.refuse, a.membershipRefused = false, false
		a.detail = fmt.Sprintf("%s refuses this node (%s) as no member of its cluster: it removed %s, or has not applied its addition yet",
			p.Name, t.opts.Self.Name, t.opts.Self.Name)
	}
	p.agreement.Store(a)
	t.reportAgreement(p, prev, a)
}

// PeerClusterID returns the cluster ID peer id last described to us, ""
// if it described none (it knows none yet, or has not told us).
func (t *Transport) PeerClusterID(id uint64) string {
	p := t.set().byID[id]
	if p == nil {
		return ""
	}
	p.confMu.Lock()
	defer p.confMu.Unlock()
	return p.remoteConfig.GetClusterId()
}
