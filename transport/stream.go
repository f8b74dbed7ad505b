package transport

// Streams: each lane of each peer sends its batches on one long-lived gRPC
// stream (the Peer service's Stream method) instead of one unary Send per
// batch. A unary call opens an HTTP/2 stream, sends header fields and a
// deadline, and is answered with header fields and trailers, each in a TLS
// record of its own; on an idle cluster (one heartbeat per peer and
// heartbeat interval) that was most of a node's CPU and nine tenths of its
// bytes on the wire (docs/benchmarks.md). On a stream, a batch is one
// length-prefixed message in one HTTP/2 DATA frame, and so is its answer.
//
// What stays as it was:
//   - one request in flight per lane, answered in order: the lane sends its
//     next batch (everything queued meanwhile, coalesced) once the answer
//     came, so heartbeats still never wait behind appends (two lanes, two
//     streams) and nothing blocks the raft loop (the queues);
//   - deadlines: the lane's own timer bounds every round trip by
//     ControlTimeout or DataTimeout, as the per-call deadline did; when it
//     fires, the stream is cancelled (torn down), raft is told the peer is
//     unreachable, and the next batch opens a new stream;
//   - every request and answer means what a unary Send's does (identity per
//     message, bounds, agreement, the stamp and the acknowledgement), and
//     the receiver handles both with the same code (handleSend);
//   - a peer without Stream (the previous release) answers Unimplemented:
//     the lane sends it unary Sends until the connection is re-established.
//
// Within one stream, the fields that never change on it (the sender's
// incarnation, labels digest, configuration digest, and the receiver's
// configuration digest as the sender knows it; the answer's acknowledgement
// incarnation and configuration digest) are left out when they repeat the
// previous message's value: 0 means "as before" there (peer.proto). None of
// them ever changes back to 0 once set, so the elision is unambiguous.
//
// A heartbeat's bytes (docs/benchmarks.md, "What a heartbeat carries"):
// node IDs are 64-bit hashes of the names, 10 bytes each with their tag, so a
// raft heartbeat is 26 bytes of which 20 are its From and To, which a
// stream already knows (its caller, checked once; the receiver). A batch
// that is one plain heartbeat therefore travels as SendRequest.heartbeat
// (term and commit), and the receiver makes the raft message back. An
// answer says with one flag each that it acknowledges the very request it
// answers (no stamp) and that its term, leader and promise are the
// previous acknowledgement's. On an idle cluster of real processes a
// round trip above TCP went from ~148 to ~104 bytes.

