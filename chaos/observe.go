//go:build linux

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/raftelect/raftelect/eventlog"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

// tailer follows the event logs of the nodes as they grow: it is how the
// harness knows, while a run goes, who leads (roles are resolved from it)
// and what to print.
type tailer struct {
	mu      sync.Mutex
	files   []string
	offs    []int64
	partial [][]byte
	all     []eventlog.Event
	nodes   map[string]*nodeView
}

// nodeView is what a node last said about itself.
type nodeView struct {
	alive bool
	role  string
	term  uint64
	lease bool // holds the lease (lease_start without its lease_end)
}

func newTailer(files []string) *tailer {
	return &tailer{files: files, offs: make([]int64, len(files)), partial: make([][]byte, len(files)), nodes: map[string]*nodeView{}}
}

// poll reads whatever the logs gained and returns the new events, each
// file's in order.
func (t *tailer) poll() []eventlog.Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []eventlog.Event
	for i, name := range t.files {
		f, err := os.Open(name)
		if err != nil {
			continue // not created yet
		}
		if _, err := f.Seek(t.offs[i], io.SeekStart); err != nil {
			f.Close()
			continue
		}
		b, _ := io.ReadAll(f)
		f.Close()
		t.offs[i] += int64(len(b))
		b = append(t.partial[i], b...)
		for {
			nl := bytes.IndexByte(b, '\n')
			if nl < 0 {
				break
			}
			var e eventlog.Event
			if json.Unmarshal(b[:nl], &e) == nil {
				out = append(out, e)
			}
			b = b[nl+1:]
		}
		t.partial[i] = append([]byte(nil), b...)
	}
	for _, e := range out {
		v := t.nodes[e.Node]
		if v == nil {
			v = &nodeView{}
			t.nodes[e.Node] = v
		}
		switch e.Kind {
		case eventlog.KindStart:
			v.alive, v.role, v.term, v.lease = true, "", e.Term, false
		case eventlog.KindStop, eventlog.KindCrash:
			v.alive, v.role, v.lease = false, "", false
		case eventlog.KindLeaseStart:
			v.lease = true
		case eventlog.KindLeaseEnd:
			v.lease = false
		case eventlog.KindState:
			v.alive, v.role, v.term = true, e.Role, e.Term
		}
	}
	t.all = append(t.all, out...)
	return out
}

// leader returns the live node that says it leads in the highest term, or
// "" and that highest term.
func (t *tailer) leader() (string, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	best, term := "", uint64(0)
	for name, v := range t.nodes {
		if v.alive && v.role == roleLeader && (v.term > term || (v.term == term && name < best)) {
			best, term = name, v.term
		}
	}
	return best, term
}

// holdsLease reports whether node name is alive and holds the lease.
func (t *tailer) holdsLease(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.nodes[name]
	return v != nil && v.alive && v.lease
}

// agreed reports whether every node is alive in one term with one leader:
// the cluster has settled.
func (t *tailer) agreed(n int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.nodes) < n {
		return false
	}
	leaders, terms := 0, map[uint64]bool{}
	for _, v := range t.nodes {
		if !v.alive {
			return false
		}
		terms[v.term] = true
		if v.role == roleLeader {
			leaders++
		}
	}
	return leaders == 1 && len(terms) == 1
}

// alive reports whether n nodes have started and none has stopped.
func (t *tailer) alive(n int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.nodes) < n {
		return false
	}
	for _, v := range t.nodes {
		if !v.alive {
			return false
		}
	}
	return true
}

func (t *tailer) events() []eventlog.Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]eventlog.Event(nil), t.all...)
}

// statusPoller asks every node for its Status over gRPC with mutual TLS, as
// an operator, from inside its own namespace (so no network fault gets in the way), and
// keeps the highest queue depth and drop count it saw per node.
type statusPoller struct {
	c     *cluster
	conns []*grpc.ClientConn

	mu       sync.Mutex
	maxQueue []uint64
	drops    []uint64
}

func newStatusPoller(c *cluster) (*statusPoller, error) {
	tlsDir := filepath.Join(c.cfg.dir, "tls")
	creds, err := transport.LoadCredentials(filepath.Join(tlsDir, "ca.crt"), filepath.Join(tlsDir, operatorName+".crt"), filepath.Join(tlsDir, operatorName+".key"))
	if err != nil {
		return nil, err
	}
	sp := &statusPoller{c: c, maxQueue: make([]uint64, len(c.nodes)), drops: make([]uint64, len(c.nodes))}
	for i, p := range c.nodes {
		conn, err := grpc.NewClient(net.JoinHostPort(p.ip.String(), "7000"),
			grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig(p.name))),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return c.dialIn(ctx, i, addr) }))
		if err != nil {
			sp.close()
			return nil, err
		}
		sp.conns = append(sp.conns, conn)
	}
	return sp, nil
}

// poll asks every running, not stopped node once, in parallel, each
// within timeout.
func (sp *statusPoller) poll(ctx context.Context, timeout time.Duration) {
	var wg sync.WaitGroup
	for i, conn := range sp.conns {
		if sp.c.running(i) == nil || sp.c.isStopped(i) {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			resp, err := pb.NewNodeClient(conn).Status(ctx, &pb.StatusRequest{})
			if err != nil {
				return
			}
			var q, d uint64
			for _, p := range resp.GetNode().GetPeers() {
				q = max(q, p.GetQueueDepth())
				d += p.GetDrops()
			}
			sp.mu.Lock()
			sp.maxQueue[i] = max(sp.maxQueue[i], q)
			sp.drops[i] = max(sp.drops[i], d) // a restart resets the counter
			sp.mu.Unlock()
		})
	}
	wg.Wait()
}

func (sp *statusPoller) close() {
	for _, c := range sp.conns {
		c.Close()
	}
}
