//go:build linux

package transport

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
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
	)
	sa, n := rawSockaddr(to, r.v6, &sa4, &sa6)
	var errno syscall.Errno
	err := r.rc.Write(func(fd uintptr) bool {
		// EAGAIN is an error here, not a wait: MSG_DONTWAIT, for the
		// answer socket (blocking mode, see answerSocket).
		_, _, errno = syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_DONTWAIT, uintptr(sa), n)
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
	return int(n), addrPortOf(&from), nil
}

// rawSockaddr fills sa4 or sa6 with to, as a socket address for an
// AF_INET6 socket (v6) or an AF_INET one, and returns the one it filled
// and its size, for a raw system call.
func rawSockaddr(to netip.AddrPort, v6 bool, sa4 *syscall.RawSockaddrInet4, sa6 *syscall.RawSockaddrInet6) (unsafe.Pointer, uintptr) {
	if a := to.Addr().Unmap(); a.Is4() && !v6 {
		sa4.Family = syscall.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], to.Port())
		sa4.Addr = a.As4()
		return unsafe.Pointer(sa4), syscall.SizeofSockaddrInet4
	}
	// An IPv4 address on an AF_INET6 socket is IPv4-mapped (As16).
	sa6.Family = syscall.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa6.Port))[:], to.Port())
	sa6.Addr = to.Addr().As16()
	if z, err := strconv.ParseUint(to.Addr().Zone(), 10, 32); err == nil {
		sa6.Scope_id = uint32(z) // as recv gave it
	}
	return unsafe.Pointer(sa6), syscall.SizeofSockaddrInet6
}

// addrPortOf decodes a socket address recvfrom or recvmsg gave.
func addrPortOf(from *syscall.RawSockaddrAny) netip.AddrPort {
	switch from.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(from))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(from))
		// A dual-stack socket reports IPv4 senders IPv4-mapped; answers go
		// back to the same form, so keep it as the kernel gave it. A
		// link-local sender's scope travels as a numeric zone.
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	}
	return netip.AddrPort{}
}

const deferredAnswersSupported = true

// answerSocket is the UDP socket a leader's heartbeat datagrams to one
// peer leave from with Options.DeferAnswers, so that their answers come
// back to it.
// Go's poller never watches it: the descriptor is in blocking mode, which
// os.NewFile does not register, and every call on it passes MSG_DONTWAIT.
// An answer arriving therefore wakes no thread; it waits in the socket's
// buffer, stamped by the kernel with its arrival time (SO_TIMESTAMPNS),
// until the owner reads it (Transport.ReadAnswers). The os.File keeps
// Close from racing a call in progress, as it does for any descriptor.
type answerSocket struct {
	f    *os.File
	raw  rawSender
	peer netip.AddrPort // connected to

	// recv's state, made once: a read allocates nothing. One reader at a
	// time (Transport.ReadAnswers holds readMu).
	from   syscall.RawSockaddrAny
	oob    [64]byte
	iov    syscall.Iovec
	msg    syscall.Msghdr
	n      uintptr
	errno  syscall.Errno
	readFn func(fd uintptr) bool
}

// openAnswerSocket opens an answer socket of main's family on main's
// address, on a port the kernel picks, connected to peer: the kernel
// then drops every datagram that does not come from peer's address and
// port, so that only a sender who can forge that address can fill its
// buffer between two reads.
func openAnswerSocket(main *net.UDPConn, peer netip.AddrPort) (*answerSocket, error) {
	rc, err := main.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		local  syscall.Sockaddr
		v6only int
		serr   error
	)
	if err := rc.Control(func(fd uintptr) {
		if local, serr = syscall.Getsockname(int(fd)); serr != nil {
			return
		}
		if _, ok := local.(*syscall.SockaddrInet6); ok {
			v6only, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY)
		}
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("reading the datagram socket's address: %w", serr)
	}
	family := syscall.AF_INET
	switch sa := local.(type) {
	case *syscall.SockaddrInet4:
		sa.Port = 0
	case *syscall.SockaddrInet6:
		sa.Port = 0
		family = syscall.AF_INET6
	default:
		return nil, fmt.Errorf("the datagram socket has an address of family %T", local)
	}
	fd, err := syscall.Socket(family, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("opening the answer socket: %w", err)
	}
	setup := func() error {
		if family == syscall.AF_INET6 {
			if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, v6only); err != nil {
				return err
			}
		}
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
			return err
		}
		if err := syscall.Bind(fd, local); err != nil {
			return err
		}
		var (
			sa4 syscall.RawSockaddrInet4
			sa6 syscall.RawSockaddrInet6
		)
		sa, n := rawSockaddr(peer, family == syscall.AF_INET6, &sa4, &sa6)
		if _, _, errno := syscall.Syscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(sa), n); errno != 0 {
			return errno
		}
		return nil
	}
	if err := setup(); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("setting up the answer socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "datagram answers")
	frc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	a := &answerSocket{f: f, raw: rawSender{rc: frc, v6: family == syscall.AF_INET6}, peer: peer}
	a.readFn = func(fd uintptr) bool {
		for {
			a.n, _, a.errno = syscall.RawSyscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&a.msg)), syscall.MSG_DONTWAIT)
			if a.errno != syscall.EINTR {
				return true
			}
		}
	}
	return a, nil
}

// recv reads one waiting datagram into b, with the time it arrived; it
// never waits: errNoAnswer when none is there.
func (a *answerSocket) recv(b []byte) (int, netip.AddrPort, time.Time, error) {
	if len(b) == 0 {
		return 0, netip.AddrPort{}, time.Time{}, syscall.EINVAL
	}
	a.iov = syscall.Iovec{Base: unsafe.SliceData(b)}
	a.iov.SetLen(len(b))
	a.msg = syscall.Msghdr{Name: (*byte)(unsafe.Pointer(&a.from)), Namelen: syscall.SizeofSockaddrAny, Iov: &a.iov, Iovlen: 1, Control: &a.oob[0]}
	a.msg.SetControllen(len(a.oob))
	err := a.raw.rc.Read(a.readFn)
	a.iov.Base = nil // b is the caller's again
	switch {
	case err != nil:
		return 0, netip.AddrPort{}, time.Time{}, err
	case a.errno == syscall.EAGAIN:
		return 0, netip.AddrPort{}, time.Time{}, errNoAnswer
	case a.errno != 0:
		return 0, netip.AddrPort{}, time.Time{}, a.errno
	}
	var at time.Time
	if h := (*syscall.Cmsghdr)(unsafe.Pointer(&a.oob[0])); int(a.msg.Controllen) >= syscall.CmsgLen(int(unsafe.Sizeof(syscall.Timespec{}))) &&
		h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS {
		ts := (*syscall.Timespec)(unsafe.Pointer(&a.oob[syscall.CmsgLen(0)]))
		at = time.Unix(ts.Unix())
	}
	return int(a.n), addrPortOf(&a.from), at, nil
}

func (a *answerSocket) close() error { return a.f.Close() }

// port is the port the kernel gave the socket (tests).
func (a *answerSocket) port() (int, error) {
	var port int
	var serr error
	err := a.raw.rc.Control(func(fd uintptr) {
		var sa syscall.Sockaddr
		if sa, serr = syscall.Getsockname(int(fd)); serr != nil {
			return
		}
		switch sa := sa.(type) {
		case *syscall.SockaddrInet4:
			port = sa.Port
		case *syscall.SockaddrInet6:
			port = sa.Port
		}
	})
	if err != nil {
		return 0, err
	}
	return port, serr
}
