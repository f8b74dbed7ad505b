package transport

// Datagram heartbeats (docs/transport.md, "Datagram heartbeats").
//
// On a stream, one lost TCP segment stalls every later heartbeat and
// acknowledgement on that connection until TCP retransmits it, and under
// heavy loss a quorum's acknowledgements can stall together for longer
// than a lease. A heartbeat needs no order and no retransmission: raft
// sends the next one a heartbeat interval later. So with Options.Datagrams
// a leader's heartbeats and their lease acknowledgements also travel as UDP
// datagrams, on the peer port's number, each one independent of every
// other. (Followers send no heartbeat responses: the leader makes them
// from the acknowledgements, internal/core.)
//
//   - Sealed (datagram_seal.go) with a key that both ends export from the
//     TLS session of the sender's control stream, one key per stream: a
//     datagram that opens is the stream's caller's, checked by its
//     certificate, and is accepted once. A datagram that does not open is
//     dropped unanswered and counted (RejectDatagram): nothing is ever sent
//     to an address that has not proven it holds a stream's key, so the
//     port reflects nothing.
//   - It stands for the request the stream would carry, and the receiver
//     handles it with the same code (handleSend: identity, bounds,
//     agreement, stamp and acknowledgement). The fields that repeat on
//     every request are not sent; the datagram carries a digest of the
//     sender's current ones (stateDigest), and the receiver takes them
//     from the last request that the stream carried and it accepted. When
//     they differ, or the receiver would not step the request as it
//     stands (a configuration or labels to exchange, a refusal), it
//     answers "use the stream" and steps nothing.
//   - The stream stays the path of record: a heartbeat goes on the control
//     lane as well unless a datagram was answered within ControlTimeout,
//     so a network that drops UDP costs bytes, never a heartbeat. Votes,
//     appends and everything else use only the stream.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// maxPayload bounds the encoding of a DatagramRequest or DatagramAnswer
// (at most 66 bytes: datagram_wire.go).
const maxPayload = 80

// maxDatagram bounds what is read: every datagram this transport sends is
// a heartbeat or its answer, under 100 bytes.
const maxDatagram = 512

// errNoAnswer: no answer waits in an answer socket.
var errNoAnswer = errors.New("no answer waiting")

// maxAnswersPerRead bounds what one ReadAnswers takes, over all peers: a
// flood at an answer socket (from its peer's address, forged) must not
// hold the raft loop; what is left waits for the next call.
const maxAnswersPerRead = 256

// datagramHandlers bounds the requests being handled at once when fault
// hooks may hold them (each at most ControlTimeout); more are dropped.
const datagramHandlers = 32

// datagrams is a transport's UDP socket and the sessions (one per peer
// control stream served) it accepts requests under.
type datagrams struct {
	conn *net.UDPConn
	raw  rawSender
	// deferAnswers: heartbeats leave from each peer's answer socket
	// (Options.DeferAnswers, Linux); answerErr: opening one failed once
	// (logged once).
	deferAnswers bool
	answerErr    atomic.Bool
	readMu       sync.Mutex        // one ReadAnswers at a time
	perRead      int               // the most one ReadAnswers takes: maxAnswersPerRead (tests: fewer)
	readBuf      [maxDatagram]byte // ReadAnswers', under readMu
	slots        chan struct{}
	mu           sync.Mutex
	sessions     map[uint32]*datagramSession // by key ID
	sent         atomic.Uint64
	received     atomic.Uint64 // opened and accepted
}

// datagramSession is the receiving side of one control stream's
// datagrams: the member whose certificate the stream's TLS session
// verified, and what the stream last said of the fields datagrams leave
// out.
type datagramSession struct {
	key      *datagramKey
	name, cn string
	window   replayWindow
	answers  atomic.Uint64 // counter of our answers under key

	mu                         sync.Mutex
	state                      uint64 // stateDigest of the last accepted request; 0: none yet
	inc, labels, config, known uint64
}

// datagramOut is the sending side: requests to a peer under the key of
// our control stream to it.
type datagramOut struct {
	key     *datagramKey
	to      netip.AddrPort
	local   string // the stream's connection (roundTrip's check)
	counter atomic.Uint64
	window  replayWindow // answers

	mu      sync.Mutex
	pending [8]pendingHeartbeat // recent heartbeats, by counter % 8
}

