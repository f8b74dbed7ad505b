package transport

// Stalled paths. When every packet one way between two nodes is dropped for
// a while and then flows again (a firewall rule, a route flapping, a link
// half down), the connection that carried the lanes holds data TCP has sent
// and not had acknowledged. TCP resends it on its retransmission timer:
// six times every ~50 ms, then after 2, 4, 8 ... times that; and once
// KeepaliveTimeout (3 s; gRPC sets it as TCP_USER_TIMEOUT) has passed
// without an acknowledgement the kernel closes the connection, and gRPC
// redials with its backoff, the dials up to MaxReconnectBackoff apart (each
// one given the control deadline, while a lost SYN is resent only after
// 1 s). Either way the first packet to cross the healed path leaves at a
// moment that depends on how long the path was down and on timers: after a
// drop of a few seconds, up to half a second or more after the heal; with a
// longer keepalive timeout, many seconds (TestStalledPath_...: 6.7 s after
// an 8 s drop). Until then the peer hears nothing from this node (a
// follower no heartbeat, so it keeps campaigning).
//
// So when the control lane's request went unanswered for its whole
// deadline and the connection under it is stalled (tcpStalled: TCP is
// retransmitting its oldest segment on the timer, or its sends fail on
// this host; a slow or stopped peer process causes neither, since its
// kernel still acknowledges) or gone with no other one ready (the kernel
// gave up on it after KeepaliveTimeout, and gRPC is between dials), a
// prober dials the peer afresh, one
// connection attempt at a time, each given probeInterval: a new SYN leaves
// at once, where the stalled connection's next retransmission or gRPC's
// next dial may be seconds away. An attempt that is not answered in time is
// closed (a socket still in SYN_SENT closes without a packet) and the next
// one starts. The first attempt that connects proves the path works again:
// the prober hands its connection to the next dial of the peer's
// ClientConn, closes the stalled connection (and the spare one, if it is
// stalled too), and ends; gRPC reconnects at once (a Ready connection that
// fails goes Idle and watchConn connects it; one in backoff is woken with
// ResetConnectBackoff; a dial in progress takes the connection as it comes)
// and the next batch goes on it, TLS handshake and all, as on any new
// connection. The wait after a heal is then probeInterval at most, plus a
// handshake, whatever the outage length.
//
// It costs nothing while paths work: nothing is read, dialled or scheduled
// until a control request has failed. While a path is down it costs one SYN
// per probeInterval (100 ms at the default timings), whatever the length of
// the outage; the prober ends as soon as the stalled connection is
// acknowledged again, once nothing has been sent to the peer for two
// control deadlines (nobody wants the path), or when a probe is refused
// (the path works, the peer's process is gone: gRPC's own dials find that
// out and report it, as before).

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/connectivity"
)

// pathState is what one peer's prober and dialers share.
type pathState struct {
	mu      sync.Mutex
	primary net.Conn // the TCP connection under the peer's ClientConn, as last dialled
	spare   net.Conn // the same for the spare ClientConn
	probing bool     // a prober runs
	// quietUntil: no prober before then (monoBase ns): a probe was
	// refused, and gRPC's own dials pace themselves.
	quietUntil int64
	// fresh is a probe's connection for the primary ClientConn's next
	// dial; ready is signalled when it is set, so that a dial in progress
	// takes it, and took when a dial took it. Both have capacity 1.
	fresh       net.Conn
	ready, took chan struct{}
}

// probeInterval is how long one probe attempt waits for the peer's answer
// before the next one starts: a fifth of the control lane's deadline (100
// ms at the defaults: a heartbeat interval), at least two of the shortest
// round trips seen, so that an attempt made after the heal completes
// within it, and at least 10 ms.
func probeInterval(controlTimeout, minRTT time.Duration) time.Duration {
	return max(controlTimeout/5, 2*minRTT, 10*time.Millisecond)
}

