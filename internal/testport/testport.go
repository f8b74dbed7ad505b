// Package testport hands tests loopback ports to listen on again and again
// (a node restarted on its address), from below the kernel's ephemeral
// range. A port from ":0" is an ephemeral one: while its node is down,
// every redial to it takes an ephemeral local port, and one of them may be
// that very port (a TCP self-connect, or a plain client socket), which then
// makes the node's restart fail with "address already in use". Below the
// range no client socket ever takes it.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Addr returns "127.0.0.1:PORT" for a port nobody listens on now, below
// the ephemeral range and not given out before by this process.
func Addr() (string, error) {
	lo, hi := 10000, ephemeralLow()-1
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		p := lo + rand.N(hi-lo+1)
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		given[p] = true
		return l.Addr().String(), nil
	}
	return "", fmt.Errorf("testport: no free loopback port in [%d, %d]", lo, hi)
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// where it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 10001 {
		return 32768
	}
	return n
}