type pendingHeartbeat struct {
	counter uint64
	msg     *raftpb.Message
	req     *pb.SendRequest
	own     *localConfig
	at      time.Time
}

// stateDigest is a digest of the fields a datagram leaves out. Equal
// digests stand for equal fields; a collision would need 2^32 changes of
// them under one stream.
func stateDigest(incarnation, labels, config, known uint64) uint64 {
	h := uint64(14695981039346656037)
	var b [32]byte
	binary.LittleEndian.PutUint64(b[0:], incarnation)
	binary.LittleEndian.PutUint64(b[8:], labels)
	binary.LittleEndian.PutUint64(b[16:], config)
	binary.LittleEndian.PutUint64(b[24:], known)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h | 1 // never 0, which means "none"
}

// startDatagrams opens the UDP socket on the peer listener's address.
// Without TLS there are no session keys, so no datagrams.
func (t *Transport) startDatagrams() {
	if !t.opts.Datagrams || t.opts.Credentials == nil {
		return
	}
	ta, ok := t.lis.Addr().(*net.TCPAddr)
	if !ok {
		t.log.Warn("datagram heartbeats off: the peer listener is not TCP", "addr", t.lis.Addr())
		return
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: ta.IP, Port: ta.Port, Zone: ta.Zone})
	if err != nil {
		t.log.Warn("datagram heartbeats off: cannot open the UDP port of the peer listener; heartbeats go on streams only", "addr", ta, "err", err)
		return
	}
	raw, err := newRawSender(conn)
	if err != nil {
		conn.Close()
		t.log.Warn("datagram heartbeats off", "err", err)
		return
	}
	d := &datagrams{conn: conn, raw: raw, perRead: maxAnswersPerRead, slots: make(chan struct{}, datagramHandlers), sessions: map[uint32]*datagramSession{}}
	d.deferAnswers = t.opts.DeferAnswers && deferredAnswersSupported
	t.dgram = d
	t.wg.Add(1)
	go t.readDatagrams(d)
}

// session registers the datagram session of the stream whose context is
// ctx, from member name, whose first request carried keyContext, and
// returns it; nil when it has no key. release undoes it.
func (d *datagrams) session(ctx context.Context, name, cn string, keyContext []byte) *datagramSession {
	key := sessionKey(ctx, keyContext)
	if key == nil || name == "" {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[key.id]
	if s == nil {
		s = &datagramSession{key: key, name: name, cn: cn}
		d.sessions[key.id] = s
	} else {
		return nil // another stream's key ID (or a context sent twice): it keeps it
	}
	return s
}

func (d *datagrams) release(s *datagramSession) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sessions[s.key.id] == s {
		delete(d.sessions, s.key.id)
	}
}

// sessionKey exports the datagram key for keyContext of the TLS session
// under ctx (a stream's, either side).
func sessionKey(ctx context.Context, keyContext []byte) *datagramKey {
	pr, ok := grpcpeer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	key, err := exportDatagramKey(&info.State, keyContext)
	if err != nil {
		return nil
	}
	return key
}

// record remembers the fields of req, a request the session's stream
// carried and the receiver accepted as it stood (resp).
func (s *datagramSession) record(req *pb.SendRequest, resp *pb.SendResponse) {
	if s == nil || resp.GetRefused() != "" || resp.GetNeedLabels() || resp.GetNeedConfig() || resp.GetConfig() != nil {
		return
	}
	s.mu.Lock()
	s.inc, s.labels, s.config, s.known = req.GetIncarnation(), req.GetLabelsDigest(), req.GetConfigDigest(), req.GetKnownConfigDigest()
	s.state = stateDigest(s.inc, s.labels, s.config, s.known)
	s.mu.Unlock()
}

// streamKey makes the datagram key of a new control stream (whose context
// is st) and the context its first request must carry; nil when there is
// none (no datagrams, no TLS). Datagrams use it once the stream's first
// request was answered: the receiver has it by then (roundTrip).
func (t *Transport) streamKey(st context.Context, local string) (*datagramOut, []byte) {
	if t.dgram == nil {
		return nil, nil
	}
	pr, ok := grpcpeer.FromContext(st)
	if !ok || pr.Addr == nil {
		return nil, nil
	}
	ap, err := netip.ParseAddrPort(pr.Addr.String())
	if err != nil {
		return nil, nil
	}
	keyContext := make([]byte, datagramContextBytes)
	if _, err := rand.Read(keyContext); err != nil {
		return nil, nil
	}
	key := sessionKey(st, keyContext)
	if key == nil {
		return nil, nil
	}
	return &datagramOut{key: key, to: ap, local: local}, keyContext
}

