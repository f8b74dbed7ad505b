package transport

import (
	"sync"
	"sync/atomic"
	"time"
)

// FaultHooks inject faults into a node's inbound path, for tests and the
// in-process chaos scenarios. They are the only test branches in production
// code: a nil *FaultHooks costs one pointer check per inbound RPC.
//
// A blocked RPC hangs until the caller's deadline expires, with the listener
// and the TCP connection up: the caller sees silence, as with a link that
// drops packets without RST or FIN, not a refused connection.
type FaultHooks struct {
	blockIngress atomic.Bool
	delay        atomic.Int64 // nanoseconds added to every inbound Send
	mu           sync.Mutex
	blockedFrom  map[string]bool // caller names whose RPCs hang
}

// BlockIngress makes every inbound Send and every RPC of operator services
// (the Node service: Status, Check, Transfer, Watch) hang (true) or behave
// normally (false).
func (h *FaultHooks) BlockIngress(on bool) { h.blockIngress.Store(on) }

// BlockFrom makes inbound RPCs (Send and operator services) from the named
// node hang (true) or pass (false): one direction of one link is silently
// cut.
func (h *FaultHooks) BlockFrom(name string, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.blockedFrom == nil {
		h.blockedFrom = make(map[string]bool)
	}
	h.blockedFrom[name] = on
}

// SetInboundDelay delays every inbound Send by d before it is handled, which
// adds d to the round-trip time of every link into this node.
func (h *FaultHooks) SetInboundDelay(d time.Duration) { h.delay.Store(int64(d)) }

func (h *FaultHooks) blocks(caller string) bool {
	if h == nil {
		return false
	}
	if h.blockIngress.Load() {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.blockedFrom[caller]
}

func (h *FaultHooks) inboundDelay() time.Duration {
	if h == nil {
		return 0
	}
	return time.Duration(h.delay.Load())
}
