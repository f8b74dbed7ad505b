package transport

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// newDatagramNet is two transports with datagrams on (for on[i]) and
// acknowledging handlers, without fault hooks, as a node runs (datagrams
// are then handled on the reading goroutine).
func newDatagramNet(t *testing.T, on ...bool) (*testNet, []*ackingHandler) {
	return newDatagramNetHooked(t, false, on...)
}

// newDatagramNetHooked is newDatagramNet, with fault hooks if hooked.
func newDatagramNetHooked(t *testing.T, hooked bool, on ...bool) (*testNet, []*ackingHandler) {
	handlers := []*ackingHandler{{}, {}}
	tn := newTestNet(t, 2, func(i int, o *Options) {
		o.Handler = handlers[i]
		o.Datagrams = on[i]
		if !hooked {
			o.Hooks = nil
		}
	})
	return tn, handlers
}

func (h *ackingHandler) counts() (delivered, acks int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.delivered), len(h.acks)
}

// confirmDatagrams sends n1's heartbeats to n2 until one was answered as
// a datagram.
func confirmDatagrams(t *testing.T, tn *testNet) *peer {
	p := tn.trs[0].set().byID[2]
	waitFor(t, 10*time.Second, "a datagram heartbeat answered", func() bool {
		tn.trs[0].Send([]*raftpb.Message{heartbeat(1, 2, 3, nil)})
		time.Sleep(10 * time.Millisecond) // the heartbeat interval of this test
		return p.dgAnswered.Load() != 0
	})
	return p
}

// Once a datagram was answered, heartbeats go as datagrams only: each
// arrives once, as raft made it, and is acknowledged with the stamp it
// carried; the stream carries none of them.
// With fault hooks (tests, in-process chaos) datagrams are handled on
// goroutines of their own, without them on the reading one: both ways.
func TestDatagrams_HeartbeatsAndAcknowledgementsSpareTheStream(t *testing.T) {
	t.Parallel()
	for _, hooked := range []bool{false, true} {
		t.Run(fmt.Sprintf("hooks=%v", hooked), func(t *testing.T) {
			t.Parallel()
			heartbeatsSpareTheStream(t, hooked)
		})
	}
}

func heartbeatsSpareTheStream(t *testing.T, hooked bool) {
	tn, hs := newDatagramNetHooked(t, hooked, true, true)
	confirmDatagrams(t, tn)
	d0, _ := hs[1].counts()
	_, acks0 := hs[0].counts()
	sent0, _ := tn.trs[0].datagramStats()
	_, recv0 := tn.trs[1].datagramStats()
	const n = 20
	for i := range n {
		tn.trs[0].Send([]*raftpb.Message{heartbeat(1, 2, 3, proto.Uint64(uint64(i)))})
		want := acks0 + i + 1
		waitFor(t, 10*time.Second, "the acknowledgement", func() bool { _, a := hs[0].counts(); return a >= want })
	}
	d1, _ := hs[1].counts()
	require.Equal(t, n, d1-d0, "each heartbeat arrived once: the stream carried none")
	sent1, _ := tn.trs[0].datagramStats()
	_, recv1 := tn.trs[1].datagramStats()
	require.Equal(t, uint64(n), sent1-sent0, "n1's datagrams")
	require.Equal(t, uint64(n), recv1-recv0, "n2's datagrams accepted")
	require.True(t, tn.trs[0].Stats()[0].DatagramHeartbeats, "n1's Stats say its heartbeats to n2 go as datagrams")
	hs[1].mu.Lock()
	for i, m := range hs[1].delivered[d0:] {
		require.True(t, proto.Equal(heartbeat(1, 2, 3, proto.Uint64(uint64(i))), m), "heartbeat %d arrived as %v", i, m)
	}
	hs[1].mu.Unlock()
	hs[0].mu.Lock()
	defer hs[0].mu.Unlock()
	for i, a := range hs[0].acks[acks0:] {
		at, ok := a.Stamp.Time()
		require.True(t, ok, "acknowledgement %d names a stamp of this process", i)
		require.WithinDuration(t, time.Now(), at, time.Minute)
		require.Equal(t, Ack{Stamp: a.Stamp, Term: 3, Leader: 1, Promise: 900 * time.Millisecond}, a, "acknowledgement %d", i)
		if i > 0 {
			require.Greater(t, a.Stamp.At, hs[0].acks[acks0+i-1].Stamp.At, "each answer acknowledges its own heartbeat")
		}
	}
}

// A peer that takes no datagrams (a firewall dropping UDP, a node with
// them off) gets every heartbeat on the stream.
func TestDatagrams_UnansweredHeartbeatsStillGoOnTheStream(t *testing.T) {
	t.Parallel()
	tn, hs := newDatagramNet(t, true, false)
	for i := range 20 {
		tn.trs[0].Send([]*raftpb.Message{heartbeat(1, 2, 3, proto.Uint64(uint64(i)))})
		want := i + 1
		waitFor(t, 10*time.Second, "the heartbeat", func() bool { d, _ := hs[1].counts(); return d >= want })
	}
	d, _ := hs[1].counts()
	require.Equal(t, 20, d)
	sent, _ := tn.trs[0].datagramStats()
	require.NotZero(t, sent, "n1 tried datagrams")
	require.Zero(t, tn.trs[0].set().byID[2].dgAnswered.Load())
	require.False(t, tn.trs[0].Stats()[0].DatagramHeartbeats)
}

