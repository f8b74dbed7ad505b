//go:build linux

package netns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// blocked bounds a probe that is expected to time out: the peers are one
	// bridge apart (~0.1 ms), so half a second of silence is a drop.
	blocked = 500 * time.Millisecond
	// open bounds a probe that is expected to succeed.
	open = 3 * time.Second
)

func newNetwork(t *testing.T, n int) *Network {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nw, err := New(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	names := namesOf(nw)
	t.Cleanup(func() {
		if err := nw.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertNoNamespaces(t, names)
	})
	return nw
}

func namesOf(nw *Network) []string {
	names := []string{nw.bridge}
	for _, n := range nw.Nodes() {
		names = append(names, n.Name)
	}
	return names
}

// assertNoNamespaces checks `ip netns list` for the exact names.
func assertNoNamespaces(t *testing.T, names []string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	present := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			present[f[0]] = true
		}
	}
	for _, name := range names {
		if present[name] {
			t.Errorf("namespace %s still exists", name)
		}
	}
}

// echoServer listens on the node's IP, inside its namespace, and echoes.
func echoServer(t *testing.T, nw *Network, node int) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	err := nw.Do(node, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(nw.Nodes()[node].IP, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(open))
				io.Copy(c, c)
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// echo opens a new TCP connection from the node's namespace to addr and
// round-trips one line, all within timeout.
func echo(nw *Network, from int, addr netip.AddrPort, timeout time.Duration) error {
	return nw.Do(from, func() error {
		d := net.Dialer{Timeout: timeout}
		c, err := d.Dial("tcp", addr.String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != "ping\n" {
			return fmt.Errorf("echo returned %q", buf)
		}
		return nil
	})
}

func mustEcho(t *testing.T, nw *Network, from int, addr netip.AddrPort) {
	t.Helper()
	if err := echo(nw, from, addr, open); err != nil {
		t.Fatalf("node %d -> %v: %v, want a working echo", from, addr, err)
	}
}

// mustTimeOut asserts the echo fails by timing out: a silent drop, not a
// refusal or a local error, silent for the whole deadline. (How long past
// the deadline the error comes is the machine's load, not the fault's:
// not asserted.)
func mustTimeOut(t *testing.T, nw *Network, from int, addr netip.AddrPort) {
	t.Helper()
	start := time.Now()
	err := echo(nw, from, addr, blocked)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("node %d -> %v: %v, want a timeout", from, addr, err)
	}
	if d := time.Since(start); d < blocked {
		t.Fatalf("node %d -> %v: timed out after %v, before the %v deadline", from, addr, d, blocked)
	}
}

// udpSink receives datagrams in the node's namespace.
func udpSink(t *testing.T, nw *Network, node int) (netip.AddrPort, <-chan string) {
	t.Helper()
	var pc net.PacketConn
	err := nw.Do(node, func() (err error) {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(nw.Nodes()[node].IP, 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ch := make(chan string, 4096)
	go func() {
		buf := make([]byte, 64)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String()), ch
}

// sendUDP sends count datagrams and then "end" from the node's namespace. It
// fails on any local send error: a silent drop must not produce one.
func sendUDP(nw *Network, from int, to netip.AddrPort, count int) error {
	return sendUDPThen(nw, from, to, count, "end")
}

// sendUDPThen is sendUDP with another end marker.
func sendUDPThen(nw *Network, from int, to netip.AddrPort, count int, marker string) error {
	return nw.Do(from, func() error {
		c, err := net.Dial("udp", to.String())
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range count + 1 {
			msg := marker
			if i < count {
				msg = fmt.Sprint(i)
			}
			if _, err := c.Write([]byte(msg)); err != nil {
				return fmt.Errorf("datagram %d: %w", i, err)
			}
			if i%50 == 49 {
				time.Sleep(time.Millisecond) // stay within the receive buffer
			}
		}
		return nil
	})
}

// received counts datagrams until "end" arrives (true) or timeout (false).
func received(ch <-chan string, timeout time.Duration) (int, bool) {
	return receivedUntil(ch, "end", timeout)
}

// receivedUntil counts numbered datagrams until marker arrives (true) or
// timeout (false); other end markers are not counted.
func receivedUntil(ch <-chan string, marker string, timeout time.Duration) (int, bool) {
	deadline := time.After(timeout)
	n := 0
	for {
		select {
		case m := <-ch:
			switch m {
			case marker:
				return n, true
			case "end":
			default:
				n++
			}
		case <-deadline:
			return n, false
		}
	}
}

// mustLoseSilently asserts that 10 datagrams and the end marker from node
// from to sink to leave without a local error (an inet output-chain drop
// would fail them with EPERM) and none arrive.
func mustLoseSilently(t *testing.T, nw *Network, from int, to netip.AddrPort, got <-chan string) {
	t.Helper()
	if err := sendUDP(nw, from, to, 10); err != nil {
		t.Fatalf("node %d saw its dropped datagrams to %v fail locally: %v", from, to, err)
	}
	if n, ok := received(got, blocked); ok || n != 0 {
		t.Fatalf("%v received %d datagrams from node %d (end %v), want none", to, n, from, ok)
	}
}

// mustArrive asserts that 10 datagrams and the end marker from node from
// to sink all arrive.
func mustArrive(t *testing.T, nw *Network, from int, to netip.AddrPort, got <-chan string) {
	t.Helper()
	if err := sendUDP(nw, from, to, 10); err != nil {
		t.Fatal(err)
	}
	if n, ok := received(got, open); !ok || n != 10 {
		t.Fatalf("%v received %d of 10 datagrams from node %d (end %v)", to, n, from, ok)
	}
}

// mustLoseSilentlyOneWay asserts that node 0's datagrams to node 1 are lost
// silently while node 1's datagrams to node 0 all arrive.
func mustLoseSilentlyOneWay(t *testing.T, nw *Network, udp1 netip.AddrPort, got1 <-chan string, udp0 netip.AddrPort, got0 <-chan string) {
	t.Helper()
	mustLoseSilently(t, nw, 0, udp1, got1)
	mustArrive(t, nw, 1, udp0, got0)
}

func TestNewGivesEachNodeItsOwnNamespaceAndAddress(t *testing.T) {
	nw := newNetwork(t, 3)
	nodes := nw.Nodes()
	if len(nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(nodes))
	}
	for i, n := range nodes {
		if n.Index != i || !nw.Prefix().Contains(n.IP) || !strings.HasSuffix(n.Name, fmt.Sprintf("-%d", i)) {
			t.Errorf("node %d = %+v in %v", i, n, nw.Prefix())
		}
		out, err := nw.Command(context.Background(), i, "ip", "-4", "-o", "addr", "show").Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), " "+n.IP.String()+"/24 ") || !strings.Contains(string(out), "127.0.0.1") {
			t.Errorf("node %d sees addresses:\n%s", i, out)
		}
	}
	// Every node reaches every other: the first round may wait for ARP.
	for to := range nodes {
		addr := echoServer(t, nw, to)
		for from := range nodes {
			mustEcho(t, nw, from, addr)
		}
	}
}

// A drop from node 0 to node 1 is silent (node 0's sends succeed locally;
// nothing arrives) and one way (node 1 -> node 0 datagrams arrive, but TCP
// from node 1 cannot connect: node 0's SYN-ACK is among the dropped
// packets). DropBetween lives in node 0's namespace (on its way out),
// DropArriving in node 1's (as the packets arrive): healing the other
// node changes nothing.
func TestDropsAreSilentAndOneWay(t *testing.T) {
	for _, tc := range []struct {
		name         string
		drop         func(nw *Network) error
		lives, other int
	}{
		{"between", func(nw *Network) error { return nw.DropBetween(0, 1) }, 0, 1},
		{"arriving", func(nw *Network) error { return nw.DropArriving(0, 1) }, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nw := newNetwork(t, 3)
			echo1 := echoServer(t, nw, 1)
			echo0 := echoServer(t, nw, 0)
			udp1, got1 := udpSink(t, nw, 1)
			udp0, got0 := udpSink(t, nw, 0)
			mustEcho(t, nw, 0, echo1)
			mustEcho(t, nw, 2, echo1)

			if err := tc.drop(nw); err != nil {
				t.Fatal(err)
			}
			mustTimeOut(t, nw, 0, echo1)
			mustEcho(t, nw, 2, echo1)
			mustLoseSilentlyOneWay(t, nw, udp1, got1, udp0, got0)
			mustTimeOut(t, nw, 1, echo0)

			if err := nw.Heal(tc.other); err != nil {
				t.Fatal(err)
			}
			mustTimeOut(t, nw, 0, echo1)
			if err := nw.Heal(tc.lives); err != nil {
				t.Fatal(err)
			}
			mustEcho(t, nw, 0, echo1)
			mustEcho(t, nw, 1, echo0)
		})
	}
}

