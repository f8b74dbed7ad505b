//go:build !linux

package transport

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

// answerSocket is Linux only (datagram_linux.go): elsewhere answers come
// to the datagram socket and are read as they come.
const deferredAnswersSupported = false

type answerSocket struct {
	raw  rawSender
	peer netip.AddrPort
}

func openAnswerSocket(*net.UDPConn, netip.AddrPort) (*answerSocket, error) {
	return nil, errors.ErrUnsupported
}

func (a *answerSocket) recv([]byte) (int, netip.AddrPort, time.Time, error) {
	return 0, netip.AddrPort{}, time.Time{}, errNoAnswer
}

func (a *answerSocket) close() error { return nil }

func (a *answerSocket) port() (int, error) { return 0, errors.ErrUnsupported }