import (
	"context"
	"errors"
	"io"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// streamRequests remembers, for one stream, the fields of the last
// SendRequest that may be left out of the next one.
type streamRequests struct {
	labels, incarnation, config, known uint64
}

// elide leaves out of r (to be sent) what repeats the previous request.
func (s *streamRequests) elide(r *pb.SendRequest) {
	elide(&r.LabelsDigest, &s.labels)
	elide(&r.Incarnation, &s.incarnation)
	elide(&r.ConfigDigest, &s.config)
	elide(&r.KnownConfigDigest, &s.known)
}

// fill restores in r (as received) what the sender left out.
func (s *streamRequests) fill(r *pb.SendRequest) {
	fill(&r.LabelsDigest, &s.labels)
	fill(&r.Incarnation, &s.incarnation)
	fill(&r.ConfigDigest, &s.config)
	fill(&r.KnownConfigDigest, &s.known)
}

// streamResponses is streamRequests for the answers: the last
// acknowledgement's incarnation, term, leader and promise, and the
// configuration digest.
type streamResponses struct {
	ackIncarnation, config uint64
	acked                  bool // an answer on this stream acknowledged something
	ackTerm, ackLeader     uint64
	ackPromise             int64
}

// elide leaves out of r (to be sent) what the sender of the request it
// answers (with stamp and incarnation, in full) knows already.
func (s *streamResponses) elide(r *pb.SendResponse, stamp, incarnation uint64) {
	if r.AckStamp != 0 {
		if r.AckStamp == stamp && r.AckIncarnation == incarnation {
			r.AckIsRequest = true
			s.ackIncarnation = incarnation
			r.AckStamp, r.AckIncarnation = 0, 0
		} else {
			elide(&r.AckIncarnation, &s.ackIncarnation)
		}
		if s.acked && r.AckTerm == s.ackTerm && r.AckLeader == s.ackLeader && r.AckPromiseNs == s.ackPromise {
			r.AckRepeated = true
			r.AckTerm, r.AckLeader, r.AckPromiseNs = 0, 0, 0
		} else {
			s.acked, s.ackTerm, s.ackLeader, s.ackPromise = true, r.AckTerm, r.AckLeader, r.AckPromiseNs
		}
	}
	elide(&r.ConfigDigest, &s.config)
}

// fill restores in r (as received) what the answerer left out; stamp and
// incarnation are those of the request r answers, in full.
func (s *streamResponses) fill(r *pb.SendResponse, stamp, incarnation uint64) {
	switch {
	case r.AckIsRequest:
		r.AckStamp, r.AckIncarnation = stamp, incarnation
		s.ackIncarnation = incarnation
		r.AckIsRequest = false
	case r.AckStamp != 0:
		fill(&r.AckIncarnation, &s.ackIncarnation)
	}
	if r.AckStamp != 0 {
		if r.AckRepeated {
			r.AckTerm, r.AckLeader, r.AckPromiseNs = s.ackTerm, s.ackLeader, s.ackPromise
			r.AckRepeated = false
		} else {
			s.acked, s.ackTerm, s.ackLeader, s.ackPromise = true, r.AckTerm, r.AckLeader, r.AckPromiseNs
		}
	}
	fill(&r.ConfigDigest, &s.config)
}

// compactHeartbeat moves a batch of one plain heartbeat from self to the
// stream's receiver out of r.Messages into r.Heartbeat, using hb (the
// lane's own, reused: gRPC has encoded it when Send returns); anything
// else stays as it is. r is the lane's own request, built for this send:
// raft's message itself is not touched.
func compactHeartbeat(r *pb.SendRequest, self, to uint64, hb *pb.Heartbeat) {
	if len(r.Messages) != 1 {
		return
	}
	m := r.Messages[0]
	if m.GetType() != raftpb.MsgHeartbeat || m.GetFrom() != self || m.GetTo() != to || m.Term == nil {
		return
	}
	// Nothing else set, in any field raft's Message has or will have.
	mr := m.ProtoReflect()
	if len(mr.GetUnknown()) != 0 {
		return
	}
	fields := mr.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch fd.Name() {
		case "type", "to", "from", "term", "commit":
			continue
		}
		if mr.Has(fd) {
			return
		}
	}
	hb.Term, hb.Commit = m.GetTerm(), m.Commit
	r.Heartbeat = hb
	r.Messages = nil
}

// expandedHeartbeat is a raft heartbeat made back from its compact form,
// with the values its fields point to, in one allocation.
type expandedHeartbeat struct {
	m              raftpb.Message
	typ            raftpb.MessageType
	to, from, term uint64
}

// expandHeartbeat makes r.Heartbeat, received on a stream from the member
// from, back into the raft message it stands for.
func expandHeartbeat(r *pb.SendRequest, from, self uint64) {
	hb := r.Heartbeat
	if hb == nil {
		return
	}
	r.Heartbeat = nil
	e := &expandedHeartbeat{typ: raftpb.MsgHeartbeat, to: self, from: from, term: hb.GetTerm()}
	e.m.Type, e.m.To, e.m.From, e.m.Term = &e.typ, &e.to, &e.from, &e.term
	e.m.Commit = hb.Commit // hb is this request's own, and dropped here
	r.Messages = append(r.Messages, &e.m)
}

func elide(v, prev *uint64) {
	if *v == *prev {
		*v = 0
		return
	}
	*prev = *v
}

func fill(v, prev *uint64) {
	if *v == 0 {
		*v = *prev
		return
	}
	*prev = *v
}

// laneStream is one lane's stream to one peer. Only the lane's goroutine
// uses it.
type laneStream struct {
	stream pb.Peer_StreamClient // nil: none open
	cancel context.CancelFunc
	timer  *time.Timer // cancels the stream when an answer is late
	out    streamRequests
	in     streamResponses
	hb     pb.Heartbeat // the compact heartbeat of the request in flight
	local  string       // the local address of the TCP connection it is on

	peer  *peer
	keys  bool         // the control lane: its stream keys datagrams
	keyed *datagramOut // the datagram key of this stream, once in use
	// The key before the first request carrying its context (keyContext)
	// was answered.
	key        *datagramOut
	keyContext []byte
}

