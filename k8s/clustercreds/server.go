// Package clustercreds gives a multi-cluster operator's leader the
// credentials it needs to act in every cluster. Each raftelect node serves a
// payload for its own cluster (typically a kubeconfig with a scoped,
// short-lived ServiceAccount token), produced by a pluggable Fetcher; the
// leader fetches them over the raftelect peer channel and caches them.
//
// The service runs on the node's peer port, registered on the same gRPC
// server through election.Config.RegisterServices, so it is behind the same
// mutual TLS as raft itself: a caller without a certificate from the
// cluster's CA never reaches it. The caller is the member its certificate
// identifies by the cluster's configured identities and pins (the rule raft
// messages are checked by; see election.CallerMember). A Server refuses callers that are not members of the
// raftelect cluster and, unless AllowFollowers is set, every member but the
// leader this node knows of: a follower never holds another cluster's
// credentials.
//
// Wiring, on every node:
//
//	srv := clustercreds.NewServer(cfg.Peers, fetcher, clustercreds.ServerOptions{})
//	cfg.RegisterServices = srv.Register
//	e, _ := election.New(cfg)
//	srv.Bind(e)
//	creds, _ := clustercreds.NewClient(clustercreds.ClientConfig{Peers: cfg.Peers, TLS: cfg.TLS, Elector: e})
//	// while leading:
//	p, err := creds.Get(ctx, "eu-west-1")
package clustercreds

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftelect/raftelect/election"
	pb "github.com/raftelect/raftelect/k8s/proto/clustercreds/v1"
)

// Payload is one cluster's credentials.
type Payload struct {
	// Node is the raftelect node that served it.
	Node string
	// Data is opaque to raftelect: whatever the node's Fetcher produced.
	Data []byte
	// Expires is when Data stops being valid; zero if unknown. Clients
	// refresh their copy before then.
	Expires time.Time
}

// Fetcher produces this node's payload. It is called for every authorized
// Fetch (the leader caches), with the caller's node name, and must honour
// ctx. A real one typically asks its API server for a token
// (TokenRequest) and wraps it in a kubeconfig.
type Fetcher interface {
	Fetch(ctx context.Context, caller string) (Payload, error)
}

// FetcherFunc adapts a function to Fetcher.
type FetcherFunc func(ctx context.Context, caller string) (Payload, error)

// Fetch calls f.
func (f FetcherFunc) Fetch(ctx context.Context, caller string) (Payload, error) {
	return f(ctx, caller)
}

// ServerOptions tune a Server.
type ServerOptions struct {
	// AllowFollowers lets every member fetch, not only the leader this
	// node knows of. Off by default: only the leader needs the payloads.
	AllowFollowers bool
	// FetchTimeout bounds one call of the Fetcher (default 10s).
	FetchTimeout time.Duration
	// Logger receives refusals and fetcher errors (default: discard).
	Logger *slog.Logger
}

// Server serves this node's payload to authorized callers.
type Server struct {
	pb.UnimplementedClusterCredentialsServer
	members []string
	fetcher Fetcher
	opts    ServerOptions
	log     *slog.Logger
	elector atomic.Pointer[election.Elector]
}

// NewServer returns a server for a node of the cluster made of peers (the
// same list as election.Config.Peers).
func NewServer(peers []election.PeerConfig, f Fetcher, opts ServerOptions) *Server {
	s := &Server{fetcher: f, opts: opts, log: opts.Logger}
	for _, p := range peers {
		s.members = append(s.members, p.Name)
	}
	if s.opts.FetchTimeout <= 0 {
		s.opts.FetchTimeout = 10 * time.Second
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Register adds the service to a gRPC server; assign it to
// election.Config.RegisterServices.
func (s *Server) Register(r grpc.ServiceRegistrar) { pb.RegisterClusterCredentialsServer(r, s) }

// Bind tells the server which node it serves for, so that it can check who
// leads. Until then it refuses every caller (unless AllowFollowers).
func (s *Server) Bind(e *election.Elector) { s.elector.Store(e) }

// Fetch serves the payload to an authorized caller.
func (s *Server) Fetch(ctx context.Context, _ *pb.FetchRequest) (*pb.FetchResponse, error) {
	caller, err := s.authorize(ctx)
	if err != nil {
		s.log.Warn("cluster credentials refused", "caller", caller, "err", err)
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, s.opts.FetchTimeout)
	defer cancel()
	p, err := s.fetcher.Fetch(fctx, caller)
	if err != nil {
		s.log.Error("cluster credentials: fetcher failed", "caller", caller, "err", err)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, status.FromContextError(err).Err()
		}
		return nil, status.Errorf(codes.Unavailable, "fetcher failed: %v", err)
	}
	resp := &pb.FetchResponse{Payload: p.Data}
	if e := s.elector.Load(); e != nil {
		resp.Node = e.Name()
	}
	if !p.Expires.IsZero() {
		resp.ExpiresUnixNano = p.Expires.UnixNano()
	}
	return resp, nil
}

// authorize returns the caller's member name if it may fetch. The caller
// is named by this node's transport, by the configured identities and pins
// (election.CallerMember), not by its certificate's CommonName: with
// custom identities the two differ.
func (s *Server) authorize(ctx context.Context) (string, error) {
	caller, err := election.CallerMember(ctx)
	if err != nil {
		return "", err
	}
	if !slices.Contains(s.members, caller) {
		// The transport's table and ours come from the same peers: a
		// member there that is not one here means they were given
		// different lists.
		return caller, status.Errorf(codes.PermissionDenied, "%q is a member for the transport but not in this server's peers; give NewServer the same peers as election.Config", caller)
	}
	if s.opts.AllowFollowers {
		return caller, nil
	}
	e := s.elector.Load()
	if e == nil {
		return caller, status.Error(codes.Unavailable, "this node is not running yet")
	}
	if leader := e.Leader().Name; caller != leader {
		return caller, status.Errorf(codes.PermissionDenied, "%q is not the raftelect leader this node knows of (%q): only the leader may fetch", caller, leader)
	}
	return caller, nil
}
