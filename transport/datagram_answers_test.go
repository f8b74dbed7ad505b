//go:build linux

package transport

import (
	"net"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// newDeferredNet is two transports with datagrams, n1 with its answers
// deferred (Options.DeferAnswers), as a node runs (no fault hooks).
func newDeferredNet(t testing.TB) (*testNet, []*ackingHandler) {
	handlers := []*ackingHandler{{}, {}}
	tn := newTestNet(t, 2, func(i int, o *Options) {
		o.Handler = handlers[i]
		o.Datagrams = true
		o.DeferAnswers = i == 0
		o.Hooks = nil
	})
	require.True(t, tn.trs[0].dgram.deferAnswers, "n1 defers its answers")
	return tn, handlers
}

// answerWaiting says whether a datagram waits in the answer socket of
// tr's peer 2, unread (FIONREAD, TIOCINQ by its Linux name: the size of
// the next one).
func answerWaiting(t *testing.T, tr *Transport) bool {
	a := tr.set().byID[2].answers.Load()
	require.NotNil(t, a, "an answer socket for n2")
	var size int32
	var errno syscall.Errno
	require.NoError(t, a.raw.rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&size)))
	}))
	require.Zero(t, errno)
	return size > 0
}

// confirmDeferred sends n1's heartbeats to n2 and reads their answers
// until one was answered as a datagram.
func confirmDeferred(t *testing.T, tn *testNet) *peer {
	p := tn.trs[0].set().byID[2]
	waitFor(t, 10*time.Second, "a datagram heartbeat answered", func() bool {
		tn.trs[0].Send([]*raftpb.Message{heartbeat(1, 2, 3, nil)})
		time.Sleep(10 * time.Millisecond) // the heartbeat interval of this test
		tn.trs[0].ReadAnswers()
		return p.dgAnswered.Load() != 0
	})
	return p
}

// An answer to a heartbeat datagram goes to the answer socket and waits
// there, taken by nothing (no goroutine reads it: nothing woke for it),
// until ReadAnswers takes it and reports its acknowledgement before it
// returns. The round trip reported is the answer's arrival, not the read.
func TestDeferredAnswers_WaitUntilReadAndKeepTheirArrivalTime(t *testing.T) {
	t.Parallel()
	tn, hs := newDeferredNet(t)
	p := confirmDeferred(t, tn)
	for range 3 {
		tn.trs[0].ReadAnswers() // answers of confirmDeferred still on the way
	}
	waitFor(t, 10*time.Second, "the answer socket empty", func() bool {
		tn.trs[0].ReadAnswers()
		return !answerWaiting(t, tn.trs[0])
	})
	for i := range 5 {
		_, acks0 := hs[0].counts()
		_, recv0 := tn.trs[0].datagramStats()
		sentAt := time.Now()
		tn.trs[0].Send([]*raftpb.Message{heartbeat(1, 2, 3, proto.Uint64(uint64(i)))})
		waitFor(t, 10*time.Second, "the answer waiting in n1's answer socket", func() bool { return answerWaiting(t, tn.trs[0]) })
		arrivedBy := time.Since(sentAt)
		// The wait is the subject here: had the round trip been measured
		// at the read, it would be at least this long.
		hold := max(200*time.Millisecond, 2*arrivedBy)
		time.Sleep(hold)
		_, acks := hs[0].counts()
		_, recv := tn.trs[0].datagramStats()
		require.Equal(t, acks0, acks, "no acknowledgement before ReadAnswers")
		require.Equal(t, recv0, recv, "nothing read the answer before ReadAnswers")

		require.Equal(t, 1, tn.trs[0].ReadAnswers(), "ReadAnswers takes the one answer")
		_, acks = hs[0].counts()
		require.Equal(t, acks0+1, acks, "its acknowledgement was reported before ReadAnswers returned")
		hs[0].mu.Lock()
		a := hs[0].acks[acks0]
		hs[0].mu.Unlock()
		at, ok := a.Stamp.Time()
		require.True(t, ok)
		require.False(t, at.Before(sentAt.Truncate(time.Microsecond)), "it acknowledges the heartbeat just sent")
		require.Equal(t, Ack{Stamp: a.Stamp, Term: 3, Leader: 1, Promise: 900 * time.Millisecond}, a)
		rtt := time.Duration(p.rtt.Load())
		require.Less(t, rtt, arrivedBy+time.Millisecond, "the round trip ends at the arrival (held %v before the read)", hold)
		require.Equal(t, 0, tn.trs[0].ReadAnswers(), "nothing else waits")
	}
	require.True(t, tn.trs[0].Stats()[0].DatagramHeartbeats, "heartbeats to n2 go as datagrams alone")
}