// close tears the stream down, if one is open.
func (ls *laneStream) close() {
	if ls.stream == nil {
		return
	}
	ls.timer.Stop()
	ls.cancel()
	if ls.keyed != nil {
		ls.peer.dgOut.CompareAndSwap(ls.keyed, nil)
	}
	*ls = laneStream{peer: ls.peer, keys: ls.keys}
}

// roundTrip sends req on the lane's stream, opening one if none is open,
// and returns the answer, in full. The answer must come within timeout, or
// the stream is torn down and the error says so; any error tears it down.
//
// On the primary connection, a stream is replaced before the request goes
// out when the connection has been made again since the stream was opened
// (p.dialed is the local address of its latest TCP connection) or is not
// ready now: the stream is dead, and gRPC lets Send succeed on it and fails
// only the Recv after, with the request lost. Without this, between real
// processes a follower of a killed leader lost its answer to the other
// follower's pre-vote (their connection dated from before that follower's
// own restart), and failover took a heartbeat longer (docs/benchmarks.md).
func (ls *laneStream) roundTrip(t *Transport, client pb.PeerClient, p *peer, primary bool, req *pb.SendRequest, timeout time.Duration) (*pb.SendResponse, error) {
	if ls.stream != nil && primary {
		d := p.dialed.Load()
		if (d != nil && *d != ls.local) || p.conn.GetState() != connectivity.Ready {
			ls.close()
		}
	}
	if err := ls.open(t, client, p, timeout); err != nil {
		return nil, err
	}
	stamp, incarnation := req.Stamp, req.Incarnation
	if t.opts.Credentials != nil {
		// Without TLS the receiver knows no caller to make From of.
		compactHeartbeat(req, t.opts.Self.ID, p.ID, &ls.hb)
	}
	ls.out.elide(req)
	req.DatagramContext = ls.keyContext // until answered: the first request may be lost with the stream
	err := ls.stream.Send(req)
	var resp *pb.SendResponse
	if err == nil || errors.Is(err, io.EOF) {
		// After io.EOF from Send, Recv returns the stream's status.
		resp, err = ls.stream.Recv()
	}
	late := !ls.timer.Stop()
	switch {
	case err != nil:
		if late {
			err = status.Errorf(codes.DeadlineExceeded, "no answer on the stream within %v", timeout)
		}
		ls.close()
		return nil, err
	}
	ls.in.fill(resp, stamp, incarnation)
	if ls.key != nil {
		// The receiver registered the key before it handled the request
		// that carried its context: datagrams may use it from now on.
		ls.keyed, ls.key, ls.keyContext = ls.key, nil, nil
		p.dgOut.Store(ls.keyed)
	}
	if late {
		// The answer came as the timer fired: take it, but the stream
		// is being cancelled.
		ls.close()
	}
	return resp, nil
}

// open opens the lane's stream if none is open, and arms (or re-arms) its
// timer for one round trip of timeout.
func (ls *laneStream) open(t *Transport, client pb.PeerClient, p *peer, timeout time.Duration) error {
	if ls.stream != nil {
		ls.timer.Reset(timeout)
		return nil
	}
	ctx, cancel := context.WithCancel(t.ctx)
	// Armed before opening: opening waits for a connection that is still
	// being made.
	timer := time.AfterFunc(timeout, cancel)
	st, err := client.Stream(ctx)
	if err != nil {
		timer.Stop()
		cancel()
		return err
	}
	p.streams.Add(1)
	local := ""
	if pr, ok := grpcpeer.FromContext(st.Context()); ok && pr.LocalAddr != nil {
		local = pr.LocalAddr.String()
	}
	*ls = laneStream{stream: st, cancel: cancel, timer: timer, local: local, peer: ls.peer, keys: ls.keys}
	if ls.keys {
		ls.key, ls.keyContext = t.streamKey(st.Context(), local)
	}
	return nil
}

