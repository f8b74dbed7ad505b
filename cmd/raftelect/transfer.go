package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/raftelect/raftelect/config"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

func init() { addCommand(newTransferCmd) }

type transferOptions struct {
	statusOptions
	to   string
	wait time.Duration
}

func newTransferCmd() *cobra.Command {
	var o transferOptions
	cmd := &cobra.Command{
		Use:   "transfer (--config node.yaml | --peers n1=host:port,... (--ca F --cert F --key F | --insecure)) [--to NODE]",
		Short: "Move leadership to another node",
		Long: `Find the leader (asking every node, each within --timeout) and ask it to hand
leadership over: to --to NODE, or, without --to, to the peer it judges best
(connected, heard from within the last few heartbeats, caught up with its
log). The old leader's lease ends before the transfer starts. The command
waits until another node leads, at most --wait (and the leader gives up
after a few election timeouts), then prints who leads and in which term.

The caller presents a member's certificate (--config uses this node's) or
an operator's (raftelect certs issue --operator, listed in every node's
operators).

Exit status: 0 when another node leads, 1 when no leader was found or the
transfer did not complete (the message says why and what to do), 2 on a
usage error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTransfer(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	addTargetFlags(cmd, &o.statusOptions)
	f.StringVar(&o.to, "to", "", "the node to hand leadership to (default: the leader chooses)")
	f.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait for the new leader")
	return cmd
}

// addTargetFlags adds the flags that say which nodes to ask and how:
// shared by status and transfer.
func addTargetFlags(cmd *cobra.Command, o *statusOptions) {
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", "", "take peers and TLS files from this node config")
	f.StringVar(&o.peers, "peers", "", "nodes to ask: n1=host:port,n2=host:port,...")
	// A member's certificate works, but an operator's is better: nodes
	// answer it and never take it for a peer. Nodes refuse certificates
	// that name neither.
	f.StringVar(&o.ca, "ca", os.Getenv("RAFTELECT_STATUS_CA"), "CA certificate (PEM) [$RAFTELECT_STATUS_CA]")
	f.StringVar(&o.cert, "cert", os.Getenv("RAFTELECT_STATUS_CERT"), "an operator certificate (`raftelect certs issue --operator`, listed in the nodes' operators) or a member's, signed by the CA [$RAFTELECT_STATUS_CERT]")
	f.StringVar(&o.key, "key", os.Getenv("RAFTELECT_STATUS_KEY"), "its key [$RAFTELECT_STATUS_KEY]")
	f.BoolVar(&o.insecure, "insecure", false, "connect without TLS (nodes run with insecure: true)")
	f.DurationVar(&o.timeout, "timeout", 2*time.Second, "deadline for each node's answer")
}

// dialNode makes a client for one node; it connects lazily, so every call
// on it needs a deadline.
func dialNode(p config.Peer, creds *transport.Credentials, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	tc := insecure.NewCredentials()
	if creds != nil {
		// The node's certificate carries its identity, which is its
		// name unless the config says otherwise.
		want := p.Name
		if p.Identity != "" {
			want = p.Identity
		}
		tc = credentials.NewTLS(creds.ClientConfig(want))
	}
	return grpc.NewClient(p.Address, append([]grpc.DialOption{grpc.WithTransportCredentials(tc)}, opts...)...)
}

func runTransfer(ctx context.Context, out io.Writer, o transferOptions) error {
	if o.timeout <= 0 {
		return usageError(fmt.Errorf("--timeout %v must be positive", o.timeout))
	}
	if o.wait <= 0 {
		return usageError(fmt.Errorf("--wait %v must be positive", o.wait))
	}
	peers, creds, err := statusTargets(o.statusOptions)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	rep := queryAll(ctx, peers, creds, o.timeout)
	// The nodes asked: those given, and the members added online.
	var names []string
	for _, n := range rep.Nodes {
		if !n.NotMember {
			names = append(names, n.Name)
		}
	}
	if o.to != "" && !slices.Contains(names, o.to) {
		return usageError(fmt.Errorf("--to %q: not among the nodes (%s)", o.to, strings.Join(names, ", ")))
	}
	var leader *config.Peer
	for _, n := range rep.Nodes {
		if n.OK && n.Role == "leader" && n.HoldsLease {
			// Possibly a member added online, which peers do not list.
			leader = &config.Peer{Name: n.Name, Address: n.Address, Identity: n.identity}
		}
	}
	if leader == nil {
		return failure(fmt.Errorf("no node holds the leader lease now (%s); nothing to transfer: run `raftelect status` and retry once a leader is elected", rep.problem()))
	}
	if leader.Name == o.to {
		return failure(fmt.Errorf("%s leads already; name another node with --to, or omit it", o.to))
	}
	conn, err := dialNode(*leader, creds)
	if err != nil {
		return failure(fmt.Errorf("%s: %w", leader.Name, err))
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, o.wait)
	defer cancel()
	start := time.Now()
	resp, err := pb.NewNodeClient(conn).Transfer(cctx, &pb.TransferRequest{To: o.to})
	took := time.Since(start)
	if err != nil {
		if s, ok := status.FromError(err); ok {
			return failure(fmt.Errorf("transfer from %s: %s (%s)", leader.Name, s.Message(), s.Code()))
		}
		return failure(fmt.Errorf("transfer from %s: %w", leader.Name, err))
	}
	if resp.GetLeader() == "" || resp.GetLeader() == leader.Name {
		return failure(errors.New("transfer answered, but no other node leads; run `raftelect status`"))
	}
	fmt.Fprintf(out, "leadership moved from %s to %s (term %d) in %v\n", leader.Name, resp.GetLeader(), resp.GetTerm(), shortDuration(took))
	return nil
}

func peerNames(peers []config.Peer) string {
	s := ""
	for i, p := range peers {
		if i > 0 {
			s += ", "
		}
		s += p.Name
	}
	return s
}
