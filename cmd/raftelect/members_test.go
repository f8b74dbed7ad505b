package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftelect/raftelect/config"
)

// follower returns a node of rep that does not lead.
func (c *cluster) follower(rep statusReport) *proc {
	for _, n := range rep.Nodes {
		if n.Name != rep.Leader {
			return c.node(n.Name)
		}
	}
	return nil
}

// operatorArgs issues the operator certificate "ops" (every node of
// startCluster lists it) and returns the flags that present it to rep's
// nodes.
func (c *cluster) operatorArgs(t *testing.T, rep statusReport) []string {
	t.Helper()
	certDir := filepath.Join(c.dir, "certs")
	if r := raftelect(t, "certs", "issue", "--dir", certDir, "--operator", "--name", "ops"); r.code != 0 {
		t.Fatalf("certs issue --operator: %+v", r)
	}
	var peers []string
	for _, n := range rep.Nodes {
		peers = append(peers, n.Name+"="+n.Address)
	}
	return []string{"--peers", strings.Join(peers, ","), "--ca", filepath.Join(certDir, "ca.crt"),
		"--cert", filepath.Join(certDir, "ops.crt"), "--key", filepath.Join(certDir, "ops.key")}
}

// TestMembers_ListAndBadRequests: `members list` asked through a follower
// shows the members as the leader applied them, the leader and the cluster
// ID, with a member's certificate and with an operator's; a certificate
// naming neither gets nothing. Bad requests are refused with exit 2 and a
// message that says what to do, and change nothing; a request a follower
// cannot serve goes to the leader, saying so.
func TestMembers_ListAndBadRequests(t *testing.T) {
	c := startCluster(t)
	rep := c.agreedLeader(t, 30*time.Second)
	f := c.follower(rep)

	r := raftelect(t, "members", "list", "--config", f.cfg)
	t.Logf("members list --config %s.yaml: exit %d\n%s%s", f.name, r.code, r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("members list: exit %d: %s", r.code, r.stderr)
	}
	for _, n := range rep.Nodes {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^%s +%s +voter +0$`, n.Name, regexp.QuoteMeta(n.Address))).MatchString(r.stdout) {
			t.Errorf("members list lacks the row of %s at %s as a voter:\n%s", n.Name, n.Address, r.stdout)
		}
	}
	// The leader's view, whoever leads by now (a loaded machine may have
	// elected another since).
	if m := regexp.MustCompile(`(?m)^leader: (\S+) \(term \d+\), as (\S+) applied the members$`).FindStringSubmatch(r.stdout); m == nil || m[1] != m[2] || m[1] == "none" {
		t.Errorf("members list from follower %s: want the view of the leader it names in:\n%s", f.name, r.stdout)
	}
	if !regexp.MustCompile(`(?m)^cluster ID: [0-9a-f]{32}$`).MatchString(r.stdout) {
		t.Errorf("members list shows no cluster ID:\n%s", r.stdout)
	}

	ops := c.operatorArgs(t, rep)
	r = raftelect(t, append([]string{"members", "list", "-o", "json"}, ops...)...)
	var lr membersListReport
	if err := json.Unmarshal([]byte(r.stdout), &lr); err != nil || r.code != 0 {
		t.Fatalf("members list -o json as the operator: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if len(lr.Members) != 3 || lr.Leader == "" || lr.AnsweredBy != lr.Leader || len(lr.ClusterID) != 32 {
		t.Errorf("members list -o json as the operator: %+v; want 3 members, the leader answering", lr)
	}

	certDir := filepath.Join(c.dir, "certs")
	if r := raftelect(t, "certs", "issue", "--dir", certDir, "--name", "stranger", "--host", "127.0.0.1"); r.code != 0 {
		t.Fatalf("certs issue stranger: %+v", r)
	}
	stranger := append([]string{"members", "list"}, ops...)
	stranger[len(stranger)-3], stranger[len(stranger)-1] = filepath.Join(certDir, "stranger.crt"), filepath.Join(certDir, "stranger.key")
	r = raftelect(t, stranger...)
	if r.code != 1 || !strings.Contains(r.stderr, "no node answered") || !strings.Contains(r.stderr, "names no member of this cluster and no configured operator") {
		t.Errorf("members list as a stranger: exit %d, %q; want 1, every node refusing it", r.code, r.stderr)
	}

	// Bad requests: exit 2, what to do, nothing changed.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"remove", "n9"}, "n9 is not a member (members: n1, n2, n3); nothing to remove"},
		{[]string{"add", "n4"}, "members add n4: --address is required: host:port of n4's peer listener"},
		{[]string{"add", "n4", "--address", "127.0.0.1"}, `--address "127.0.0.1" is not host:port`},
		{[]string{"add", "n4", "--address", "127.0.0.1:1", "--witness", "--priority", "5"}, "a witness never leads, so it takes no priority; drop --priority or --witness"},
		{[]string{"add", "n4", "--address", "127.0.0.1:1", "--priority", "1001"}, "--priority 1001 is outside 0..1000"},
		{[]string{"add", "n4", "--address", "127.0.0.1:1", "--replaces", "n9"}, "--replaces n9: not a member (members: n1, n2, n3)"},
		{[]string{"add", "n4", "--address", "127.0.0.1:1", "--pin", "sha256:ab"}, "--pin: public key pin"},
		{[]string{"add"}, "accepts 1 arg(s), received 0"},
	} {
		r := raftelect(t, append(append([]string{"members"}, tt.args...), "--config", f.cfg, "--wait", "10s")...)
		t.Logf("members %s: exit %d: %s%s", strings.Join(tt.args, " "), r.code, r.stdout, r.stderr)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("members %s: exit %d, %q; want 2 and %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.want)
		}
	}
	r = raftelect(t, "members", "add", "n2", "--address", "127.0.0.1:1", "--config", f.cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "n2 is a member already (voter at ") {
		t.Errorf("members add of a member: exit %d, %q %q; want 0, nothing to do", r.code, r.stdout, r.stderr)
	}

	// A request only the leader can judge, sent to a follower: the
	// follower answers with the leader's name, the command asks the leader,
	// saying so, and the leader refuses it (a field over 512 bytes).
	// Retried if the node picked led by the time it was asked.
	long := strings.Repeat("x", 600)
	eventually(t, 30*time.Second, "a follower to send a request on to the leader", func() error {
		f := c.follower(c.agreedLeader(t, 30*time.Second))
		r := raftelect(t, "members", "add", "n4", "--address", "127.0.0.1:1", "--identity", long, "--config", f.cfg)
		if r.code != 2 || !strings.Contains(r.stderr, "a field is longer than 512 bytes") {
			t.Fatalf("members add with a long identity: exit %d, %q; want 2, refused by the leader", r.code, r.stderr)
		}
		if !regexp.MustCompile(`(?m)^` + f.name + ` is not the leader; asking the leader \S+ at \S+$`).MatchString(r.stderr) {
			return fmt.Errorf("no redirect from %s: %s", f.name, r.stderr)
		}
		t.Logf("members add with a long identity via %s: exit %d: %s", f.name, r.code, r.stderr)
		return nil
	})
	r = raftelect(t, "members", "list", "--config", f.cfg, "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &lr); err != nil || len(lr.Members) != 3 {
		t.Errorf("after the refused requests: %v %+v; want the 3 members unchanged", err, lr)
	}
}

// scrape reads one unlabelled sample from p's /metrics (-1 if absent).
func scrape(t *testing.T, p *proc, series string) float64 {
	t.Helper()
	code, body, err := p.get("/metrics")
	if err != nil || code != 200 {
		t.Fatalf("%s /metrics: %d %v", p.name, code, err)
	}
	return metricValue(body, series)
}

// TestMembers_FailBackToThePreferredLeader: with priority 10 on n1 and
// fail_back_after 2s in the config files, leadership moved away from n1 (by
// transfer) returns to it by itself; members list and status show the
// priority, the preferred leader and the move with its reason, from the
// node that handed over; that node's raftelect_preferred_leader_moves_total
// counts the move, and raftelect_voters and raftelect_learners the members.
func TestMembers_FailBackToThePreferredLeader(t *testing.T) {
	c := startClusterWith(t, func(n *config.Node) {
		n.Peers[0].Priority = 10
		n.FailBackAfter = config.Duration(2 * time.Second)
	})
	n1, n2 := c.node("n1"), c.node("n2")
	if n1 == nil || n2 == nil || c.nodes[0] != n1 {
		t.Fatalf("startCluster's nodes are not n1, n2, n3: %v", c.nodes)
	}
	leads := func(name string, above uint64) statusReport {
		var rep statusReport
		eventually(t, 60*time.Second, name+" leads", func() error {
			rep = c.agreedLeader(t, 30*time.Second)
			if rep.Leader != name || rep.Term <= above {
				return fmt.Errorf("%s leads in term %d", rep.Leader, rep.Term)
			}
			return nil
		})
		return rep
	}
	rep := leads("n1", 0) // whoever was elected first, n1 ends up leading
	before := scrape(t, n2, "raftelect_preferred_leader_moves_total")
	if r := raftelect(t, "transfer", "--config", n1.cfg, "--to", "n2"); r.code != 0 {
		t.Fatalf("transfer --to n2: exit %d: %s", r.code, r.stderr)
	}
	back := leads("n1", rep.Term+1)
	t.Logf("leadership returned to n1 in term %d (moved to n2 from term %d)", back.Term, rep.Term)

	r := raftelect(t, "members", "list", "--config", c.node("n3").cfg)
	t.Logf("members list:\n%s%s", r.stdout, r.stderr)
	for _, re := range []string{
		`(?m)^n1 +\S+ +voter +10$`,
		`(?m)^n2 +\S+ +voter +0$`,
		`(?m)^preferred leader: n1$`,
		`(?m)^last preferred move, by n2: fail-back to preferred member n1 \(priority 10 > 0\): it has acknowledged every heartbeat for \S+, and this leader held its lease for \S+$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("members list lacks %s", re)
		}
	}
	r = raftelect(t, "status", "--config", n1.cfg)
	if !strings.Contains(r.stdout, "members, as n1 applied them:") || !regexp.MustCompile(`(?m)^  last preferred move, by n2: fail-back to preferred member n1`).MatchString(r.stdout) {
		t.Errorf("status lacks the members or the move:\n%s", r.stdout)
	}
	if after := scrape(t, n2, "raftelect_preferred_leader_moves_total"); after != before+1 {
		t.Errorf("n2's raftelect_preferred_leader_moves_total went from %v to %v; want one more", before, after)
	}
	if v, l := scrape(t, n1, "raftelect_voters"), scrape(t, n1, "raftelect_learners"); v != 3 || l != 0 {
		t.Errorf("n1: raftelect_voters %v, raftelect_learners %v; want 3 and 0", v, l)
	}
}