// A datagram whose left-out fields are not those the receiver last
// accepted on the stream is not stepped: it is answered "use the stream",
// and the heartbeat arrives there, once.
func TestDatagrams_StateMismatchGoesToTheStream(t *testing.T) {
	t.Parallel()
	tn, hs := newDatagramNet(t, true, true)
	p := confirmDatagrams(t, tn)
	d := tn.trs[1].dgram
	d.mu.Lock()
	for _, s := range d.sessions {
		s.mu.Lock()
		s.state = 12345 // as if n1's configuration changed and the stream has not said so
		s.mu.Unlock()
	}
	d.mu.Unlock()
	d0, _ := hs[1].counts()
	tn.trs[0].Send([]*raftpb.Message{heartbeat(1, 2, 3, proto.Uint64(77))})
	waitFor(t, 10*time.Second, "the heartbeat on the stream", func() bool { n, _ := hs[1].counts(); return n > d0 })
	require.Zero(t, p.dgAnswered.Load(), "the answer said: use the stream")
	hs[1].mu.Lock()
	require.Len(t, hs[1].delivered, d0+1, "stepped once")
	require.True(t, proto.Equal(heartbeat(1, 2, 3, proto.Uint64(77)), hs[1].delivered[d0]))
	hs[1].mu.Unlock()
	confirmDatagrams(t, tn) // the stream's request set the state again
}

// What an attacker on the network can send is dropped unopened and
// counted, and nothing is answered: junk, a datagram under an unknown key,
// a forged or altered one, and a replay of a real one. The real one,
// fresh, is stepped: the test would see a forgery that got through.
func TestDatagrams_ForgedAlteredAndReplayedAreDropped(t *testing.T) {
	t.Parallel()
	tn, hs := newDatagramNet(t, true, true)
	p := confirmDatagrams(t, tn)
	out := p.dgOut.Load()
	to := tn.trs[1].dgram.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	attacker, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer attacker.Close()
	send := func(b []byte) {
		_, err := attacker.WriteToUDPAddrPort(b, to)
		require.NoError(t, err)
	}
	req, _ := tn.trs[0].request(p, nil)
	payload, err := proto.Marshal(&pb.DatagramRequest{
		Heartbeat: &pb.Heartbeat{Term: 3}, Stamp: req.Stamp,
		State: stateDigest(req.Incarnation, req.LabelsDigest, req.ConfigDigest, req.KnownConfigDigest),
	})
	require.NoError(t, err)
	d0, _ := hs[1].counts()
	rejected := func() uint64 { return tn.trs[1].Rejections(RejectDatagram) }
	r0 := rejected()

	send([]byte("junk"))
	other := &datagramKey{id: out.key.id + 1, aead: out.key.aead}
	send(other.seal(nil, datagramRequest, 1<<40, payload))
	forged := &datagramKey{id: out.key.id}
	forged.aead = newTestAEAD(t)
	send(forged.seal(nil, datagramRequest, 1<<40, payload))
	real := out.key.seal(nil, datagramRequest, 1<<40, payload)
	altered := append([]byte(nil), real...)
	altered[len(altered)-20] ^= 1
	send(altered)
	waitFor(t, 10*time.Second, "four rejections", func() bool { return rejected() == r0+4 })
	// answers counts what reaches the attacker's address: the first within
	// first, each next within 200 ms of the one before.
	answers := func(first time.Duration) int {
		n := 0
		for wait := first; ; wait = 200 * time.Millisecond {
			attacker.SetReadDeadline(time.Now().Add(wait))
			var buf [maxDatagram]byte
			if _, _, err := attacker.ReadFromUDPAddrPort(buf[:]); err != nil {
				var ne net.Error
				require.ErrorAs(t, err, &ne)
				require.True(t, ne.Timeout(), "%v", err)
				return n
			}
			n++
		}
	}
	require.Zero(t, answers(200*time.Millisecond), "n2 answered a datagram that did not open")

	// A real datagram (a fresh counter) is stepped, and answered where it
	// came from; its replay is neither.
	send(real)
	waitFor(t, 10*time.Second, "the real datagram stepped", func() bool { n, _ := hs[1].counts(); return n == d0+1 })
	send(real)
	waitFor(t, 10*time.Second, "the replay rejected", func() bool { return rejected() == r0+5 })
	n, _ := hs[1].counts()
	require.Equal(t, d0+1, n, "the replay was not stepped")
	require.Equal(t, 1, answers(10*time.Second), "one answer: to the real datagram, none to its replay")
}

