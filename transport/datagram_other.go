//go:build !unix

package transport

import (
	"net"
	"net/netip"
)

// rawSender on systems without syscall.Sendto: a write that can wait when
// the socket buffer is full.
type rawSender struct{ c *net.UDPConn }

func newRawSender(c *net.UDPConn) (rawSender, error) { return rawSender{c}, nil }

func (r rawSender) send(b []byte, to netip.AddrPort) error {
	_, err := r.c.WriteToUDPAddrPort(b, to)
	return err
}

func (r rawSender) recv(c *net.UDPConn, b []byte) (int, netip.AddrPort, error) {
	return c.ReadFromUDPAddrPort(b)
}
