//go:build linux

package chaos

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Latency and jitter come from a TCP proxy in the path: this kernel has no
// sch_netem, and nftables can drop but not delay.
//
// Why not toxiproxy: its Proxy dials the upstream with net.Dial from a
// goroutine of its own, and a Go process can only be in one network
// namespace per OS thread, so in this process it would dial from the host's
// namespace, where the nodes' addresses do not exist. Using it would take a
// proxy process per namespace and its HTTP API to set toxics, plus its
// dependencies (gorilla/mux, zerolog, tomb). A delaying copy loop is a
// hundred lines, and here both its sockets are opened with netns.Do in the
// node's own namespace.
//
// Topology: node A reaches peer B at 127.0.0.1:8000+B in A's namespace,
// where A's proxy towards B listens; the proxy dials B's real address from
// A's namespace, so nftables faults on A's eth0 still apply. Latency on the
// link A -> B delays the bytes A writes on its connections to B and the
// bytes B writes back to A on B's connections to A: every byte that goes
// from A to B.

// linkDelay is the latency and jitter of one direction of one link.
type linkDelay struct {
	latency, jitter time.Duration
}

// linkTable holds the delay of every ordered pair of nodes.
type linkTable struct {
	n     int
	delay []atomic.Pointer[linkDelay]
}

func newLinkTable(n int) *linkTable {
	return &linkTable{n: n, delay: make([]atomic.Pointer[linkDelay], n*n)}
}

func (t *linkTable) set(from, to int, d linkDelay) { t.delay[from*t.n+to].Store(&d) }

func (t *linkTable) get(from, to int) linkDelay {
	if d := t.delay[from*t.n+to].Load(); d != nil {
		return *d
	}
	return linkDelay{}
}

// next draws the delay of one chunk: latency plus uniform jitter in
// [-jitter, +jitter].
func (d linkDelay) next() time.Duration {
	if d.jitter <= 0 {
		return d.latency
	}
	return d.latency - d.jitter + time.Duration(rand.Int64N(int64(2*d.jitter)+1))
}

// proxy forwards node from's connections towards node to.
type proxy struct {
	from, to int
	ln       net.Listener
	links    *linkTable
	mu       sync.Mutex
	conns    map[net.Conn]bool
	closed   bool
	wg       sync.WaitGroup
}

// startProxies starts one proxy per ordered pair of nodes.
func (c *cluster) startProxies() error {
	c.links = newLinkTable(len(c.nodes))
	for from := range c.nodes {
		for to := range c.nodes {
			if from == to {
				continue
			}
			p := &proxy{from: from, to: to, links: c.links, conns: map[net.Conn]bool{}}
			addr := fmt.Sprintf("127.0.0.1:%d", proxyPortBase+to)
			err := c.nw.Do(from, func() (err error) {
				p.ln, err = net.Listen("tcp", addr)
				return err
			})
			if err != nil {
				return fmt.Errorf("chaos: proxy %s -> %s: %w", nodeName(from), nodeName(to), err)
			}
			upstream := netip.AddrPortFrom(c.nodes[to].ip, peerPort).String()
			c.proxy = append(c.proxy, p)
			p.wg.Add(1)
			go p.serve(c, upstream)
		}
	}
	return nil
}

func (p *proxy) serve(c *cluster, upstream string) {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			ctx, cancel := contextWithTimeout(5 * time.Second)
			up, err := c.dialIn(ctx, p.from, upstream)
			cancel()
			if err != nil {
				down.Close()
				return
			}
			if !p.track(down, up) {
				return
			}
			var wg sync.WaitGroup
			wg.Go(func() { p.pipe(up, down, p.from, p.to) })
			wg.Go(func() { p.pipe(down, up, p.to, p.from) })
			wg.Wait()
			p.untrack(down, up)
		}()
	}
}

func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

func (p *proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

// chunk is bytes read at one moment, due for writing at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst, holding each chunk for the current delay of the
// link from -> to. Chunks keep their order (a TCP stream cannot reorder),
// so a chunk is never due before the one ahead of it. The queue between
// reader and writer is bounded: a full one stalls the reader, and TCP flow
// control pushes back on the sender, as a slow link would.
func (p *proxy) pipe(dst, src net.Conn, from, to int) {
	q := make(chan chunk, 256)
	go func() {
		defer close(q)
		var last time.Time
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				due := time.Now().Add(p.links.get(from, to).next())
				if due.Before(last) {
					due = last
				}
				last = due
				q <- chunk{b: buf[:n], due: due}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.due); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	// Either end closing ends both directions.
	dst.Close()
	src.Close()
	for range q {
	}
}

// Close stops listening and closes every connection of the proxy.
func (p *proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
