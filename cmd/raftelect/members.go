package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftelect/raftelect/config"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
	"github.com/raftelect/raftelect/transport"
)

func init() { addCommand(newMembersCmd) }

// membersOptions are the flags every members subcommand shares.
type membersOptions struct {
	statusOptions
	// node: the node to ask first ("": with --config, the config's own
	// node; else the first of --peers).
	node string
	wait time.Duration
}

const membersExitCodes = `Exit status: 0 when done (or nothing to do), 1 when no node answered or the
cluster refused or could not make the change (the message says why and what
to do), 2 on a usage error or a request the cluster refuses as invalid (an
unknown member, a witness with a priority; nothing changed), 3 when --wait
ran out while the change was under way (it goes on by itself: a learner is
promoted once it has caught up; see raftelect members list).`

func newMembersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members (list | add NAME --address host:port | remove NAME)",
		Short: "List, add, replace and remove the cluster's members while it runs",
		Long: `The cluster's members are replicated through raft: after the first start, the
peers of the config files only bootstrap, and members change online with these
commands (docs/operations.md, "Changing the members").

Any node may be asked (with --config, the config's own node first; --node
names another): a node that does not lead answers with the leader's name, and
the command asks the leader, saying so. The caller presents a member's
certificate (--config uses its node's) or an operator's (raftelect certs issue
--operator, listed in every node's operators).`,
	}
	cmd.AddCommand(newMembersListCmd(), newMembersAddCmd(), newMembersRemoveCmd())
	return cmd
}

func addMembersFlags(cmd *cobra.Command, o *membersOptions, change bool) {
	addTargetFlags(cmd, &o.statusOptions)
	cmd.Flags().StringVar(&o.node, "node", "", "ask this node first (default: with --config, the config's own node; else the first of --peers)")
	if change {
		cmd.Flags().DurationVar(&o.wait, "wait", 2*time.Minute, "how long to wait for the change to complete (exit 3 if it is still under way then)")
	}
}

