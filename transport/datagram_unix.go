//go:build unix && !linux

package transport

import (
	"net"
	"net/netip"
	"syscall"
)

func (r rawSender) send(b []byte, to netip.AddrPort) error {
	var sa syscall.Sockaddr
	if a := to.Addr().Unmap(); a.Is4() && !r.v6 {
		sa = &syscall.SockaddrInet4{Port: int(to.Port()), Addr: a.As4()}
	} else {
		// An IPv4 address on an AF_INET6 socket is IPv4-mapped (As16).
		sa = &syscall.SockaddrInet6{Port: int(to.Port()), Addr: a.As16()}
	}
	var serr error
	err := r.rc.Write(func(fd uintptr) bool {
		// The descriptor is non-blocking (Go's poller): EAGAIN is an
		// error here, not a wait.
		serr = syscall.Sendto(int(fd), b, 0, sa)
		return true
	})
	if err != nil {
		return err
	}
	return serr
}

func (r rawSender) recv(c *net.UDPConn, b []byte) (int, netip.AddrPort, error) {
	return c.ReadFromUDPAddrPort(b)
}