// joiner writes the config of a node that joins c (join: true, the
// cluster ID, peers: the members it may hear from and itself), issues its
// certificate and starts it.
func (c *cluster) joiner(t *testing.T, name, clusterID string, members []config.Peer) *proc {
	t.Helper()
	certDir := filepath.Join(c.dir, "certs")
	if r := raftelect(t, "certs", "issue", "--dir", certDir, "--name", name, "--host", "127.0.0.1"); r.code != 0 {
		t.Fatalf("certs issue %s: %+v", name, r)
	}
	ports := freePorts(t, 2)
	self := config.Peer{Name: name, Address: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	p := &proc{name: name, httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		cfg: filepath.Join(c.dir, name+".yaml"), log: filepath.Join(c.dir, name+".log")}
	cfg := &config.Node{
		Name: name, Peers: append(slices.Clone(members), self), Join: true, ClusterID: clusterID,
		HeartbeatInterval: config.Duration(100 * time.Millisecond), ElectionTimeout: config.Duration(time.Second),
		TLS:     config.TLS{CAFile: "certs/ca.crt", CertFile: "certs/" + name + ".crt", KeyFile: "certs/" + name + ".key"},
		DataDir: "data/" + name, HTTPAddress: p.httpAddr, Log: config.Log{Format: "json"}, Operators: []string{"ops"},
	}
	if err := cfg.WriteFile(p.cfg); err != nil {
		t.Fatal(err)
	}
	p.start(t)
	c.nodes = append(c.nodes, p)
	return p
}

// listMembers is `members list -o json` through the node of cfg.
func listMembers(t *testing.T, cfg string) membersListReport {
	t.Helper()
	r := raftelect(t, "members", "list", "--config", cfg, "-o", "json")
	var lr membersListReport
	if err := json.Unmarshal([]byte(r.stdout), &lr); err != nil || r.code != 0 {
		t.Fatalf("members list: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	return lr
}

// stoppedRemoved waits until p exits by itself with exit code 4, saying
// it was removed.
func stoppedRemoved(t *testing.T, p *proc) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s, removed, still runs after 30s", p.name)
	}
	b, _ := os.ReadFile(p.log)
	if p.exitCode != exitRemoved || !strings.Contains(string(b), "removed") {
		t.Errorf("%s exited %d; want %d, saying it was removed:\n%s", p.name, p.exitCode, exitRemoved, b)
	}
}

// TestMembers_GrowReplaceAndShrink: on three real nodes with TLS, a node
// started with join is added from a follower (the follower sends the
// command on to the leader, saying so) and becomes a voter; a member is
// replaced in one joint change with an operator's certificate; removing the
// leader transfers leadership first, then removes it; removed nodes stop by
// themselves; status follows the members rather than the config files; and
// a removal that would leave fewer reachable voters than a quorum is
// refused and changes nothing.
func TestMembers_GrowReplaceAndShrink(t *testing.T) {
	c := startCluster(t)
	rep := c.agreedLeader(t, 30*time.Second)
	f := c.follower(rep)
	lr := listMembers(t, f.cfg)
	var members []config.Peer
	for _, m := range lr.Members {
		members = append(members, config.Peer{Name: m.Name, Address: m.Address})
	}

	// A member that never catches up (nothing listens at its address)
	// stays a learner: --wait runs out with exit 3, saying what the change
	// waits for; removing it gives up on it.
	r := raftelect(t, "members", "add", "n9", "--address", "127.0.0.1:1", "--config", f.cfg, "--wait", "3s")
	t.Logf("members add n9 (not running): exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if r.code != 3 || !strings.Contains(r.stderr, "not done within --wait (3s): n9 is a learner, catching up with the log") {
		t.Fatalf("members add n9 (not running): exit %d, %q; want 3, a learner catching up", r.code, r.stderr)
	}
	if r := raftelect(t, "members", "remove", "n9", "--config", f.cfg); r.code != 0 || !strings.HasPrefix(r.stdout, "n9 removed in ") {
		t.Fatalf("members remove n9 (a learner): exit %d, %q %q", r.code, r.stdout, r.stderr)
	}

	// Grow: n4 joins, added through a follower with its member certificate.
	n4 := c.joiner(t, "n4", lr.ClusterID, members)
	f = c.follower(c.agreedLeader(t, 30*time.Second))
	n4cfg, err := config.Load(n4.cfg, config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n4addr := n4cfg.Peers[len(n4cfg.Peers)-1].Address
	r = raftelect(t, "members", "add", "n4", "--address", n4addr, "--config", f.cfg, "--wait", "60s")
	t.Logf("members add n4 via %s: exit %d\n%s%s", f.name, r.code, r.stdout, r.stderr)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "n4 added: voter at "+n4addr) {
		t.Fatalf("members add n4: exit %d, %q; want 0 and n4 a voter", r.code, r.stdout)
	}
	if want := f.name + " is not the leader; asking the leader "; !strings.Contains(r.stderr, want) {
		t.Errorf("members add via follower %s: stderr lacks %q", f.name, want)
	}

	// Replace: n5 takes the place of a follower, with the operator's
	// certificate; the replaced node stops by itself.
	ops := c.operatorArgs(t, rep)
	members = append(members, config.Peer{Name: "n4", Address: n4addr})
	old := f
	n5 := c.joiner(t, "n5", lr.ClusterID, members)
	n5cfg, err := config.Load(n5.cfg, config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n5addr := n5cfg.Peers[len(n5cfg.Peers)-1].Address
	r = raftelect(t, append([]string{"members", "add", "n5", "--address", n5addr, "--replaces", old.name, "--wait", "60s"}, ops...)...)
	t.Logf("members add n5 --replaces %s: exit %d\n%s%s", old.name, r.code, r.stdout, r.stderr)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "n5 replaced "+old.name+": voter at "+n5addr) {
		t.Fatalf("members add n5 --replaces %s: exit %d, %q", old.name, r.code, r.stdout)
	}
	stoppedRemoved(t, old)

	// Replace the leader itself: it hands leadership to a member that
	// stays and stops; the command follows the change through the others.
	// As an operator: a removed member's certificate stops working.
	members = append(members, config.Peer{Name: "n5", Address: n5addr})
	n6 := c.joiner(t, "n6", lr.ClusterID, members)
	n6cfg, err := config.Load(n6.cfg, config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n6addr := n6cfg.Peers[len(n6cfg.Peers)-1].Address
	replaced := c.agreedLeaderOf(t, n4.cfg).Leader
	r = raftelect(t, append([]string{"members", "add", "n6", "--address", n6addr, "--replaces", replaced, "--wait", "60s"}, ops...)...)
	t.Logf("members add n6 --replaces %s (the leader): exit %d\n%s%s", replaced, r.code, r.stdout, r.stderr)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "n6 replaced "+replaced+": voter at "+n6addr) {
		t.Fatalf("members add n6 --replaces %s (the leader): exit %d, %q", replaced, r.code, r.stdout)
	}
	stoppedRemoved(t, c.node(replaced))

	// A member's own certificate cannot remove it: the members would
	// refuse it before the command saw the change through.
	r = raftelect(t, "members", "remove", "n4", "--config", n4.cfg)
	if r.code != 2 || !strings.Contains(r.stderr, "n4 is the member whose certificate this command presents") {
		t.Errorf("members remove n4 with n4's config: exit %d, %q; want 2, saying to use another's certificate", r.code, r.stderr)
	}

	// Shrink: remove the leader, through a member that stays (its
	// certificate keeps working).
	leader := c.agreedLeaderOf(t, n6.cfg)
	var via *proc
	for _, m := range listMembers(t, n6.cfg).Members {
		if m.Name != leader.Leader && via == nil {
			via = c.node(m.Name)
		}
	}
	viaCfg, err := config.Load(via.cfg, config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r = raftelect(t, "members", "remove", leader.Leader, "--config", via.cfg, "--wait", "60s")
	t.Logf("members remove %s: exit %d\n%s%s", leader.Leader, r.code, r.stdout, r.stderr)
	if r.code != 0 || !strings.HasPrefix(r.stdout, leader.Leader+" removed in ") {
		t.Fatalf("members remove %s: exit %d, %q", leader.Leader, r.code, r.stdout)
	}
	if want := leader.Leader + " leads: handing leadership to another member first (transfer), then removing it"; !strings.Contains(r.stderr, want) {
		t.Errorf("members remove of the leader: stderr lacks %q", want)
	}
	stoppedRemoved(t, c.node(leader.Leader))

	lr = listMembers(t, via.cfg)
	var names []string
	for _, m := range lr.Members {
		names = append(names, m.Name+":"+m.Role)
		if m.Role != "voter" || m.Name == old.name || m.Name == replaced || m.Name == leader.Leader {
			t.Errorf("member %s (%s) after the changes", m.Name, m.Role)
		}
	}
	if len(names) != 3 {
		t.Errorf("members after grow, replaces and remove: %v; want 3 voters", names)
	}
	// Every file lists n1-n3, and the follower replaced first was one of
	// them: the leader's file differs from the members, and it says so.
	if !regexp.MustCompile(`configured but not members: \[[^]]*\b` + old.name + `\b`).MatchString(lr.MembershipNote) {
		t.Errorf("%s's membership note %q; want %s named as configured but no member", lr.AnsweredBy, lr.MembershipNote, old.name)
	}
	// Status through a config that lists removed nodes: they are named as
	// no members and, down, do not make it fail.
	r = raftelect(t, "status", "--config", via.cfg)
	t.Logf("status:\n%s%s", r.stdout, r.stderr)
	if r.code != 0 || !strings.Contains(r.stdout, old.name+": not a member") {
		t.Errorf("status after the changes: exit %d; want 0, %s named no member", r.code, old.name)
	}
	// Members that file does not list (added later) are asked all the
	// same.
	for _, m := range lr.Members {
		if !slices.ContainsFunc(viaCfg.Peers, func(p config.Peer) bool { return p.Name == m.Name }) &&
			!strings.Contains(r.stdout, m.Name+": a member the given peers do not list (added online); asked at "+m.Address) {
			t.Errorf("status after the changes does not say it asked %s, a member %s's file lacks", m.Name, via.name)
		}
	}

	// With one of the three voters down, removing another would leave one
	// reachable voter of two: refused, nothing changed.
	var down, keep string
	for _, m := range lr.Members {
		switch {
		case m.Name == lr.Leader:
		case down == "":
			down = m.Name
		default:
			keep = m.Name
		}
	}
	c.node(down).kill()
	leaderCfg := c.node(lr.Leader).cfg
	// The leader counts a voter as reachable while it acknowledged within
	// an election timeout (1s): wait until the leader last heard from the
	// dead one longer ago than that.
	eventually(t, 30*time.Second, "the leader to miss "+down+" for an election timeout", func() error {
		r := raftelect(t, "status", "--config", leaderCfg, "-o", "json")
		var rep statusReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			return err
		}
		for _, n := range rep.Nodes {
			if n.Name != lr.Leader || !n.OK {
				continue
			}
			for _, p := range n.Peers {
				if p.Name == down && p.LastContactAgoSeconds > 1.5 {
					return nil
				}
			}
		}
		return fmt.Errorf("the leader %s still heard from %s lately", lr.Leader, down)
	})
	r = raftelect(t, "members", "remove", keep, "--config", leaderCfg, "--wait", "10s")
	t.Logf("members remove %s with %s down: exit %d: %s%s", keep, down, r.code, r.stdout, r.stderr)
	if r.code != 2 || !strings.Contains(r.stderr, "cannot remove "+keep+": of the 2 voters that would remain only 1 acknowledged this leader within an election timeout, fewer than the 2 a quorum needs; bring members back first") {
		t.Errorf("members remove %s with %s down: exit %d; want 2, refused for want of a quorum", keep, down, r.code)
	}
	if lr := listMembers(t, leaderCfg); len(lr.Members) != 3 {
		t.Errorf("after the refused removal: %d members, want 3", len(lr.Members))
	}
}

// agreedLeaderOf polls status through cfg until the nodes agree on a
// leader that answers as one.
func (c *cluster) agreedLeaderOf(t *testing.T, cfg string) statusReport {
	t.Helper()
	var rep statusReport
	eventually(t, 30*time.Second, "status agrees on one leader", func() error {
		r := raftelect(t, "status", "--config", cfg, "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			return err
		}
		if r.code != 0 || !rep.Agreed {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		// Right after the leader was replaced, the others may still name
		// it: wait for a leader that answers as one.
		for _, n := range rep.Nodes {
			if n.Name == rep.Leader && n.OK && n.Role == "leader" && !n.NotMember {
				return nil
			}
		}
		return fmt.Errorf("the nodes name %s, which does not answer as the leader", rep.Leader)
	})
	return rep
}