func newMembersListCmd() *cobra.Command {
	var o membersOptions
	cmd := &cobra.Command{
		Use:   "list (--config node.yaml | --peers n1=host:port,... (--ca F --cert F --key F | --insecure))",
		Short: "Show the members as the leader applied them",
		Long: `Print the cluster's members as the leader applied them (as the node asked
applied them if no leader answers): NAME, ADDRESS, ROLE (voter, learner: added
and catching up, witness: a voter that never leads) and PRIORITY; then the
leader and its term, the cluster ID (what a node that joins needs as its
cluster_id), the preferred leader, why leadership last moved to it, and how the
configured peers of the node that answered differ from the members, if they do.

Exit status: 0 when a node answered, 1 when none did, 2 on a usage error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMembersList(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	addMembersFlags(cmd, &o, false)
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", "table or json")
	return cmd
}

type memberAddOptions struct {
	membersOptions
	address, identity string
	pins              []string
	witness           bool
	priority          int
	replaces          string
}

func newMembersAddCmd() *cobra.Command {
	var o memberAddOptions
	cmd := &cobra.Command{
		Use:   "add NAME --address host:port [--identity ID] [--pin sha256:HEX] [--witness | --priority N] [--replaces OLD] (--config node.yaml | --peers ...)",
		Short: "Add a member (it joins as a learner and becomes a voter once caught up), or replace one",
		Long: `Add NAME to the cluster. Start it first, or soon after, with an empty data
directory and join: true (raftelect run --join --cluster-id ID; members list
prints the ID). It joins as a learner: it receives the log but neither votes
nor counts for the lease, and the leader promotes it to voter once it has
caught up. The command waits for that, printing on stderr what it waits for.

--replaces OLD makes NAME a voter and removes OLD in one joint change, alive or
dead (a lost region's node), so no configuration in between has fewer voters.
OLD may lead: it hands leadership to a member that stays, then stops; the
command then follows the change through the other members.

--witness: a voter that never leads, for a third site that only breaks ties.
--priority N (1-1000): leadership returns to the healthy voter of the highest
priority once the cluster has been stable for fail_back_after.

` + membersExitCodes,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMembersAdd(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	addMembersFlags(cmd, &o.membersOptions, true)
	f := cmd.Flags()
	f.StringVar(&o.address, "address", "", "host:port of the new member's peer listener, as the other members reach it (required)")
	f.StringVar(&o.identity, "identity", "", "the name its certificate carries (CommonName or DNS SAN), if not NAME")
	f.StringSliceVar(&o.pins, "pin", nil, "pin of its public key, sha256:HEX (raftelect certs pin); repeat for two while rotating")
	f.BoolVar(&o.witness, "witness", false, "a voter that never leads (takes no --priority)")
	f.IntVar(&o.priority, "priority", 0, "0-1000: leadership returns to the healthy voter of the highest priority")
	f.StringVar(&o.replaces, "replaces", "", "the voter NAME replaces: one joint change makes NAME a voter and removes it")
	return cmd
}

func newMembersRemoveCmd() *cobra.Command {
	var o membersOptions
	cmd := &cobra.Command{
		Use:   "remove NAME (--config node.yaml | --peers ...)",
		Short: "Remove a member, alive or dead",
		Long: `Remove NAME from the cluster, alive or dead, and wait until the leader applied
the removal. The change needs a quorum of the current members to commit. The
leader refuses a removal that would leave fewer reachable voters than a
majority of those that remain. If NAME leads, leadership is first handed to
another member (as raftelect transfer does), then NAME is removed. A removed
node that still runs is refused by the others and stops; to bring it back,
give it an empty data directory, start it with join: true and add it again.

` + membersExitCodes,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMembersRemove(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	addMembersFlags(cmd, &o, true)
	return cmd
}

// notSelf refuses to remove the member whose certificate the command
// presents: the members refuse a removed member's certificate, so the
// command could not follow the change to its end.
func (s *membersSession) notSelf(name string) error {
	if name != s.self {
		return nil
	}
	return usageError(fmt.Errorf("%s is the member whose certificate this command presents (--config %s): once it is removed the members refuse that certificate and the command could not follow the change; use another member's config, or an operator's certificate (--cert, --key)", name, s.o.config))
}

// pendingError: the change was made but had not completed when --wait ran
// out (exit 3).
func pendingError(err error) error { return &exitError{code: exitPending, err: err} }

// memberNode is one node the command talks to.
type memberNode struct {
	peer   config.Peer
	conn   *grpc.ClientConn
	client pb.NodeClient
}

func (n *memberNode) close() {
	if n != nil && n.conn != nil {
		_ = n.conn.Close()
	}
}

// membersSession holds what every subcommand needs: the credentials, the
// per-answer timeout, and the node it talks to.
type membersSession struct {
	o     membersOptions
	creds *transport.Credentials
	peers []config.Peer
	// asked: the node the request goes to; view: its last Members answer;
	// answers: every node's first answer (nil if it gave none).
	asked   *memberNode
	view    *pb.MembersResponse
	answers []*pb.MembersResponse
	// self: the member whose certificate the session presents ("" for
	// an operator's, or one given with --cert).
	self string
	// opened: every connection this session made, closed at the end.
	opened []*memberNode
}

func (s *membersSession) close() {
	for _, n := range s.opened {
		n.close()
	}
}

func (s *membersSession) dial(p config.Peer) (*memberNode, error) {
	for _, n := range s.opened {
		if n.peer.Name == p.Name && n.peer.Address == p.Address && n.peer.Identity == p.Identity {
			return n, nil
		}
	}
	conn, err := dialNode(p, s.creds)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	n := &memberNode{peer: p, conn: conn, client: pb.NewNodeClient(conn)}
	s.opened = append(s.opened, n)
	return n, nil
}

// members asks n for the members, within the per-answer timeout.
func (s *membersSession) members(ctx context.Context, n *memberNode) (*pb.MembersResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.timeout)
	defer cancel()
	resp, err := n.client.Members(ctx, &pb.MembersRequest{})
	if err != nil {
		return nil, err
	}
	if resp.GetNode() != n.peer.Name {
		return nil, fmt.Errorf("the node at %s says it is %q", n.peer.Address, resp.GetNode())
	}
	return resp, nil
}

// openMembersSession resolves the targets and finds a node that answers:
// all are asked in parallel, and the first in order (--node, then the
// config's own node, then the list) that answered is used.
func openMembersSession(ctx context.Context, o membersOptions) (*membersSession, error) {
	if o.timeout <= 0 {
		return nil, usageError(fmt.Errorf("--timeout %v must be positive", o.timeout))
	}
	peers, creds, err := statusTargets(o.statusOptions)
	if err != nil {
		return nil, err
	}
	first := o.node
	if first == "" && o.config != "" {
		if n, err := config.Load(o.config, config.LoadOptions{}); err == nil {
			first = n.Name
		}
	}
	if o.node != "" && !slices.ContainsFunc(peers, func(p config.Peer) bool { return p.Name == o.node }) {
		return nil, usageError(fmt.Errorf("--node %q: not among the nodes (%s)", o.node, peerNames(peers)))
	}
	if i := slices.IndexFunc(peers, func(p config.Peer) bool { return p.Name == first }); i > 0 {
		peers = append([]config.Peer{peers[i]}, slices.Delete(slices.Clone(peers), i, i+1)...)
	}
	s := &membersSession{o: o, creds: creds, peers: peers}
	if o.config != "" && o.cert == "" {
		s.self = first
	}
	nodes := make([]*memberNode, len(peers))
	answers := make([]*pb.MembersResponse, len(peers))
	errs := make([]error, len(peers))
	for i, p := range peers {
		if nodes[i], errs[i] = s.dial(p); errs[i] != nil {
			continue
		}
	}
	var wg sync.WaitGroup
	for i := range peers {
		if nodes[i] == nil {
			continue
		}
		wg.Go(func() { answers[i], errs[i] = s.members(ctx, nodes[i]) })
	}
	wg.Wait()
	var why []string
	s.answers = answers
	for i := range peers {
		if answers[i] != nil {
			s.asked, s.view = nodes[i], answers[i]
			return s, nil
		}
		why = append(why, fmt.Sprintf("%s: %s", peers[i].Name, describeRPCError(errs[i])))
	}
	s.close()
	return nil, failure(fmt.Errorf("no node answered (%s); check that the nodes run and that your certificate is a member's or a configured operator's", strings.Join(why, "; ")))
}

// describeRPCError is an RPC error in words: the node's message and its code.
func describeRPCError(err error) string {
	if st, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s (%s)", st.Message(), st.Code())
	}
	return err.Error()
}

// leaderNode returns a client for the member leader, dialling it at the
// address view records for it.
func (s *membersSession) leaderNode(view *pb.MembersResponse, leader string) (*memberNode, error) {
	if leader == s.asked.peer.Name {
		return s.asked, nil
	}
	m := findMember(view, leader)
	if m == nil || m.GetAddress() == "" {
		return nil, fmt.Errorf("%s names %s as leader but has no address for it", view.GetNode(), leader)
	}
	return s.dial(config.Peer{Name: m.GetName(), Address: m.GetAddress(), Identity: m.GetIdentity()})
}

// toLeader moves the session to the leader, if the node asked knows one
// and it answers; it says so on progress.
func (s *membersSession) toLeader(ctx context.Context, progress io.Writer) error {
	if s.view.GetLeader() == "" || s.view.GetLeader() == s.asked.peer.Name {
		return nil
	}
	ln, err := s.leaderNode(s.view, s.view.GetLeader())
	if err != nil {
		return err
	}
	resp, err := s.members(ctx, ln)
	if err != nil {
		return fmt.Errorf("%s says %s leads, but %s did not answer: %s", s.asked.peer.Name, ln.peer.Name, ln.peer.Name, describeRPCError(err))
	}
	if progress != nil {
		fmt.Fprintf(progress, "%s is not the leader; asking the leader %s at %s\n", s.asked.peer.Name, ln.peer.Name, ln.peer.Address)
	}
	s.asked, s.view = ln, resp
	return nil
}

func findMember(view *pb.MembersResponse, name string) *pb.ClusterMember {
	for _, m := range view.GetMembers() {
		if m.GetName() == name {
			return m
		}
	}
	return nil
}

func memberNames(view *pb.MembersResponse) string {
	var names []string
	for _, m := range view.GetMembers() {
		names = append(names, m.GetName())
	}
	return strings.Join(names, ", ")
}

func roleOf(m *pb.ClusterMember) string {
	switch {
	case m.GetLearner():
		return "learner"
	case m.GetWitness():
		return "witness"
	}
	return "voter"
}

// membersListReport is the JSON output of `raftelect members list -o json`.
type membersListReport struct {
	// AnsweredBy: the node whose view this is (the leader when it answered).
	AnsweredBy      string `json:"answered_by"`
	Leader          string `json:"leader"`
	Term            uint64 `json:"term"`
	ClusterID       string `json:"cluster_id"`
	PreferredLeader string `json:"preferred_leader,omitempty"`
	// LastPreferredMoves: why leadership last moved to the preferred
	// member, from each node that answered and moved it (the leader that
	// hands over records it, not the member that takes over).
	LastPreferredMoves []preferredMove    `json:"last_preferred_moves,omitempty"`
	MembershipNote     string             `json:"membership_note,omitempty"`
	Members            []memberListReport `json:"members"`
}

type preferredMove struct {
	By     string `json:"by"`
	Reason string `json:"reason"`
}

type memberListReport struct {
	Name          string   `json:"name"`
	Address       string   `json:"address"`
	Identity      string   `json:"identity,omitempty"`
	PublicKeyPins []string `json:"public_key_pins,omitempty"`
	// Role: voter, learner or witness.
	Role     string `json:"role"`
	Priority int32  `json:"priority"`
}

func listReport(v *pb.MembersResponse) membersListReport {
	r := membersListReport{AnsweredBy: v.GetNode(), Leader: v.GetLeader(), Term: v.GetTerm(), ClusterID: v.GetClusterId(),
		PreferredLeader: v.GetPreferredLeader(), MembershipNote: v.GetMembershipNote(),
		Members: []memberListReport{}}
	if mv := v.GetLastPreferredMove(); mv != "" {
		r.LastPreferredMoves = []preferredMove{{By: v.GetNode(), Reason: mv}}
	}
	for _, m := range v.GetMembers() {
		r.Members = append(r.Members, memberListReport{Name: m.GetName(), Address: m.GetAddress(), Identity: m.GetIdentity(),
			PublicKeyPins: m.GetPublicKeyPins(), Role: roleOf(m), Priority: m.GetPriority()})
	}
	return r
}

func runMembersList(ctx context.Context, out io.Writer, o membersOptions) error {
	if o.output != "table" && o.output != "json" {
		return usageError(fmt.Errorf("--output %q: use table or json", o.output))
	}
	ctx = cmp.Or(ctx, context.Background())
	s, err := openMembersSession(ctx, o)
	if err != nil {
		return err
	}
	defer s.close()
	// The leader's view: a follower's may be a change behind. If the
	// leader does not answer, the node's own view is still worth showing.
	leaderErr := s.toLeader(ctx, nil)
	r := listReport(s.view)
	// Preferred moves are recorded by the leader that handed over: show
	// every node's.
	for _, a := range s.answers {
		if a != nil && a.GetNode() != s.view.GetNode() && a.GetLastPreferredMove() != "" {
			r.LastPreferredMoves = append(r.LastPreferredMoves, preferredMove{By: a.GetNode(), Reason: a.GetLastPreferredMove()})
		}
	}
	if o.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return failure(err)
		}
		return nil
	}
	printMembersTable(out, r, "")
	if leaderErr != nil {
		fmt.Fprintf(out, "(as %s applied them: %v)\n", r.AnsweredBy, leaderErr)
	}
	return nil
}

// printMembersTable prints the members and what goes with them; indent
// prefixes every line (status prints it under its own table).
func printMembersTable(out io.Writer, r membersListReport, indent string) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%sNAME\tADDRESS\tROLE\tPRIORITY\n", indent)
	for _, m := range r.Members {
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%d\n", indent, m.Name, m.Address, m.Role, m.Priority)
	}
	tw.Flush()
	if indent == "" {
		leader := cmp.Or(r.Leader, "none")
		fmt.Fprintf(out, "leader: %s (term %d), as %s applied the members\n", leader, r.Term, r.AnsweredBy)
	}
	if r.ClusterID != "" {
		fmt.Fprintf(out, "%scluster ID: %s\n", indent, r.ClusterID)
	}
	fmt.Fprintf(out, "%spreferred leader: %s\n", indent, cmp.Or(r.PreferredLeader, "none (no member has a priority)"))
	for _, mv := range r.LastPreferredMoves {
		fmt.Fprintf(out, "%slast preferred move, by %s: %s\n", indent, mv.By, mv.Reason)
	}
	if r.MembershipNote != "" {
		fmt.Fprintf(out, "%s%s: its configured peers differ from the members (the members apply; update its config file to match): %s\n", indent, r.AnsweredBy, r.MembershipNote)
	}
}

func runMembersAdd(ctx context.Context, out, progress io.Writer, name string, o memberAddOptions) error {
	m := &pb.ClusterMember{Name: name, Address: o.address, Identity: o.identity, PublicKeyPins: o.pins,
		Witness: o.witness, Priority: int32(o.priority)}
	if err := validateAddFlags(m, o); err != nil {
		return usageError(err)
	}
	if o.wait <= 0 {
		return usageError(fmt.Errorf("--wait %v must be positive", o.wait))
	}
	ctx = cmp.Or(ctx, context.Background())
	s, err := openMembersSession(ctx, o.membersOptions)
	if err != nil {
		return err
	}
	defer s.close()
	if o.replaces != "" && findMember(s.view, o.replaces) == nil {
		return usageError(fmt.Errorf("--replaces %s: not a member (members: %s)", o.replaces, memberNames(s.view)))
	}
	if o.replaces != "" {
		if err := s.notSelf(o.replaces); err != nil {
			return err
		}
	}
	if cur := findMember(s.view, name); cur != nil && o.replaces == "" {
		if !cur.GetLearner() {
			fmt.Fprintf(out, "%s is a member already (%s at %s); nothing to do\n", name, roleOf(cur), cur.GetAddress())
			return nil
		}
		// Added earlier, still a learner: wait for its promotion, as the
		// first call would have.
		fmt.Fprintf(progress, "%s was added already and is still a learner; waiting for the leader to promote it\n", name)
		wctx, cancel := context.WithTimeout(ctx, o.wait)
		defer cancel()
		return s.awaitChange(wctx, out, progress, addGoal(name, ""), time.Now())
	}
	req := &pb.AddMemberRequest{Member: m, Replaces: o.replaces}
	call := func(ctx context.Context, n *memberNode) error {
		_, err := n.client.AddMember(ctx, req)
		return err
	}
	return s.change(ctx, out, progress, addGoal(name, o.replaces), call)
}

func validateAddFlags(m *pb.ClusterMember, o memberAddOptions) error {
	name := m.GetName()
	switch {
	case name == "":
		return errors.New("members add: NAME is empty")
	case o.address == "":
		return fmt.Errorf("members add %s: --address is required: host:port of %s's peer listener, as the other members reach it", name, name)
	case !isHostPort(o.address):
		return fmt.Errorf("--address %q is not host:port", o.address)
	case o.witness && o.priority != 0:
		return fmt.Errorf("members add %s: a witness never leads, so it takes no priority; drop --priority or --witness", name)
	case o.priority < 0 || o.priority > 1000:
		return fmt.Errorf("--priority %d is outside 0..1000", o.priority)
	case o.replaces == name:
		return fmt.Errorf("--replaces %s: a member cannot replace itself; to move it, add it under another name with --replaces %s", name, name)
	}
	for _, p := range o.pins {
		if _, err := transport.ParsePin(p); err != nil {
			return fmt.Errorf("--pin: %w", err)
		}
	}
	return nil
}

func isHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	return err == nil && port != ""
}

func runMembersRemove(ctx context.Context, out, progress io.Writer, name string, o membersOptions) error {
	if o.wait <= 0 {
		return usageError(fmt.Errorf("--wait %v must be positive", o.wait))
	}
	ctx = cmp.Or(ctx, context.Background())
	s, err := openMembersSession(ctx, o)
	if err != nil {
		return err
	}
	defer s.close()
	if findMember(s.view, name) == nil {
		return usageError(fmt.Errorf("%s is not a member (members: %s); nothing to remove", name, memberNames(s.view)))
	}
	if err := s.notSelf(name); err != nil {
		return err
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, o.wait)
	defer cancel()
	if s.view.GetLeader() == name {
		// The leader does not remove itself: hand leadership over first,
		// as `raftelect transfer` does, then ask the new leader.
		fmt.Fprintf(progress, "%s leads: handing leadership to another member first (transfer), then removing it\n", name)
		ln, err := s.leaderNode(s.view, name)
		if err != nil {
			return failure(err)
		}
		resp, err := ln.client.Transfer(wctx, &pb.TransferRequest{})
		if err != nil {
			return failure(fmt.Errorf("%s leads and could not hand leadership over, so it was not removed: %s; run `raftelect status`, then try again", name, describeRPCError(err)))
		}
		if resp.GetLeader() == "" || resp.GetLeader() == name {
			return failure(fmt.Errorf("%s leads and no other member took over, so it was not removed; run `raftelect status`, then try again", name))
		}
		fmt.Fprintf(progress, "leadership moved from %s to %s (term %d); removing %s\n", name, resp.GetLeader(), resp.GetTerm(), name)
		// Ask the new leader, at the address the members record.
		if s.asked, err = s.leaderNode(s.view, resp.GetLeader()); err != nil {
			return failure(err)
		}
	}
	req := &pb.RemoveMemberRequest{Name: name}
	call := func(ctx context.Context, n *memberNode) error {
		_, err := n.client.RemoveMember(ctx, req)
		return err
	}
	return s.changeFrom(wctx, out, progress, removeGoal(name), call, start)
}

// goal is what a change waits for, read from a Members answer.
type goal struct {
	// done reports whether the change completed; else it says what it
	// waits for.
	check func(v *pb.MembersResponse) (done bool, waiting string)
	// doneMsg is printed on stdout when it completed.
	doneMsg func(v *pb.MembersResponse, took time.Duration) string
}

func addGoal(name, replaces string) goal {
	return goal{
		check: func(v *pb.MembersResponse) (bool, string) {
			m := findMember(v, name)
			switch {
			case m == nil:
				return false, fmt.Sprintf("waiting for the addition of %s to commit (a quorum of the current members must acknowledge it)", name)
			case m.GetLearner():
				return false, fmt.Sprintf("%s is a learner, catching up with the log; the leader promotes it to voter once it has caught up (is it running, with join: true?)", name)
			case replaces != "" && findMember(v, replaces) != nil:
				return false, fmt.Sprintf("%s is a voter; waiting for %s to leave (the joint change commits with a quorum of both the old and the new voters)", name, replaces)
			}
			return true, ""
		},
		doneMsg: func(v *pb.MembersResponse, took time.Duration) string {
			m := findMember(v, name)
			what := "added"
			if replaces != "" {
				what = "replaced " + replaces
			}
			return fmt.Sprintf("%s %s: %s at %s, in %v; members: %s\n", name, what, roleOf(m), m.GetAddress(), shortDuration(took), memberNames(v))
		},
	}
}

func removeGoal(name string) goal {
	return goal{
		check: func(v *pb.MembersResponse) (bool, string) {
			if findMember(v, name) != nil {
				return false, fmt.Sprintf("waiting for the removal of %s to commit (it needs a quorum of the current members)", name)
			}
			return true, ""
		},
		doneMsg: func(v *pb.MembersResponse, took time.Duration) string {
			return fmt.Sprintf("%s removed in %v; members: %s\n", name, shortDuration(took), memberNames(v))
		},
	}
}

// change sends a change, with --wait as its deadline.
func (s *membersSession) change(ctx context.Context, out, progress io.Writer, g goal, call func(context.Context, *memberNode) error) error {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, s.o.wait)
	defer cancel()
	return s.changeFrom(wctx, out, progress, g, call, start)
}

// changeFrom sends the change to the node asked; if it does not lead, to
// the leader it names, once. While the call runs, the leader's members are
// polled and what the change waits for is printed on progress. A node
// stops waiting after its own bound; the command then goes on polling until
// ctx ends.
func (s *membersSession) changeFrom(ctx context.Context, out, progress io.Writer, g goal, call func(context.Context, *memberNode) error, start time.Time) error {
	err := s.callWatching(ctx, progress, g, call, start)
	if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
		// Not the leader: ask it again, for the leader's name and address.
		view, verr := s.members(ctx, s.asked)
		if verr != nil || view.GetLeader() == "" || view.GetLeader() == s.asked.peer.Name {
			return failure(fmt.Errorf("%s: %s; no leader to ask now: run `raftelect status`, then try again", s.asked.peer.Name, st.Message()))
		}
		ln, lerr := s.leaderNode(view, view.GetLeader())
		if lerr != nil {
			return failure(lerr)
		}
		fmt.Fprintf(progress, "%s is not the leader; asking the leader %s at %s\n", s.asked.peer.Name, ln.peer.Name, ln.peer.Address)
		s.asked = ln
		err = s.callWatching(ctx, progress, g, call, start)
		if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
			return failure(fmt.Errorf("%s: %s; leadership moved while asking: try again", ln.peer.Name, st.Message()))
		}
	}
	uncertain := ""
	if err != nil {
		st, _ := status.FromError(err)
		switch st.Code() {
		case codes.DeadlineExceeded:
			// The node stopped waiting (its own bound) or ours ran out:
			// the change is under way.
		case codes.Unavailable, codes.Canceled, codes.Unknown, codes.Internal:
			// The node went away during the call: it may have taken the
			// change and then stopped (a replaced leader does), or not.
			// The members tell.
			uncertain = fmt.Sprintf("%s stopped answering during the request (%s)", s.asked.peer.Name, describeRPCError(err))
			fmt.Fprintf(progress, "%s; asking the other members whether the change was made\n", uncertain)
		default:
			return changeFailure(s.asked.peer.Name, err)
		}
	}
	return s.awaitChangeOrUnknown(ctx, out, progress, g, start, uncertain)
}

// clusterMembers asks the node asked for the members; if it does not
// answer (a removed node stops), the other members of the last answer, and
// moves the session to the first that does.
func (s *membersSession) clusterMembers(ctx context.Context) (*pb.MembersResponse, error) {
	v, err := s.members(ctx, s.asked)
	if err == nil {
		s.view = v
		return v, nil
	}
	for _, m := range s.view.GetMembers() {
		if m.GetName() == s.asked.peer.Name || m.GetAddress() == "" {
			continue
		}
		n, derr := s.dial(config.Peer{Name: m.GetName(), Address: m.GetAddress(), Identity: m.GetIdentity()})
		if derr != nil {
			continue
		}
		if v, merr := s.members(ctx, n); merr == nil {
			s.asked, s.view = n, v
			return v, nil
		}
	}
	return nil, err
}

// changeFailure maps a refused change to an exit code and a message.
func changeFailure(node string, err error) error {
	st, _ := status.FromError(err)
	msg := fmt.Errorf("%s refused: %s", node, st.Message())
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound:
		return usageError(msg)
	case codes.Aborted:
		return failure(msg)
	case codes.PermissionDenied, codes.Unauthenticated:
		return failure(fmt.Errorf("%w; use a member's certificate or an operator's listed in every node's operators (`raftelect certs issue --operator`)", msg))
	}
	return failure(fmt.Errorf("%s: %s", node, describeRPCError(err)))
}

// callWatching runs call on the node asked while printing progress.
func (s *membersSession) callWatching(ctx context.Context, progress io.Writer, g goal, call func(context.Context, *memberNode) error, start time.Time) error {
	n := s.asked
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { s.watchProgress(ctx, stop, progress, n, g, start) })
	err := call(ctx, n)
	close(stop)
	wg.Wait()
	return err
}

// progressEvery: how often the members are polled while a change runs, and
// (at most) how often an unchanged wait is repeated.
const (
	progressPoll   = 250 * time.Millisecond
	progressRepeat = 5 * time.Second
)

// watchProgress polls n's members until stop closes and prints what the
// change waits for whenever that changes, and every progressRepeat.
func (s *membersSession) watchProgress(ctx context.Context, stop <-chan struct{}, progress io.Writer, n *memberNode, g goal, start time.Time) {
	t := time.NewTicker(progressPoll)
	defer t.Stop()
	var last string
	var said time.Time
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		v, err := s.members(ctx, n)
		if err != nil {
			continue
		}
		done, waiting := g.check(v)
		if done {
			continue
		}
		if waiting != last || time.Since(said) >= progressRepeat {
			fmt.Fprintf(progress, "[%v] %s\n", shortDuration(time.Since(start).Round(100*time.Millisecond)), waiting)
			last, said = waiting, time.Now()
		}
	}
}

// awaitChange polls the members until the change completed or ctx ends.
func (s *membersSession) awaitChange(ctx context.Context, out, progress io.Writer, g goal, start time.Time) error {
	return s.awaitChangeOrUnknown(ctx, out, progress, g, start, "")
}

// awaitChangeOrUnknown is awaitChange; uncertain, if set, says why the
// change may not have been made at all (exit 1 rather than 3 if it is not
// seen done).
func (s *membersSession) awaitChangeOrUnknown(ctx context.Context, out, progress io.Writer, g goal, start time.Time, uncertain string) error {
	var last string
	var said time.Time
	var view *pb.MembersResponse
	for {
		v, err := s.clusterMembers(context.WithoutCancel(ctx))
		if err == nil {
			view = v
			done, waiting := g.check(v)
			if done {
				fmt.Fprint(out, g.doneMsg(v, time.Since(start)))
				return nil
			}
			if waiting != last || time.Since(said) >= progressRepeat {
				fmt.Fprintf(progress, "[%v] %s\n", shortDuration(time.Since(start).Round(100*time.Millisecond)), waiting)
				last, said = waiting, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			// The leader took the change (it refuses at once otherwise),
			// so it is under way: it commits once a quorum acknowledges
			// it, and a learner is promoted once it has caught up.
			if uncertain != "" {
				return failure(fmt.Errorf("not done within --wait (%v): %s; %s, so it may not have been made: `raftelect members list` shows whether it was", s.o.wait, cmp.Or(last, "no member answered"), uncertain))
			}
			if view == nil {
				return pendingError(fmt.Errorf("not done within --wait (%v), and %s does not answer now (%s): the change it took goes on by itself; `raftelect members list` shows it", s.o.wait, s.asked.peer.Name, describeRPCError(err)))
			}
			return pendingError(fmt.Errorf("not done within --wait (%v): %s. The change goes on by itself: `raftelect members list` shows it; to give up on a member that never catches up, remove it (`raftelect members remove`)", s.o.wait, last))
		case <-time.After(progressPoll):
		}
	}
}
