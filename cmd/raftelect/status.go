package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/raftelect/raftelect/config"
	"github.com/raftelect/raftelect/metrics"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

func init() { addCommand(newStatusCmd) }

type statusOptions struct {
	config        string
	peers         string
	ca, cert, key string
	insecure      bool
	timeout       time.Duration
	output        string
	// --watch
	watch    bool
	interval time.Duration
	watchFor time.Duration
}

func newStatusCmd() *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status (--config node.yaml [--cert F --key F] | --peers n1=host:port,... (--ca F --cert F --key F | --insecure))",
		Short: "Show every node's role, term, leader and links",
		Long: `Ask every node for its status, in parallel, each with a deadline (--timeout),
and print one row per node. The command never waits longer than the timeout
(plus a moment to connect).

ROLE, TERM, LEADER and LEASE are each node's own answer. The peer columns
(REACHABLE, LAST-CONTACT, RTT, QUEUE, DROPS, CONFIG) describe the link to that
node as seen from the leader (from the first node that answered if no leader
did): whether the leader's last send to it succeeded, how long ago the two last
exchanged a message, the round trip of that send, how many messages wait in
the leader's queues for it, how many the leader dropped, and whether its
configuration agrees with the leader's (ok, unknown, or what differs:
cluster-id, membership, timings). A line under the table names the node they
are seen from; every difference any node sees follows, in words. -o json gives
every node's full view.

Nodes answer members' certificates and those of configured operators
(operators: in their configuration; raftelect certs issue --operator makes
one); any other certificate is refused (UNREACHABLE:auth). With --config,
the node's own certificate is used unless --cert and --key name another.

A node that does not answer shows UNREACHABLE:<class> (timeout, unavailable,
canceled, auth, other) and the error below the table.

Under the table: the members as the leader applied them (ROLE voter, learner
or witness; PRIORITY), the cluster ID, the preferred leader and the last
preferred move. The members are replicated and the given peers only
bootstrap: members added online that the peers lack are asked too, and a
given node that is no member is said to be one (if it is down, that is as it
should be, and not counted as a node that did not answer). A node whose
configured peers differ from the members says how.

With --watch the command keeps one stream open to every node (each dial and
first answer within --timeout; a node that is down is asked again after
100ms, then up to every 2s) and prints a line for every change as the nodes
report it: leader, no-leader, role, lease, down, up, link, missed. -o json
prints one JSON object per line instead.

Exit status: 0 when every node answered and all name the same leader, 1
otherwise, 2 on a usage error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runStatus(cmd.Context(), cmd.OutOrStdout(), o) },
	}
	f := cmd.Flags()
	addTargetFlags(cmd, &o)
	f.StringVarP(&o.output, "output", "o", "table", "table or json")
	f.BoolVarP(&o.watch, "watch", "w", false, "keep watching: stream every node's changes of leader, role, lease and links as they happen")
	f.DurationVar(&o.interval, "interval", time.Second, "with --watch: how often each node sends its status when nothing changed (keeps LAST-CONTACT current); a node silent for this plus --timeout is reported down")
	f.DurationVar(&o.watchFor, "watch-for", 0, "with --watch: stop after this long (default: until Ctrl-C or SIGTERM)")
	return cmd
}

// statusReport is the JSON output of `raftelect status -o json`.
type statusReport struct {
	// Leader and Term: the leader every answering node names, if they agree.
	Leader string `json:"leader"`
	Term   uint64 `json:"term"`
	// Agreed: every node answered and names the same, non-empty leader.
	Agreed bool `json:"agreed"`
	// ViewFrom: whose peer view fills the table's peer columns.
	ViewFrom string       `json:"view_from"`
	Nodes    []nodeReport `json:"nodes"`
}

type nodeReport struct {
	Name       string            `json:"name"`
	Address    string            `json:"address"`
	OK         bool              `json:"ok"`
	ErrorClass string            `json:"error_class,omitempty"`
	Error      string            `json:"error,omitempty"`
	Role       string            `json:"role,omitempty"`
	Term       uint64            `json:"term,omitempty"`
	Leader     string            `json:"leader,omitempty"`
	HoldsLease bool              `json:"holds_lease"`
	Labels     map[string]string `json:"labels,omitempty"`
	// ElectionsHeld: the node takes no part in elections because a member
	// disagrees with it on membership.
	ElectionsHeld bool `json:"elections_held,omitempty"`
	// Peers is this node's view of every other node.
	Peers []peerReport `json:"peers,omitempty"`

	// The members as this node applied them (nodes too old to answer
	// Members leave these empty), the cluster ID, the member leadership
	// returns to, why it last moved there, and how this node's configured
	// peers differ from the members.
	Members           []memberListReport `json:"members,omitempty"`
	ClusterID         string             `json:"cluster_id,omitempty"`
	PreferredLeader   string             `json:"preferred_leader,omitempty"`
	LastPreferredMove string             `json:"last_preferred_move,omitempty"`
	MembershipNote    string             `json:"membership_note,omitempty"`
	// NotMember: a node the command was told to ask that the cluster's
	// members do not include (removed, or never added); Configured: the
	// node came from --config or --peers, not only from the members.
	NotMember  bool `json:"not_member,omitempty"`
	Configured bool `json:"configured"`

	// identity is the name the node's certificate carries, for dialling
	// it again (transfer).
	identity string
}

type peerReport struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	// LastContactAgoSeconds is -1 if the two never exchanged a message.
	LastContactAgoSeconds float64 `json:"last_contact_ago_seconds"`
	RTTSeconds            float64 `json:"rtt_seconds"`
	QueueDepth            uint64  `json:"queue_depth"`
	Drops                 uint64  `json:"drops"`
	// ConfigMismatch: how the peer's configuration differs (cluster-id,
	// membership, timings); ConfigUnknown: not seen yet.
	ConfigMismatch []string `json:"config_mismatch,omitempty"`
	ConfigUnknown  bool     `json:"config_unknown,omitempty"`
	ConfigDetail   string   `json:"config_detail,omitempty"`
}

func runStatus(ctx context.Context, out io.Writer, o statusOptions) error {
	if o.output != "table" && o.output != "json" {
		return usageError(fmt.Errorf("--output %q: use table or json", o.output))
	}
	if o.timeout <= 0 {
		return usageError(fmt.Errorf("--timeout %v must be positive", o.timeout))
	}
	peers, creds, err := statusTargets(o)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if o.watch {
		return runWatch(ctx, out, o, peers, creds)
	}
	rep := queryAll(ctx, peers, creds, o.timeout)
	if o.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return failure(err)
		}
	} else {
		printStatusTable(out, rep)
	}
	if !rep.Agreed {
		return &exitError{code: exitFailure, err: errors.New(rep.problem())}
	}
	return nil
}

// statusTargets resolves which nodes to ask and with which credentials.
func statusTargets(o statusOptions) ([]config.Peer, *transport.Credentials, error) {
	switch {
	case o.config != "" && o.peers != "":
		return nil, nil, usageError(errors.New("give --config or --peers, not both"))
	case o.config != "":
		n, err := config.Load(o.config, config.LoadOptions{})
		if err != nil {
			return nil, nil, usageError(fmt.Errorf("invalid configuration:\n%w", err))
		}
		if o.cert != "" || o.key != "" {
			// The node's peers, an operator's certificate.
			if o.cert == "" || o.key == "" {
				return nil, nil, usageError(errors.New("--cert and --key go together"))
			}
			creds, err := transport.LoadCredentials(cmp.Or(o.ca, n.TLS.CAFile), o.cert, o.key)
			if err != nil {
				return nil, nil, usageError(err)
			}
			return n.Peers, creds, nil
		}
		creds, err := n.Credentials()
		if err != nil {
			return nil, nil, usageError(err)
		}
		return n.Peers, creds, nil
	case o.peers != "":
		peers, err := config.ParsePeers(o.peers)
		if err != nil {
			return nil, nil, usageError(fmt.Errorf("--peers: %w", err))
		}
		if len(peers) == 0 {
			return nil, nil, usageError(errors.New("--peers: no nodes given"))
		}
		if o.insecure {
			return peers, nil, nil
		}
		if o.ca == "" || o.cert == "" || o.key == "" {
			return nil, nil, usageError(errors.New("--peers needs --ca, --cert and --key (or --insecure)"))
		}
		creds, err := transport.LoadCredentials(o.ca, o.cert, o.key)
		if err != nil {
			return nil, nil, usageError(err)
		}
		return peers, creds, nil
	}
	return nil, nil, usageError(errors.New("give --config node.yaml or --peers n1=host:port,..."))
}

// queryAll asks every node in parallel, each within timeout; then, as
// the cluster's members are replicated and the given list only bootstraps,
// the members the answers name that were not given, and it marks the
// given nodes that are no members.
func queryAll(ctx context.Context, peers []config.Peer, creds *transport.Credentials, timeout time.Duration) statusReport {
	ask := func(peers []config.Peer) []nodeReport {
		nodes := make([]nodeReport, len(peers))
		var wg sync.WaitGroup
		for i, p := range peers {
			wg.Go(func() { nodes[i] = queryNode(ctx, p, creds, timeout) })
		}
		wg.Wait()
		return nodes
	}
	nodes := ask(peers)
	for i := range nodes {
		nodes[i].Configured = true
	}
	if members := appliedMembers(nodes); members != nil {
		var extra []config.Peer
		for _, m := range members {
			if !slices.ContainsFunc(peers, func(p config.Peer) bool { return p.Name == m.Name }) {
				extra = append(extra, config.Peer{Name: m.Name, Address: m.Address, Identity: m.Identity})
			}
		}
		nodes = append(nodes, ask(extra)...)
		for i := range nodes {
			nodes[i].NotMember = !slices.ContainsFunc(members, func(m memberListReport) bool { return m.Name == nodes[i].Name })
		}
	}
	return summarize(nodes)
}

// appliedMembers are the members as the leader applied them (as the first
// node that answered did, if no leader answered); nil if no node named
// any.
func appliedMembers(nodes []nodeReport) []memberListReport {
	var view *nodeReport
	for i := range nodes {
		n := &nodes[i]
		if n.OK && len(n.Members) > 0 && (view == nil || (n.Role == "leader" && view.Role != "leader")) {
			view = n
		}
	}
	if view == nil {
		return nil
	}
	return view.Members
}

// summarize fills in what the nodes' answers agree on, and whose view the
// peer columns show.
func summarize(nodes []nodeReport) statusReport {
	rep := statusReport{Nodes: nodes}
	leaders := map[string]bool{}
	all := true
	var view *nodeReport
	for i := range rep.Nodes {
		n := &rep.Nodes[i]
		if !n.OK {
			// A removed node that is down is as it should be.
			all = all && n.NotMember
			continue
		}
		leaders[n.Leader] = true
		rep.Term = max(rep.Term, n.Term)
		if view == nil || (n.Role == "leader" && view.Role != "leader") {
			view = n
		}
	}
	if len(leaders) == 1 {
		for l := range leaders {
			rep.Leader = l
		}
	}
	rep.Agreed = all && rep.Leader != ""
	if view != nil {
		rep.ViewFrom = view.Name
	}
	return rep
}

func queryNode(ctx context.Context, p config.Peer, creds *transport.Credentials, timeout time.Duration) nodeReport {
	conn, err := dialNode(p, creds)
	if err != nil {
		r := nodeReport{Name: p.Name, Address: p.Address}
		r.ErrorClass, r.Error = metrics.Classify(err), err.Error()
		return r
	}
	defer conn.Close()
	return queryConn(ctx, conn, p, timeout)
}

// queryConn asks one node for its status on conn, within timeout.
func queryConn(ctx context.Context, conn grpc.ClientConnInterface, p config.Peer, timeout time.Duration) nodeReport {
	r := nodeReport{Name: p.Name, Address: p.Address, identity: p.Identity}
	fail := func(err error) nodeReport {
		r.ErrorClass, r.Error = metrics.Classify(err), err.Error()
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := pb.NewNodeClient(conn).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return fail(err)
	}
	s := resp.GetNode()
	if s.GetName() != p.Name {
		return fail(fmt.Errorf("the node at %s says it is %q", p.Address, s.GetName()))
	}
	r = nodeFromStatus(p, s)
	// The members: a node of a release before online membership answers
	// Unimplemented, and shows none.
	if m, err := pb.NewNodeClient(conn).Members(ctx, &pb.MembersRequest{}); err == nil {
		lr := listReport(m)
		r.Members, r.ClusterID, r.PreferredLeader, r.LastPreferredMove, r.MembershipNote =
			lr.Members, lr.ClusterID, lr.PreferredLeader, m.GetLastPreferredMove(), lr.MembershipNote
	}
	return r
}

// nodeFromStatus is the report of a node that answered with status s.
func nodeFromStatus(p config.Peer, s *pb.NodeStatus) nodeReport {
	r := nodeReport{Name: p.Name, Address: p.Address, OK: true, identity: p.Identity}
	r.Role, r.Term, r.Leader, r.HoldsLease, r.Labels = s.GetRole(), s.GetTerm(), s.GetLeader(), s.GetHoldsLease(), s.GetLabels()
	r.ElectionsHeld = s.GetElectionsHeld()
	for _, ps := range s.GetPeers() {
		ago := -1.0
		if ps.GetLastContactAgoNs() >= 0 {
			ago = time.Duration(ps.GetLastContactAgoNs()).Seconds()
		}
		r.Peers = append(r.Peers, peerReport{
			Name: ps.GetName(), Address: ps.GetAddress(), Reachable: ps.GetReachable(),
			LastContactAgoSeconds: ago, RTTSeconds: time.Duration(ps.GetRttNs()).Seconds(),
			QueueDepth: ps.GetQueueDepth(), Drops: ps.GetDrops(),
			ConfigMismatch: ps.GetConfigMismatch(), ConfigUnknown: ps.GetConfigUnknown(), ConfigDetail: ps.GetConfigDetail(),
		})
	}
	return r
}

// problem says in one line why the report is not healthy.
func (r statusReport) problem() string {
	var down []string
	said := map[string][]string{}
	for _, n := range r.Nodes {
		if !n.OK {
			if !n.NotMember {
				down = append(down, n.Name)
			}
			continue
		}
		l := n.Leader
		if l == "" {
			l = "none"
		}
		said[l] = append(said[l], n.Name)
	}
	var parts []string
	if len(down) > 0 {
		parts = append(parts, "unreachable: "+strings.Join(down, ", "))
	}
	if len(said) == 0 {
		parts = append(parts, "no node answered")
	} else if len(said) != 1 || r.Leader == "" {
		var views []string
		for _, l := range slices.Sorted(mapKeys(said)) {
			views = append(views, fmt.Sprintf("%s say leader %s", strings.Join(said[l], ","), l))
		}
		parts = append(parts, "no single leader ("+strings.Join(views, "; ")+")")
	}
	return strings.Join(parts, "; ")
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func printStatusTable(out io.Writer, r statusReport) {
	var view *nodeReport
	for i := range r.Nodes {
		if r.Nodes[i].Name == r.ViewFrom {
			view = &r.Nodes[i]
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tROLE\tTERM\tLEADER\tLEASE\tREACHABLE\tLAST-CONTACT\tRTT\tQUEUE\tDROPS\tCONFIG")
	for _, n := range r.Nodes {
		if !n.OK {
			fmt.Fprintf(tw, "%s\t%s\tUNREACHABLE:%s\t-\t-\t-", n.Name, n.Address, n.ErrorClass)
		} else {
			lease, leader := "-", n.Leader
			if n.HoldsLease {
				lease = "held"
			}
			if leader == "" {
				leader = "none"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s", n.Name, n.Address, n.Role, n.Term, leader, lease)
		}
		var link *peerReport
		if view != nil {
			for i := range view.Peers {
				if view.Peers[i].Name == n.Name {
					link = &view.Peers[i]
				}
			}
		}
		switch {
		case view != nil && n.Name == view.Name:
			fmt.Fprint(tw, "\t(self)\t-\t-\t-\t-\t-\n")
		case link == nil:
			fmt.Fprint(tw, "\t-\t-\t-\t-\t-\t-\n")
		default:
			contact := "never"
			if link.LastContactAgoSeconds >= 0 {
				contact = shortDuration(time.Duration(link.LastContactAgoSeconds*float64(time.Second))) + " ago"
			}
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%d\t%d\t%s\n", yesNo(link.Reachable), contact,
				shortDuration(time.Duration(link.RTTSeconds*float64(time.Second))), link.QueueDepth, link.Drops, configColumn(link))
		}
	}
	tw.Flush()
	switch {
	case view == nil:
		fmt.Fprintln(out, "no node answered")
	case view.Role == "leader":
		fmt.Fprintf(out, "peer columns: as seen from %s (the leader)\n", view.Name)
	default:
		fmt.Fprintf(out, "peer columns: as seen from %s (no leader answered)\n", view.Name)
	}
	for _, n := range r.Nodes {
		if !n.OK {
			fmt.Fprintf(out, "%s: %s: %s\n", n.Name, n.ErrorClass, n.Error)
		}
	}
	printStatusMembers(out, r)
	// Configuration differences, in words, as each node that sees one
	// reports it: the view node's peers are not the whole story (a node
	// whose list differs may not be in the view node's list at all).
	for _, n := range r.Nodes {
		if n.ElectionsHeld {
			fmt.Fprintf(out, "%s: takes no part in elections while a member disagrees with it on membership\n", n.Name)
		}
		for _, p := range n.Peers {
			if p.ConfigDetail != "" {
				fmt.Fprintf(out, "%s about %s: %s: %s\n", n.Name, p.Name, strings.Join(p.ConfigMismatch, ","), p.ConfigDetail)
			}
		}
	}
}

// configColumn says whether a peer's configuration agrees with the view
// node's: ok, unknown (not seen yet), or the kinds that differ.
func configColumn(p *peerReport) string {
	switch {
	case len(p.ConfigMismatch) > 0:
		return strings.Join(p.ConfigMismatch, ",")
	case p.ConfigUnknown:
		return "unknown"
	}
	return "ok"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// shortDuration rounds d to about three significant digits.
func shortDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

// printStatusMembers prints the members as the leader applied them (the
// first node that answered, if no leader did), and what each node says of
// membership: nodes that are no members, configured peers that differ.
func printStatusMembers(out io.Writer, r statusReport) {
	var view *nodeReport
	for i := range r.Nodes {
		n := &r.Nodes[i]
		if n.OK && len(n.Members) > 0 && (view == nil || (n.Role == "leader" && view.Role != "leader")) {
			view = n
		}
	}
	if view == nil {
		return
	}
	fmt.Fprintf(out, "members, as %s applied them:\n", view.Name)
	lr := membersListReport{AnsweredBy: view.Name, Leader: view.Leader, Term: view.Term, ClusterID: view.ClusterID,
		PreferredLeader: view.PreferredLeader, Members: view.Members}
	// The leader that handed over records a preferred move: every node's.
	for _, n := range r.Nodes {
		if n.LastPreferredMove != "" {
			lr.LastPreferredMoves = append(lr.LastPreferredMoves, preferredMove{By: n.Name, Reason: n.LastPreferredMove})
		}
	}
	printMembersTable(out, lr, "  ")
	for _, n := range r.Nodes {
		switch {
		case n.NotMember:
			fmt.Fprintf(out, "%s: not a member (removed, or never added); take it out of the config files' peers, and stop it if it runs\n", n.Name)
		case !n.Configured:
			fmt.Fprintf(out, "%s: a member the given peers do not list (added online); asked at %s\n", n.Name, n.Address)
		}
		if n.MembershipNote != "" {
			fmt.Fprintf(out, "%s: its configured peers differ from the members (the members apply; update its config file to match): %s\n", n.Name, n.MembershipNote)
		}
	}
}