// dialPeer makes the TCP connection under one of p's ClientConns: for the
// primary one, a probe's connection if one is waiting (or comes while this
// dial is in progress). It records the connection, for the prober.
func (t *Transport) dialPeer(ctx context.Context, p *peer, addr string, primary bool) (net.Conn, error) {
	ps := &p.path
	if !primary {
		c, err := t.dialTCP(ctx, p, addr)
		if err == nil {
			ps.mu.Lock()
			ps.spare = c
			ps.mu.Unlock()
		}
		return c, err
	}
	if c := ps.takeFresh(); c != nil {
		t.dialled(p, c)
		return c, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type dialled struct {
		c   net.Conn
		err error
	}
	done := make(chan dialled, 1)
	go func() {
		c, err := t.dialTCP(ctx, p, addr)
		done <- dialled{c, err}
	}()
	var d dialled
wait:
	for {
		select {
		case d = <-done:
			break wait
		case <-ps.ready:
			c := ps.takeFresh()
			if c == nil {
				continue // taken by another dial already
			}
			cancel()
			if own := <-done; own.c != nil {
				own.c.Close() // connected at the same moment: one is enough
			}
			d = dialled{c: c}
			break wait
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	t.dialled(p, d.c)
	return d.c, nil
}

// dialled records c as the TCP connection under p's primary ClientConn:
// for the prober, and its local address for the lanes, which replace a
// stream opened on an earlier connection (roundTrip).
func (t *Transport) dialled(p *peer, c net.Conn) {
	ps := &p.path
	ps.mu.Lock()
	ps.primary = c
	ps.mu.Unlock()
	local := c.LocalAddr().String()
	p.dialed.Store(&local)
}

// dialTCP dials p's address as a peer connection (thin stream) and tells
// the handler of a refusal.
func (t *Transport) dialTCP(ctx context.Context, p *peer, addr string) (net.Conn, error) {
	c, err := thinStreamDialer().DialContext(ctx, "tcp", addr)
	if errors.Is(err, syscall.ECONNREFUSED) && t.opts.Handler != nil {
		t.opts.Handler.PeerRefused(p.ID)
	}
	return c, err
}

// takeFresh returns the probe's connection waiting for a dial, if any.
func (ps *pathState) takeFresh() net.Conn {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	c := ps.fresh
	ps.fresh = nil
	if c != nil {
		signal(ps.took)
	}
	return c
}

// signal wakes the receiver of ch (capacity 1) without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// controlFailed is called by p's control lane when a request failed: if the
// primary connection is stalled, or gone (the kernel gave up on it:
// KeepaliveTimeout is its TCP_USER_TIMEOUT) with no other one ready, it
// starts p's prober, unless one runs.
func (t *Transport) controlFailed(p *peer) {
	if !tcpInfo {
		return
	}
	ps := &p.path
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.probing || p.ctx.Err() != nil || int64(time.Since(monoBase)) < ps.quietUntil {
		return
	}
	stalled := ps.primary
	if stalled != nil {
		if r, ok := tcpStalled(stalled); ok && !r {
			return // open and moving: a slow peer, not a stalled path
		}
	}
	if (stalled == nil || !connOpen(stalled)) && p.conn.GetState() == connectivity.Ready {
		return
	}
	ps.probing = true
	t.wg.Add(1)
	go t.probePath(p, stalled)
}

// connOpen says whether c is an open TCP connection.
func connOpen(c net.Conn) bool {
	_, ok := tcpStalled(c)
	return ok
}

// probePath dials p once per probeInterval until an attempt connects, the
// stalled connection (nil: none) recovers, gRPC reconnects by itself, or
// the path is no longer wanted; see the top of this file.
func (t *Transport) probePath(p *peer, stalled net.Conn) {
	defer t.wg.Done()
	ps := &p.path
	defer func() {
		ps.mu.Lock()
		ps.probing = false
		ps.mu.Unlock()
	}()
	// Every attempt dials from one source port: a SYN that reaches the
	// peer while its answers cannot come back leaves a half-open entry
	// there, which its kernel keeps for about a minute of SYN-ACK
	// retries; a new SYN on the same addresses finds that entry instead
	// of making another, so the peer holds one, not one per attempt.
	var local *net.TCPAddr
	for p.ctx.Err() == nil {
		ps.mu.Lock()
		current := ps.primary
		ps.mu.Unlock()
		r, ok := tcpStalled(stalled)
		switch {
		case current == stalled && ok && !r:
			return // TCP got through by itself
		case current != stalled && p.conn.GetState() == connectivity.Ready:
			return // gRPC reconnected by itself
		case time.Duration(int64(time.Since(monoBase))-p.wanted.Load()) > 2*t.opts.ControlTimeout:
			return // nothing to send: the next failure starts a prober again
		}
		interval := probeInterval(t.opts.ControlTimeout, time.Duration(p.minRTT.Load()))
		if local == nil {
			local = sourcePort()
		}
		d := thinStreamDialer()
		if local != nil {
			d.LocalAddr = local
		}
		ctx, cancel := context.WithTimeout(p.ctx, interval)
		c, err := d.DialContext(ctx, "tcp", p.Addr)
		if errors.Is(err, syscall.EADDRINUSE) {
			local = nil // taken meanwhile: another one next time
		}
		if err == nil {
			cancel()
			t.reroute(p, stalled, c)
			return
		}
		<-ctx.Done() // a refusal or error returns early: keep the pace
		cancel()
		if errors.Is(err, syscall.ECONNREFUSED) {
			// The path works; nobody listens. A stalled connection
			// is of no use: closed, gRPC redials, is refused too and
			// reports it (PeerRefused). No prober again before gRPC's
			// longest backoff: its dials pace themselves.
			if stalled != nil && connOpen(stalled) {
				abort(stalled)
			}
			ps.mu.Lock()
			ps.quietUntil = int64(time.Since(monoBase) + t.opts.MaxReconnectBackoff)
			ps.mu.Unlock()
			t.log.Info("path to peer stalled and its port refuses connections", "peer", p.Name)
			return
		}
	}
}

// abort closes a stalled connection with a reset, sent at once: a plain
// close queues its FIN behind the data TCP is still retransmitting, so the
// peer would keep the connection (and count it against the limit of
// connections per identity, which the new one needs) until that data got
// through, seconds later, and would then be handed stale requests.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// sourcePort returns a local port free now, with no address (the route
// chooses it), or nil if none could be had (then each attempt takes an
// ephemeral port of its own).
func sourcePort() *net.TCPAddr {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		return nil
	}
	defer l.Close()
	return &net.TCPAddr{Port: l.Addr().(*net.TCPAddr).Port}
}

// reroute replaces p's stalled connection (nil: none open): c, a probe's
// connection, goes to the primary ClientConn's next dial, the stalled
// connection and a stalled spare are closed, and gRPC is told to dial at
// once.
// c waits at most a control deadline to be taken, then is closed.
func (t *Transport) reroute(p *peer, stalled, c net.Conn) {
	ps := &p.path
	ps.mu.Lock()
	if ps.fresh != nil {
		ps.fresh.Close()
	}
	ps.fresh = c
	select {
	case <-ps.took: // from an earlier reroute
	default:
	}
	var spare net.Conn
	if ps.spare != nil {
		if r, ok := tcpStalled(ps.spare); ok && r {
			spare, ps.spare = ps.spare, nil
		}
	}
	if ps.primary == stalled {
		ps.primary = nil
	}
	ps.mu.Unlock()
	p.rerouted.Add(1)
	signal(ps.ready)
	if stalled != nil {
		abort(stalled) // gRPC's reader fails: the connection goes Idle, watchConn connects it
	}
	p.conn.ResetConnectBackoff()
	if spare != nil {
		abort(spare)
		p.spareMu.Lock()
		if p.spare != nil {
			p.spare.Connect() // ready before the next hedge needs it
		}
		p.spareMu.Unlock()
	}
	t.log.Info("path to peer stalled and works again: reconnecting on a fresh connection", "peer", p.Name)
	// Wait for the dial to take c; if none does within a control deadline
	// (gRPC reconnected on its own first), close it.
	timer := time.NewTimer(t.opts.ControlTimeout)
	defer timer.Stop()
	select {
	case <-ps.took:
		return
	case <-p.ctx.Done():
	case <-timer.C:
	}
	ps.mu.Lock()
	if ps.fresh == c {
		ps.fresh = nil
		c.Close()
	}
	ps.mu.Unlock()
}