// sendDatagram sends m, a heartbeat for p, as a datagram if it can be one,
// and reports whether the stream may be spared: a recent datagram of ours
// was answered. Send calls it for heartbeats only, with datagrams on.
func (t *Transport) sendDatagram(p *peer, m *raftpb.Message, now time.Time) (spare bool) {
	d := t.dgram
	out := p.dgOut.Load()
	if out == nil || p.unary.Load() {
		return false
	}
	if dl := p.dialed.Load(); dl != nil && *dl != out.local {
		return false // the session is of a connection since replaced
	}
	var r pb.SendRequest
	r.Messages = []*raftpb.Message{m}
	var hb pb.Heartbeat
	compactHeartbeat(&r, t.opts.Self.ID, p.ID, &hb)
	if r.Heartbeat == nil {
		return false
	}
	mono := int64(now.Sub(monoBase))
	answered := p.dgAnswered.Load()
	confirmed := answered != 0 && time.Duration(mono-answered) < t.opts.ControlTimeout
	if !confirmed && time.Duration(mono-answered) > 4*t.opts.ControlTimeout {
		// Unanswered for long (a network that drops UDP, a peer
		// without datagrams): one datagram per ControlTimeout, not one
		// per heartbeat, to find out when that changes.
		if last := p.dgSent.Load(); last != 0 && time.Duration(mono-last) < t.opts.ControlTimeout {
			return false
		}
	}
	req, own := t.request(p, nil)
	if req.Labels != nil || req.Config != nil {
		return false // to exchange on the stream first
	}
	dr := pb.DatagramRequest{
		Heartbeat: &hb, Stamp: req.Stamp,
		State: stateDigest(req.Incarnation, req.LabelsDigest, req.ConfigDigest, req.KnownConfigDigest),
	}
	// One allocation for the payload and, after it, the sealed datagram.
	payload := appendDatagramRequest(make([]byte, 0, 2*maxPayload+sealOverhead), &dr)
	counter := out.counter.Add(1)
	out.mu.Lock()
	out.pending[counter%uint64(len(out.pending))] = pendingHeartbeat{counter: counter, msg: m, req: req, own: own, at: now}
	out.mu.Unlock()
	from := d.raw
	if d.deferAnswers {
		if a := t.answerSocketFor(d, p, out.to); a != nil {
			from = a.raw
		}
	}
	if err := from.send(out.key.seal(payload[len(payload):], datagramRequest, counter, payload), out.to); err != nil {
		return false
	}
	d.sent.Add(1)
	p.dgSent.Store(mono)
	return confirmed
}

// readDatagrams reads the socket until Stop.
func (t *Transport) readDatagrams(d *datagrams) {
	defer t.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := d.raw.recv(d.conn, buf)
		if err != nil {
			if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		kind, id, counter, ok := sealedHeader(buf[:n])
		switch {
		case ok && kind == datagramRequest:
			d.mu.Lock()
			s := d.sessions[id]
			d.mu.Unlock()
			if s == nil {
				t.reject(RejectDatagram)
				continue
			}
			payload, err := s.key.open(nil, buf[:n], kind, counter)
			if err != nil || !s.window.accept(counter) {
				t.reject(RejectDatagram)
				continue
			}
			var dr pb.DatagramRequest
			if decodeDatagramRequest(payload, &dr) != nil {
				t.reject(RejectDatagram)
				continue
			}
			d.received.Add(1)
			if t.opts.Hooks == nil {
				// On this goroutine: a follower hears one leader, and
				// the raft loop steps a heartbeat in microseconds
				// (meanwhile datagrams wait in the socket's buffer). A
				// goroutine per datagram cost a follower a fifth of its
				// idle CPU (docs/benchmarks.md).
				t.handleDatagram(d, s, counter, from, &dr)
				continue
			}
			// Fault hooks may hold a request for ControlTimeout: on a
			// goroutine of its own, as many at once as slots.
			select {
			case d.slots <- struct{}{}:
			default:
				continue
			}
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				defer func() { <-d.slots }()
				t.handleDatagram(d, s, counter, from, &dr)
			}()
		case ok && kind == datagramAnswer:
			t.answered(d, id, counter, buf[:n], time.Now())
		default:
			t.reject(RejectDatagram)
		}
	}
}

