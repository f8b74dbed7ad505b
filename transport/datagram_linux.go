//go:build linux

package transport

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"
)

// On Linux, send and recv are sendto(2) and recvfrom(2) as raw system
// calls on the non-blocking socket Go's poller already manages.
//
// Why raw: syscall.Sendto and the net package's reads enter the scheduler's
// system-call state, and on an idle process that wakes the runtime's
// monitor thread (sysmon) from its sleep at every call; it then polls
// every 20 µs for a while, and may hand the caller's P to another thread.
// A heartbeat and its answer are two or three such calls on each node, ten
// times a second, so that was a good part of an idle node's wake-ups. A
// call on a non-blocking socket never waits, which is what the raw form
// requires (docs/benchmarks.md, "Idle CPU: ticks on heartbeats, raw system
// calls").
func (r rawSender) send(b []byte, to netip.AddrPort) error {
	if len(b) == 0 {
		return nil
	}
	var (
		sa4 syscall.RawSockaddrInet4
		sa6 syscall.RawSockaddrInet6
		sa  unsafe.Pointer
		n   uintptr
	)
	if a := to.Addr().Unmap(); a.Is4() && !r.v6 {
		sa4.Family = syscall.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], to.Port())
		sa4.Addr = a.As4()
		sa, n = unsafe.Pointer(&sa4), syscall.SizeofSockaddrInet4
	} else {
		// An IPv4 address on an AF_INET6 socket is IPv4-mapped (As16).
		sa6.Family = syscall.AF_INET6
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa6.Port))[:], to.Port())
		sa6.Addr = a.As16()
		if z, err := strconv.ParseUint(to.Addr().Zone(), 10, 32); err == nil {
			sa6.Scope_id = uint32(z) // as recv gave it
		}
		sa, n = unsafe.Pointer(&sa6), syscall.SizeofSockaddrInet6
	}
	var errno syscall.Errno
	err := r.rc.Write(func(fd uintptr) bool {
		// EAGAIN is an error here, not a wait.
		_, _, errno = syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, uintptr(sa), n)
		return true
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// recv reads one datagram into b, waiting on Go's poller (not in the
// system call) while none is there.
func (r rawSender) recv(_ *net.UDPConn, b []byte) (int, netip.AddrPort, error) {
	var (
		n     uintptr
		from  syscall.RawSockaddrAny
		errno syscall.Errno
	)
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			size := uint32(syscall.SizeofSockaddrAny)
			n, _, errno = syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0,
				uintptr(unsafe.Pointer(&from)), uintptr(unsafe.Pointer(&size)))
			if errno != syscall.EINTR {
				return errno != syscall.EAGAIN // EAGAIN: wait on the poller
			}
		}
	})
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	if errno != 0 {
		return 0, netip.AddrPort{}, errno
	}
	var addr netip.AddrPort
	switch from.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&from))
		addr = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&from))
		// A dual-stack socket reports IPv4 senders IPv4-mapped; answers go
		// back to the same form, so keep it as the kernel gave it. A
		// link-local sender's scope travels as a numeric zone.
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		addr = netip.AddrPortFrom(a, binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	}
	return int(n), addr, nil
}