func TestReplayWindow_AcceptsEachCounterOnce(t *testing.T) {
	var w replayWindow
	require.False(t, w.accept(0), "counters start at 1")
	for _, c := range []uint64{1, 3, 2, 100, 37, 99} {
		require.True(t, w.accept(c), "counter %d", c)
	}
	for _, c := range []uint64{1, 3, 2, 100, 37, 99, 36} {
		require.False(t, w.accept(c), "counter %d again, or too old (window 64)", c)
	}
	require.True(t, w.accept(38), "within the window, not seen")
	require.True(t, w.accept(1000))
	require.False(t, w.accept(100), "below the window now")
}

// The datagram's destination is the stream's peer address, IPv4-mapped or
// not: both parse to the same port.
func TestDatagrams_DestinationIsTheStreamsPeer(t *testing.T) {
	t.Parallel()
	tn, _ := newDatagramNet(t, true, true)
	p := confirmDatagrams(t, tn)
	udp := tn.trs[1].dgram.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	require.Equal(t, netip.AddrPortFrom(udp.Addr().Unmap(), udp.Port()), p.dgOut.Load().to)
}

func newTestAEAD(t *testing.T) cipher.AEAD {
	block, err := aes.NewCipher(make([]byte, 32))
	require.NoError(t, err)
	aead, err := cipher.NewGCM(block)
	require.NoError(t, err)
	return aead
}

// Each control stream seals its datagrams under a key of its own, even on
// the same TLS connection: counters start at 1 for every key, and AES-GCM
// must never see one twice under a key. A stream torn down (a peer that
// stopped answering for a while) and opened again on the same connection
// gets a new key, and datagrams work again under it.
func TestDatagrams_EachStreamHasItsOwnKey(t *testing.T) {
	t.Parallel()
	tn, _ := newDatagramNetHooked(t, true, true, true)
	p := confirmDatagrams(t, tn)
	first := p.dgOut.Load()
	require.NotNil(t, first)
	conn := *p.dialed.Load()

	tn.hooks[1].BlockFrom("n1", true) // n2 hangs: datagrams unanswered, the stream times out
	waitFor(t, 10*time.Second, "the control stream torn down", func() bool {
		tn.trs[0].Send([]*raftpb.Message{heartbeat(1, 2, 3, nil)})
		time.Sleep(10 * time.Millisecond)
		return p.dgOut.Load() == nil
	})
	unblocked := p.dgAnswered.Load() // what the old key's datagrams were last answered at
	tn.hooks[1].BlockFrom("n1", false)
	waitFor(t, 20*time.Second, "datagrams answered under a new stream's key", func() bool {
		tn.trs[0].Send([]*raftpb.Message{heartbeat(1, 2, 3, nil)})
		time.Sleep(10 * time.Millisecond)
		out := p.dgOut.Load()
		return out != nil && out != first && p.dgAnswered.Load() > unblocked
	})
	require.Equal(t, conn, *p.dialed.Load(), "the same TCP connection")
	require.NotEqual(t, first.key.id, p.dgOut.Load().key.id, "a new key")
}

// On one TLS session, two contexts give two keys, and both ends derive the
// same key for the same context.
func TestDatagramKey_OnePerContextTheSameAtBothEnds(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, nil)
	c1, c2 := bytes.Repeat([]byte{1}, datagramContextBytes), bytes.Repeat([]byte{2}, datagramContextBytes)
	client, server := tlsPair(t, tn)
	k1c, err := exportDatagramKey(client, c1)
	require.NoError(t, err)
	k1s, err := exportDatagramKey(server, c1)
	require.NoError(t, err)
	k2c, err := exportDatagramKey(client, c2)
	require.NoError(t, err)
	require.Equal(t, k1c.id, k1s.id)
	sealed := k1c.seal(nil, datagramRequest, 1, []byte("heartbeat"))
	got, err := k1s.open(nil, sealed, datagramRequest, 1)
	require.NoError(t, err, "the server opens what the client sealed")
	require.Equal(t, "heartbeat", string(got))
	require.NotEqual(t, k1c.id, k2c.id)
	_, err = k2c.open(nil, sealed, datagramRequest, 1)
	require.Error(t, err, "another context's key opens nothing")
	_, err = exportDatagramKey(client, nil)
	require.Error(t, err, "no context, no key")
}

// tlsPair does one TLS handshake between n1's and n2's credentials over a
// pipe and returns both ends' session states.
func tlsPair(t *testing.T, tn *testNet) (client, server *tls.ConnectionState) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cc := tls.Client(a, tn.trs[0].opts.Credentials.ClientConfig("n2"))
	sc := tls.Server(b, tn.trs[1].opts.Credentials.serverConfig())
	errs := make(chan error, 1)
	go func() { errs <- sc.Handshake() }()
	require.NoError(t, cc.Handshake())
	require.NoError(t, <-errs)
	cs, ss := cc.ConnectionState(), sc.ConnectionState()
	return &cs, &ss
}