// handleDatagram steps one heartbeat from session s, as handleSend would
// on its stream, and answers it.
func (t *Transport) handleDatagram(d *datagrams, s *datagramSession, counter uint64, from netip.AddrPort, dr *pb.DatagramRequest) {
	p := t.set().byName[s.name]
	s.mu.Lock()
	match := s.state != 0 && s.state == dr.GetState()
	inc, labels, config, known := s.inc, s.labels, s.config, s.known
	s.mu.Unlock()
	answer := &pb.DatagramAnswer{Answers: counter, Stream: true}
	if p != nil && match && dr.Heartbeat != nil {
		req := &pb.SendRequest{Stamp: dr.GetStamp(), Incarnation: inc, LabelsDigest: labels, ConfigDigest: config, KnownConfigDigest: known, Heartbeat: dr.Heartbeat}
		expandHeartbeat(req, p.ID, t.opts.Self.ID)
		// No deadline of our own without hooks: Deliver bounds its own
		// wait, and a context with a timeout per heartbeat would leave a
		// timer behind that wakes the process later for nothing.
		ctx, cancel := t.ctx, context.CancelFunc(func() {})
		if t.opts.Hooks != nil {
			ctx, cancel = context.WithTimeout(t.ctx, t.opts.ControlTimeout)
		}
		resp, err := t.handleSend(ctx, s.name, s.cn, req)
		cancel()
		if err == nil && resp.GetRefused() == "" && !resp.GetNeedLabels() && !resp.GetNeedConfig() && resp.GetConfig() == nil {
			answer.Stream = false
			if resp.GetAckStamp() != 0 {
				if resp.GetAckStamp() != req.GetStamp() || resp.GetAckIncarnation() != inc {
					answer.AckStamp, answer.AckIncarnation = resp.GetAckStamp(), resp.GetAckIncarnation()
				}
				if resp.GetAckTerm() != req.Messages[0].GetTerm() {
					answer.AckTerm = resp.GetAckTerm()
				}
				if resp.GetAckLeader() != p.ID {
					answer.AckLeader = resp.GetAckLeader()
				}
				// 0 says "nothing acknowledged" on a datagram. A
				// node with datagrams states its promise (only a
				// release before promises sends 0), so this never
				// turns a stated promise into another.
				answer.AckPromiseNs = max(resp.GetAckPromiseNs(), 1)
			}
		}
	}
	payload := appendDatagramAnswer(make([]byte, 0, 2*maxPayload+sealOverhead), answer)
	if d.raw.send(s.key.seal(payload[len(payload):], datagramAnswer, s.answers.Add(1), payload), from) == nil {
		d.sent.Add(1)
	}
}

// ReadAnswers takes the answers to heartbeat datagrams that wait in the
// peers' answer sockets (Options.DeferAnswers), reports them to the
// handler as the stream's would be (Handler.Acked) before it returns, and
// says how many it took. It never waits. Without DeferAnswers, or off
// Linux, it does nothing: answers are taken as they arrive.
//
// The raft loop calls it before each tick, timer and report it handles,
// so a leader reads the answers to one round of heartbeats just before it
// sends the next, and always before it decides its lease has ended. The
// lease is dated by when each heartbeat was sent, not when its answer was
// read, so reading late shortens nothing (docs/transport.md, "Datagram
// heartbeats").
func (t *Transport) ReadAnswers() int {
	d := t.dgram
	if d == nil || !d.deferAnswers {
		return 0
	}
	d.readMu.Lock()
	defer d.readMu.Unlock()
	buf := d.readBuf[:]
	taken, budget := 0, d.perRead
	for _, p := range t.set().byID {
		a := p.answers.Load()
		for a != nil && budget > 0 {
			n, _, at, err := a.recv(buf)
			if err != nil {
				break // none waiting, or closed
			}
			budget--
			kind, id, counter, ok := sealedHeader(buf[:n])
			if !ok || kind != datagramAnswer {
				// Only answers come to this port: whatever else does
				// is not ours (a request here is a forgery or a
				// mistake).
				t.reject(RejectDatagram)
				continue
			}
			if at.IsZero() {
				at = time.Now() // the kernel gave no arrival time
			}
			if t.answered(d, id, counter, buf[:n], at) {
				taken++
			}
		}
	}
	return taken
}

