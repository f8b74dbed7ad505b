package clustercreds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/raftelect/raftelect/election"
	pb "github.com/raftelect/raftelect/k8s/proto/clustercreds/v1"
	"github.com/raftelect/raftelect/transport"
)

// ErrNotLeader is returned by Client.Get on a node that does not hold the
// raftelect lease (when the Client was given an Elector).
var ErrNotLeader = errors.New("clustercreds: this node does not hold the raftelect lease")

// ClientConfig configures a Client.
type ClientConfig struct {
	// Peers are the nodes to fetch from (election.Config.Peers).
	Peers []election.PeerConfig
	// TLS is this node's certificate material (election.Config.TLS): the
	// servers authorize the member the certificate identifies.
	TLS election.TLSConfig
	// Elector, if set, makes Get refuse (ErrNotLeader) and drop every
	// cached payload whenever this node does not hold the lease.
	Elector *election.Elector
	// MaxAge: a cached payload older than this is fetched again (default
	// 5m). A payload with an expiry is also fetched again once less than
	// RefreshBefore (default 1m) of its validity remains.
	MaxAge        time.Duration
	RefreshBefore time.Duration
	// Timeout bounds one fetch (default 10s).
	Timeout time.Duration
	// Logger receives refresh failures (default: discard).
	Logger *slog.Logger
}

// Client fetches and caches the payloads of the cluster's nodes. It is safe
// for concurrent use; concurrent Gets for one node share one fetch.
type Client struct {
	cfg     ClientConfig
	creds   *transport.Credentials
	members *transport.Members
	log     *slog.Logger
	addrs   map[string]string

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	cache map[string]*entry
}

type entry struct {
	mu      sync.Mutex // held while fetching
	p       Payload
	fetched time.Time
}

// NewClient loads the TLS material and returns a Client. Connections are
// made on first use.
func NewClient(cfg ClientConfig) (*Client, error) {
	creds, err := transport.LoadCredentials(cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("clustercreds: %w", err)
	}
	// Servers are verified by their configured identities and pins, as
	// the transport verifies its peers.
	var tps []transport.Peer
	for _, p := range cfg.Peers {
		tps = append(tps, transport.Peer{Name: p.Name, Identity: p.Identity, PublicKeyPins: p.PublicKeyPins})
	}
	members, err := transport.NewMembers(tps)
	if err != nil {
		return nil, fmt.Errorf("clustercreds: %w", err)
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 5 * time.Minute
	}
	if cfg.RefreshBefore <= 0 {
		cfg.RefreshBefore = time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	c := &Client{
		cfg: cfg, creds: creds, members: members, log: cfg.Logger, addrs: map[string]string{},
		conns: map[string]*grpc.ClientConn{}, cache: map[string]*entry{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for _, p := range cfg.Peers {
		c.addrs[p.Name] = p.Address
	}
	return c, nil
}

// Get returns node's payload, from the cache while it is fresh. If a
// refresh fails while the cached payload has not expired yet, Get returns
// the cached one and logs the failure.
func (c *Client) Get(ctx context.Context, node string) (Payload, error) {
	if c.cfg.Elector != nil && !c.cfg.Elector.IsLeader() {
		c.Forget()
		return Payload{}, ErrNotLeader
	}
	if _, ok := c.addrs[node]; !ok {
		return Payload{}, fmt.Errorf("clustercreds: %q is not a peer", node)
	}
	c.mu.Lock()
	e := c.cache[node]
	if e == nil {
		e = &entry{}
		c.cache[node] = e
	}
	c.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if c.fresh(e, now) {
		return e.p, nil
	}
	p, err := c.fetch(ctx, node)
	if err != nil {
		if !e.fetched.IsZero() && (e.p.Expires.IsZero() || now.Before(e.p.Expires)) && now.Sub(e.fetched) < 2*c.cfg.MaxAge {
			c.log.Warn("cluster credentials: refresh failed; using the cached payload", "node", node, "err", err)
			return e.p, nil
		}
		return Payload{}, err
	}
	// Leadership may have ended during the fetch: keep nothing then.
	if c.cfg.Elector != nil && !c.cfg.Elector.IsLeader() {
		c.Forget()
		return Payload{}, ErrNotLeader
	}
	e.p, e.fetched = p, now
	return p, nil
}

// GetAll fetches every node's payload in parallel and returns those it got,
// with the errors of the others joined.
func (c *Client) GetAll(ctx context.Context) (map[string]Payload, error) {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		out  = map[string]Payload{}
		errs []error
	)
	for name := range c.addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := c.Get(ctx, name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				return
			}
			out[name] = p
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Forget drops every cached payload; call it when leadership ends (Get does
// when it was given the Elector).
func (c *Client) Forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.cache)
}

// Close closes the connections.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for name, conn := range c.conns {
		errs = append(errs, conn.Close())
		delete(c.conns, name)
	}
	clear(c.cache)
	return errors.Join(errs...)
}

func (c *Client) fresh(e *entry, now time.Time) bool {
	if e.fetched.IsZero() || now.Sub(e.fetched) >= c.cfg.MaxAge {
		return false
	}
	return e.p.Expires.IsZero() || now.Before(e.p.Expires.Add(-c.cfg.RefreshBefore))
}

func (c *Client) fetch(ctx context.Context, node string) (Payload, error) {
	conn, err := c.conn(node)
	if err != nil {
		return Payload{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := pb.NewClusterCredentialsClient(conn).Fetch(ctx, &pb.FetchRequest{})
	if err != nil {
		return Payload{}, fmt.Errorf("clustercreds: fetch from %s: %w", node, err)
	}
	p := Payload{Node: node, Data: resp.GetPayload()}
	if ns := resp.GetExpiresUnixNano(); ns != 0 {
		p.Expires = time.Unix(0, ns)
	}
	return p, nil
}

func (c *Client) conn(node string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn := c.conns[node]; conn != nil {
		return conn, nil
	}
	conn, err := grpc.NewClient(c.addrs[node], grpc.WithTransportCredentials(credentials.NewTLS(c.creds.ClientConfigFor(c.members, node))))
	if err != nil {
		return nil, fmt.Errorf("clustercreds: connect to %s: %w", node, err)
	}
	c.conns[node] = conn
	return conn, nil
}