func TestIsolateCutsEverythingButLoopback(t *testing.T) {
	nw := newNetwork(t, 3)
	echo0 := echoServer(t, nw, 0)
	echo1 := echoServer(t, nw, 1)
	echo2 := echoServer(t, nw, 2)
	mustEcho(t, nw, 0, echo1)

	if err := nw.Isolate(1); err != nil {
		t.Fatal(err)
	}
	mustTimeOut(t, nw, 0, echo1)
	mustTimeOut(t, nw, 2, echo1)
	mustTimeOut(t, nw, 1, echo0)
	mustEcho(t, nw, 0, echo2)
	mustEcho(t, nw, 1, echo1) // its own address goes over loopback

	if err := nw.HealAll(); err != nil {
		t.Fatal(err)
	}
	mustEcho(t, nw, 0, echo1)
	mustEcho(t, nw, 1, echo0)
}

// TestLoss: random loss on either hook, on the link from node 0 to node 1.
// Loss puts its rule on the sender's way out (node 0), LossArriving on the
// receiver's way in (node 1); each loses about percent % of the packets,
// silently (the sender's sends succeed), one way, on the links it names
// (every link through its node if it names none), until its own node is
// healed.
func TestLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		loss func(nw *Network) func(node, percent int, peers ...int) error
		// at: the node whose namespace holds the rule for 0 -> 1, and
		// peer: the node the rule names.
		at, peer int
		// through: the link (from, to) from or to node 2 that also passes
		// the rule's hook: lost only when the rule names no peer.
		through [2]int
	}{
		{"leaving", func(nw *Network) func(int, int, ...int) error { return nw.Loss }, 0, 1, [2]int{0, 2}},
		{"arriving", func(nw *Network) func(int, int, ...int) error { return nw.LossArriving }, 1, 0, [2]int{2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nw := newNetwork(t, 3)
			loss := tc.loss(nw)
			var echos []netip.AddrPort
			for i := range 3 {
				echos = append(echos, echoServer(t, nw, i))
			}
			udp1, got1 := udpSink(t, nw, 1)
			udp0, got0 := udpSink(t, nw, 0)
			mustEcho(t, nw, 0, echos[1])
			const sent = 400
			heal := func(node int) {
				t.Helper()
				if err := nw.Heal(node); err != nil {
					t.Fatal(err)
				}
			}

			allArrive := func(what string) {
				t.Helper()
				if err := sendUDP(nw, 0, udp1, sent); err != nil {
					t.Fatal(err)
				}
				if n, ok := received(got1, open); !ok || n != sent {
					t.Fatalf("%s: received %d of %d (end %v)", what, n, sent, ok)
				}
			}

			t.Run("no rule and 0% lose nothing", func(t *testing.T) {
				allArrive("no rule")
				if err := loss(tc.at, 0, tc.peer); err != nil {
					t.Fatal(err)
				}
				allArrive("0 %")
			})
			t.Run("50% loses about half", func(t *testing.T) {
				if err := loss(tc.at, 50, tc.peer); err != nil {
					t.Fatal(err)
				}
				if err := sendUDP(nw, 0, udp1, sent); err != nil {
					t.Fatalf("a lost datagram failed locally: %v", err)
				}
				// The end marker may be lost too: after healing, send
				// one that cannot be, and count up to it, as everything
				// on this path arrives in order. (Draining a surviving
				// "end" after counting raced with its arrival: it was
				// then read as the next subtest's.)
				heal(tc.at)
				if err := sendUDPThen(nw, 0, udp1, 0, "healed"); err != nil {
					t.Fatal(err)
				}
				// Arrivals are Binomial(400, 1/2): mean 200, standard
				// deviation 10. Hoeffding bounds the chance of landing
				// outside [100, 300] by 2 exp(-2 * 100^2 / 400) = 2e^-50,
				// about 4e-22: this cannot flake; a loss of 0 or 100 %
				// (or a rule on the wrong hook) fails it.
				n, ok := receivedUntil(got1, "healed", open)
				if !ok || n < sent/4 || n > sent*3/4 {
					t.Fatalf("received %d of %d (end %v), want about half", n, sent, ok)
				}
			})
			t.Run("100% loses everything, silently and one way", func(t *testing.T) {
				if err := loss(tc.at, 100, tc.peer); err != nil {
					t.Fatal(err)
				}
				mustTimeOut(t, nw, 0, echos[1])
				mustLoseSilentlyOneWay(t, nw, udp1, got1, udp0, got0)
				// Only the named peer's link: node 2's link through the
				// same hook works.
				mustEcho(t, nw, tc.through[0], echos[tc.through[1]])
				heal(tc.peer) // the rule is not in the peer's namespace
				mustTimeOut(t, nw, 0, echos[1])
				heal(tc.at)
				mustEcho(t, nw, 0, echos[1])
			})
			t.Run("every link through the node when no peer is named", func(t *testing.T) {
				if err := loss(tc.at, 100); err != nil {
					t.Fatal(err)
				}
				mustTimeOut(t, nw, 0, echos[1])
				mustTimeOut(t, nw, tc.through[0], echos[tc.through[1]])
				heal(tc.at)
				mustEcho(t, nw, 0, echos[1])
				mustEcho(t, nw, tc.through[0], echos[tc.through[1]])
			})
		})
	}
}