// answerSocketFor returns p's answer socket, connected to to, the
// address p's datagrams go to: opened on first use, and again (the old
// one closed) when that address changes; nil when it cannot be opened,
// and then the answers come to the datagram socket, read as they arrive.
// Called by Send's caller only.
func (t *Transport) answerSocketFor(d *datagrams, p *peer, to netip.AddrPort) *answerSocket {
	if a := p.answers.Load(); a != nil && a.peer == to {
		return a
	}
	a, err := openAnswerSocket(d.conn, to)
	if err != nil {
		if !d.answerErr.Swap(true) {
			t.log.Warn("cannot open a socket for the answers to heartbeat datagrams: they are read as they arrive", "peer", p.Name, "err", err)
		}
		return nil
	}
	if old := p.answers.Swap(a); old != nil {
		old.close()
	}
	if p.removed.Load() || t.ctx.Err() != nil {
		// stopPeer or Stop may have closed the peer's sockets before
		// this one was stored.
		if p.answers.CompareAndSwap(a, nil) {
			a.close()
		}
		return nil
	}
	return a
}

// closeAnswers closes p's answer socket, if it has one.
func closeAnswers(p *peer) {
	if a := p.answers.Swap(nil); a != nil {
		a.close()
	}
}

// answered takes an answer to one of our heartbeats, which arrived at
// arrived, and says whether it was one (opened, fresh, and answering a
// heartbeat still remembered).
func (t *Transport) answered(d *datagrams, id uint32, counter uint64, b []byte, arrived time.Time) bool {
	var p *peer
	var out *datagramOut
	for _, q := range t.set().byID {
		if o := q.dgOut.Load(); o != nil && o.key.id == id {
			p, out = q, o
			break
		}
	}
	if out == nil {
		t.reject(RejectDatagram)
		return false
	}
	payload, err := out.key.open(nil, b, datagramAnswer, counter)
	var a pb.DatagramAnswer
	if err != nil || !out.window.accept(counter) || decodeDatagramAnswer(payload, &a) != nil {
		t.reject(RejectDatagram)
		return false
	}
	d.received.Add(1)
	out.mu.Lock()
	slot := &out.pending[a.GetAnswers()%uint64(len(out.pending))]
	hb := *slot
	if hb.counter == a.GetAnswers() {
		*slot = pendingHeartbeat{}
	}
	out.mu.Unlock()
	if hb.counter != a.GetAnswers() || hb.counter == 0 {
		return false // too old to tell what it answers
	}
	now := time.Now()
	if a.GetStream() {
		// Not stepped: the stream must carry what the datagram left out.
		p.dgAnswered.Store(0)
		if now.Sub(hb.at) <= t.opts.MaxMessageAge {
			p.control.put(hb.msg, hb.at)
		}
		return true
	}
	p.dgAnswered.Store(int64(now.Sub(monoBase)))
	// The round trip ends when the answer arrived, not when it was read.
	// arrived has no monotonic reading when the kernel stamped it: a step
	// of the wall clock in between is clamped away.
	rtt := min(max(arrived.Sub(hb.at), 0), now.Sub(hb.at))
	resp := &pb.SendResponse{ConfigDigest: hb.req.GetKnownConfigDigest()}
	if a.GetAckPromiseNs() != 0 {
		resp.AckStamp, resp.AckIncarnation = hb.req.GetStamp(), hb.req.GetIncarnation()
		if a.GetAckStamp() != 0 {
			resp.AckStamp, resp.AckIncarnation = a.GetAckStamp(), a.GetAckIncarnation()
		}
		resp.AckTerm, resp.AckLeader, resp.AckPromiseNs = hb.msg.GetTerm(), t.opts.Self.ID, a.GetAckPromiseNs()
		if a.GetAckTerm() != 0 {
			resp.AckTerm = a.GetAckTerm()
		}
		if a.GetAckLeader() != 0 {
			resp.AckLeader = a.GetAckLeader()
		}
	}
	t.sent(p, []*raftpb.Message{hb.msg}, hb.req, hb.own, resp, nil, rtt)
	return true
}

// datagramStats counts this transport's datagrams: sent, and received
// (opened and accepted). Zero without datagrams.
func (t *Transport) datagramStats() (sent, received uint64) {
	if t.dgram == nil {
		return 0, 0
	}
	return t.dgram.sent.Load(), t.dgram.received.Load()
}
