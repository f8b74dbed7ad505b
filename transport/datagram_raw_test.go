package transport

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// The datagram socket's own send and receive (raw system calls on Linux)
// carry the bytes and name the sender, so that an answer goes back to it:
// on IPv4, on IPv6, and from IPv4 to a dual-stack wildcard socket (the
// sender IPv4-mapped).
func TestRawSender_SendsAndReceivesWithTheSendersAddress(t *testing.T) {
	cases := []struct{ name, from, to string }{
		{"ipv4", "127.0.0.1:0", "127.0.0.1:0"},
		{"ipv6", "[::1]:0", "[::1]:0"},
		{"ipv4 to dual-stack", "127.0.0.1:0", "[::]:0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.from)))
			if err != nil {
				t.Skipf("no %s socket here: %v", tc.from, err)
			}
			defer a.Close()
			b, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.to)))
			if err != nil {
				t.Skipf("no %s socket here: %v", tc.to, err)
			}
			defer b.Close()
			// A datagram sent astray fails the test rather than hang it.
			for _, c := range []*net.UDPConn{a, b} {
				if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
					t.Fatal(err)
				}
			}
			ra, err := newRawSender(a)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := newRawSender(b)
			if err != nil {
				t.Fatal(err)
			}
			dst := b.LocalAddr().(*net.UDPAddr).AddrPort()
			if dst.Addr().IsUnspecified() {
				dst = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), dst.Port())
			}
			if err := ra.send([]byte("heartbeat"), dst); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			n, from, err := rb.recv(b, buf)
			if err != nil {
				t.Fatal(err)
			}
			own := a.LocalAddr().(*net.UDPAddr).AddrPort()
			if !bytes.Equal(buf[:n], []byte("heartbeat")) || from.Addr().Unmap() != own.Addr() || from.Port() != own.Port() {
				t.Fatalf("received %q from %v, want %q from %v", buf[:n], from, "heartbeat", own)
			}
			// The answer goes back to the address as received.
			if err := rb.send([]byte("answer"), from); err != nil {
				t.Fatal(err)
			}
			n, back, err := ra.recv(a, buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != "answer" || back.Port() != dst.Port() {
				t.Fatalf("answer %q from %v, want %q from port %d", buf[:n], back, "answer", dst.Port())
			}
		})
	}
}