// sendOnLane delivers one batch to p on the lane's stream, reports the
// outcome as send does, and returns the error, if any.
func (t *Transport) sendOnLane(p *peer, ls *laneStream, client pb.PeerClient, hedged bool, batch []*raftpb.Message, timeout time.Duration) error {
	if p.unary.Load() {
		return t.send(p, batch, timeout)
	}
	req, own := t.request(p, batch)
	start := time.Now()
	if hedged {
		p.hedged.Add(uint64(len(batch)))
	}
	// The spare connection's lane (hedged) is not checked: a stale
	// stream there costs one hedge, never a message of its own.
	resp, err := ls.roundTrip(t, client, p, !hedged, req, timeout)
	if status.Code(err) == codes.Unimplemented {
		// The previous release: unary Sends until the connection is
		// re-established (the peer may be upgraded by then).
		if !p.unary.Swap(true) {
			t.log.Info("peer has no streams: sending it unary Sends", "peer", p.Name)
		}
		return t.send(p, batch, timeout)
	}
	t.sent(p, batch, req, own, resp, err, time.Since(start))
	return err
}

// Hedged heartbeats. Both lanes to a peer share one TCP connection, so one
// lost segment stalls every answer on it until TCP retransmits it: at least
// 200 ms (Linux's minimum retransmission timeout), more when the
// retransmission is lost too. Under heavy random loss that can keep a
// quorum's acknowledgements from the leader for longer than its lease,
// though nothing is wrong but loss.
//
// So a leader keeps a spare connection to each peer: the control lane makes
// it when it first sends the peer a heartbeat (so, in practice, when this
// node first leads: followers send no heartbeats and make none), before
// any stall, since a handshake over a failing link would come too late,
// and keeps it open (keepalive pings only, when idle). When raft hands the
// transport a
// heartbeat for a peer while the control lane's previous request to it is
// still unanswered after a few round trips (hedgeAfter), the heartbeat goes
// on the control lane as usual and also on the spare connection's lane (a
// queue of one, coalescing). Whichever answer comes first acknowledges it;
// the follower steps a heartbeat twice at worst, which raft takes as one
// (the same term and commit), and the lease counts an acknowledgement only
// when it is newer than the last one (election/lease.go). Nothing else is
// hedged: votes and MsgTimeoutNow must not be delivered twice. A healthy
// link answers every heartbeat before the next one (a round trip is far
// shorter than a heartbeat interval), so it never hedges and the spare
// connection costs only its keepalive pings.
func (t *Transport) hedges(p *peer, m *raftpb.Message) bool {
	if m.GetType() != raftpb.MsgHeartbeat || !p.spareReady.Load() || p.unary.Load() {
		return false
	}
	busy := p.controlBusy.Load()
	return busy != 0 && time.Duration(int64(time.Since(monoBase))-busy) > hedgeAfter(time.Duration(p.minRTT.Load()))
}

// hedgeAfter is how long a control request may stay unanswered before the
// next heartbeat is hedged: four of the shortest round trips seen, at
// least 10 ms. On a link whose round trip exceeds the heartbeat interval
// (a slow WAN) heartbeats find their predecessor in flight but younger
// than that, and are not hedged.
func hedgeAfter(minRTT time.Duration) time.Duration {
	return max(4*minRTT, 10*time.Millisecond)
}

// openSpare makes p's spare connection and starts its lane, once; the
// control lane calls it. After Stop has begun, or once p left the member
// set, it does nothing.
func (t *Transport) openSpare(p *peer) {
	p.spareMu.Lock()
	defer p.spareMu.Unlock()
	if p.spareTried || p.ctx.Err() != nil {
		return
	}
	p.spareTried = true
	conn, err := t.dial(p, false)
	if err != nil {
		// Only a malformed address fails here, and the primary
		// connection was dialled with the same one.
		t.log.Warn("no spare connection to peer", "peer", p.Name, "err", err)
		return
	}
	conn.Connect()
	p.spare = conn
	// The control lane holds a count of t.wg, so adding to it now is safe.
	t.wg.Add(1)
	go t.runLane(p, p.hedge, pb.NewPeerClient(conn), t.opts.ControlTimeout)
	p.spareReady.Store(true)
}

func hasHeartbeat(msgs []*raftpb.Message) bool {
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgHeartbeat {
			return true
		}
	}
	return false
}