func TestFaultArgumentsAreChecked(t *testing.T) {
	nw := newNetwork(t, 2)
	for name, err := range map[string]error{
		"drop to self":      nw.DropBetween(1, 1),
		"drop out of range": nw.DropBetween(0, 2),
		"isolate negative":  nw.Isolate(-1),
		"loss 101":          nw.Loss(0, 101),
		"loss to self":      nw.Loss(0, 10, 0),
		"loss arriving -1":  nw.LossArriving(1, -1),
		"loss from self":    nw.LossArriving(1, 10, 1),
		"loss from node 2":  nw.LossArriving(1, 10, 2),
		"heal out of range": nw.Heal(5),
		"drop UDP of -1":    nw.DropUDP(-1),
		"allow UDP of 2":    nw.AllowUDP(2),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := nw.UDPDropped(2); err == nil {
		t.Error("UDPDropped of node 2 of 2: no error")
	}
	if err := nw.Command(context.Background(), 7, "true").Run(); err == nil {
		t.Error("Command on node 7 of 2 ran")
	}
}

func TestCloseKillsCommandsAndDeletesExactlyItsNamespaces(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("%v", err)
	}
	other := newNetwork(t, 1) // must survive the Close below
	nw, err := New(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	names := namesOf(nw)
	sleeper := nw.Command(context.Background(), 1, "sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	finished := nw.Command(context.Background(), 0, "true")
	if err := finished.Run(); err != nil {
		t.Fatal(err)
	}
	nw.Command(context.Background(), 0, "true") // never started

	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()
	select {
	case err := <-waited:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("sleeper ended with %v, want killed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close left the process running")
	}
	assertNoNamespaces(t, names)
	if err := nw.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := nw.Isolate(0); !errors.Is(err, ErrClosed) {
		t.Errorf("Isolate after Close: %v, want ErrClosed", err)
	}
	if err := nw.Command(context.Background(), 0, "true").Run(); !errors.Is(err, ErrClosed) {
		t.Errorf("Command after Close: %v, want ErrClosed", err)
	}
	out, err := other.Command(context.Background(), 0, "true").CombinedOutput()
	if err != nil {
		t.Errorf("another network's namespace was hurt: %v %s", err, out)
	}
}

func TestNewRemovesWhatItCreatedWhenItFails(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("%v", err)
	}
	var created []string
	injected := errors.New("injected failure")
	testHookCreated = func(ns string) error {
		created = append(created, ns)
		if len(created) == 3 { // bridge, node 0, node 1
			return injected
		}
		return nil
	}
	defer func() { testHookCreated = nil }()

	nw, err := New(context.Background(), 3)
	if !errors.Is(err, injected) || nw != nil {
		t.Fatalf("New = %v, %v; want the injected failure", nw, err)
	}
	if len(created) != 3 {
		t.Fatalf("created %v", created)
	}
	assertNoNamespaces(t, created)
}

func TestFlapTogglesUntilTheDeadlineAndEndsOff(t *testing.T) {
	var calls []string
	on := func() error { calls = append(calls, "on"); return nil }
	off := func() error { calls = append(calls, "off"); return nil }
	ctx, cancel := context.WithTimeout(context.Background(), 275*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := (&Network{}).Flap(ctx, on, off, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Flap returned after %v", d)
	}
	if len(calls) < 4 || calls[len(calls)-1] != "off" {
		t.Fatalf("calls %v: want several toggles ending with off", calls)
	}
	for i, c := range calls {
		if want := []string{"on", "off"}[i%2]; c != want {
			t.Fatalf("calls %v: call %d is %s, want %s", calls, i, c, want)
		}
	}

	if err := (&Network{}).Flap(context.Background(), on, off, time.Millisecond); err == nil {
		t.Error("Flap without a deadline: no error")
	}
	failing := errors.New("on failed")
	calls = nil
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	err := (&Network{}).Flap(ctx2, func() error { return failing }, off, time.Millisecond)
	if !errors.Is(err, failing) || strings.Join(calls, ",") != "off" {
		t.Errorf("Flap with a failing on: %v, calls %v; want the error and one off", err, calls)
	}
}

// TestRejectRefusesThePortOnlyWhileTheProcessRuns: a rejected port refuses
// every new connection from the network with ECONNREFUSED (an RST or ICMP
// port unreachable, not silence); with tcp-reset an established connection
// is reset too. Other ports of the node, its own outbound connections and
// loopback keep working, and Heal restores the port.
func TestRejectRefusesThePortOnlyWhileTheProcessRuns(t *testing.T) {
	for _, how := range []RejectKind{RejectTCPReset, RejectICMP} {
		t.Run(string(how), func(t *testing.T) {
			nw := newNetwork(t, 3)
			rejected := echoServer(t, nw, 1)
			other := echoServer(t, nw, 1)
			echo0 := echoServer(t, nw, 0)
			mustEcho(t, nw, 0, rejected)

			// A connection from node 2 established before the fault.
			var est net.Conn
			if err := nw.Do(2, func() (err error) {
				est, err = net.DialTimeout("tcp", rejected.String(), open)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer est.Close()

			if err := nw.Reject(1, rejected.Port(), how); err != nil {
				t.Fatal(err)
			}
			err := echo(nw, 0, rejected, open)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("node 0 -> rejected port: %v, want ECONNREFUSED", err)
			}
			mustEcho(t, nw, 0, other)
			mustEcho(t, nw, 1, echo0)    // its own outbound connections and their answers
			mustEcho(t, nw, 1, rejected) // loopback
			if how == RejectTCPReset {
				est.SetDeadline(time.Now().Add(open))
				_, werr := est.Write([]byte("ping\n"))
				_, rerr := io.ReadFull(est, make([]byte, 5))
				if !errors.Is(werr, syscall.ECONNRESET) && !errors.Is(rerr, syscall.ECONNRESET) {
					t.Fatalf("established connection after the reject: write %v, read %v; want ECONNRESET", werr, rerr)
				}
			}

			if err := nw.Heal(1); err != nil {
				t.Fatal(err)
			}
			mustEcho(t, nw, 0, rejected)
		})
	}
}

// TestDropUDPPassesOnlyTCP: DropUDP drops the node's UDP both ways,
// silently, and counts each packet, while its TCP and other nodes' UDP
// pass; Heal, which ends the node's other faults, leaves it, and AllowUDP
// (or HealAll) removes it.
func TestDropUDPPassesOnlyTCP(t *testing.T) {
	nw := newNetwork(t, 3)
	echo0 := echoServer(t, nw, 0)
	echo1 := echoServer(t, nw, 1)
	udp0, got0 := udpSink(t, nw, 0)
	udp1, got1 := udpSink(t, nw, 1)
	udp2, got2 := udpSink(t, nw, 2)
	mustArrive(t, nw, 0, udp1, got1)

	if err := nw.DropUDP(0); err != nil {
		t.Fatal(err)
	}
	if err := nw.DropUDP(0); err != nil { // twice: the same drop, counted once
		t.Fatal(err)
	}
	mustLoseSilently(t, nw, 0, udp1, got1)
	mustLoseSilently(t, nw, 1, udp0, got0)
	mustArrive(t, nw, 1, udp2, got2)
	mustEcho(t, nw, 0, echo1)
	mustEcho(t, nw, 1, echo0)
	// 11 datagrams each way met the first rule that dropped them; the
	// echoes' TCP was not counted.
	if n, err := nw.UDPDropped(0); err != nil || n != 22 {
		t.Fatalf("UDPDropped(0) = %d, %v; want the 22 datagrams sent", n, err)
	}
	if n, err := nw.UDPDropped(1); err != nil || n != 0 {
		t.Fatalf("UDPDropped(1) = %d, %v; want 0 without a drop", n, err)
	}

	if err := nw.Isolate(0); err != nil {
		t.Fatal(err)
	}
	mustTimeOut(t, nw, 1, echo0)
	if err := nw.Heal(0); err != nil {
		t.Fatal(err)
	}
	mustEcho(t, nw, 1, echo0)
	mustLoseSilently(t, nw, 1, udp0, got0)

	if err := nw.AllowUDP(0); err != nil {
		t.Fatal(err)
	}
	mustArrive(t, nw, 0, udp1, got1)
	mustArrive(t, nw, 1, udp0, got0)
	if n, err := nw.UDPDropped(0); err != nil || n != 0 {
		t.Fatalf("UDPDropped(0) after AllowUDP = %d, %v; want 0", n, err)
	}

	if err := nw.DropUDP(1); err != nil {
		t.Fatal(err)
	}
	mustLoseSilently(t, nw, 0, udp1, got1)
	if err := nw.HealAll(); err != nil {
		t.Fatal(err)
	}
	mustArrive(t, nw, 0, udp1, got1)
}