// The answer socket is connected to the peer's datagram port: whatever
// anyone else sends to it (noise, a request, a real answer replayed from
// elsewhere) the kernel drops, so it is never read, counted or stepped,
// and cannot fill the buffer between two reads. The peer's answers still
// arrive, each taken once.
func TestDeferredAnswers_OnlyThePeerReachesTheAnswerSocket(t *testing.T) {
	t.Parallel()
	tn, hs := newDeferredNet(t)
	confirmDeferred(t, tn)
	waitFor(t, 10*time.Second, "the answer socket empty", func() bool {
		tn.trs[0].ReadAnswers()
		return !answerWaiting(t, tn.trs[0])
	})
	a := tn.trs[0].set().byID[2].answers.Load()
	port, err := a.port()
	require.NoError(t, err)
	// Not a connected socket: the kernel answers what it drops with an
	// ICMP port unreachable, which a connected sender would see as an
	// error on its next write.
	attacker, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer attacker.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}

	// A real answer, taken off the wire as an attacker on the path would.
	tn.trs[0].Send([]*raftpb.Message{heartbeat(1, 2, 3, nil)})
	waitFor(t, 10*time.Second, "the answer", func() bool { return answerWaiting(t, tn.trs[0]) })
	buf := make([]byte, maxDatagram)
	n, _, _, err := a.recv(buf)
	require.NoError(t, err)
	answer := buf[:n]
	key := tn.trs[0].set().byID[2].dgOut.Load().key
	request := key.seal(nil, datagramRequest, 1<<40, []byte("heartbeat"))

	_, acks0 := hs[0].counts()
	rejected0 := tn.trs[0].Rejections(RejectDatagram)
	// On loopback each datagram is delivered, or dropped, within its
	// sendto: all of these are gone before the heartbeat below is sent.
	for _, f := range [][]byte{[]byte("noise"), {}, request, answer, answer} {
		_, err := attacker.WriteToUDP(f, to)
		require.NoError(t, err)
	}
	tn.trs[0].Send([]*raftpb.Message{heartbeat(1, 2, 3, nil)})
	waitFor(t, 10*time.Second, "the next answer", func() bool { return answerWaiting(t, tn.trs[0]) })
	require.Equal(t, 1, tn.trs[0].ReadAnswers(), "only the peer's answer was there")
	_, acks := hs[0].counts()
	require.Equal(t, acks0+1, acks)
	require.Equal(t, rejected0, tn.trs[0].Rejections(RejectDatagram), "nothing else reached the socket")
	require.Equal(t, 0, tn.trs[0].ReadAnswers())
}

// A flood at an answer socket holds the reader for a bounded number of
// datagrams per call, never for as long as the flood lasts.
func TestDeferredAnswers_EachReadIsBounded(t *testing.T) {
	t.Parallel()
	tn, _ := newDeferredNet(t)
	// Fewer than the socket's buffer holds, so that none is lost.
	const perRead = 16
	tn.trs[0].dgram.perRead = perRead
	// Only the peer reaches its answer socket: here the flood comes from
	// the address that socket is connected to, as a forger of the peer's
	// address could send it.
	flood, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer flood.Close()
	p := tn.trs[0].set().byID[2]
	a, err := openAnswerSocket(tn.trs[0].dgram.conn, flood.LocalAddr().(*net.UDPAddr).AddrPort())
	require.NoError(t, err)
	if old := p.answers.Swap(a); old != nil {
		old.close()
	}
	port, err := a.port()
	require.NoError(t, err)
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	const n = 3*perRead + 5
	for range n {
		_, err := flood.WriteToUDP([]byte("flood"), to)
		require.NoError(t, err)
	}
	rejected0 := tn.trs[0].Rejections(RejectDatagram)
	var most uint64
	waitFor(t, 10*time.Second, "the flood read", func() bool {
		before := tn.trs[0].Rejections(RejectDatagram)
		tn.trs[0].ReadAnswers()
		most = max(most, tn.trs[0].Rejections(RejectDatagram)-before)
		return tn.trs[0].Rejections(RejectDatagram)-rejected0 >= n
	})
	require.LessOrEqual(t, most, uint64(perRead), "one call read at most perRead")
}

// A leader's round of one heartbeat datagram and its answer, end to end
// over loopback: n1 sends it (Send), n2 steps and answers it, n1 reads the
// answer from its answer socket (ReadAnswers) and reports the
// acknowledgement. Allocations are both ends' (one process).
func BenchmarkDeferredAnswers_Round(b *testing.B) {
	tn, _ := newDeferredNet(b)
	tr, p := tn.trs[0], tn.trs[0].set().byID[2]
	hb := []*raftpb.Message{heartbeat(1, 2, 3, nil)}
	deadline := time.Now().Add(10 * time.Second)
	for p.dgAnswered.Load() == 0 && time.Now().Before(deadline) {
		tr.Send(hb)
		time.Sleep(10 * time.Millisecond)
		tr.ReadAnswers()
	}
	if p.dgAnswered.Load() == 0 {
		b.Fatal("no datagram answered")
	}
	for tr.ReadAnswers() > 0 {
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		tr.Send(hb)
		for tr.ReadAnswers() == 0 {
			if time.Now().After(deadline.Add(time.Minute)) {
				b.Fatal("an answer never came")
			}
		}
	}
}
