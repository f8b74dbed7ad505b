package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
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
	if want := fmt.Sprintf("leader: %s (term %d), as %s applied the members\n", rep.Leader, rep.Term, rep.Leader); !strings.Contains(r.stdout, want) {
		t.Errorf("members list from follower %s: want the leader's view %q in:\n%s", f.name, want, r.stdout)
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
	if len(lr.Members) != 3 || lr.Leader != rep.Leader || lr.AnsweredBy != rep.Leader || len(lr.ClusterID) != 32 {
		t.Errorf("members list -o json as the operator: %+v; want 3 members, leader %s answering", lr, rep.Leader)
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
		// The follower sends it on; the leader refuses to replace itself.
		{[]string{"add", "n4", "--address", "127.0.0.1:1", "--replaces", rep.Leader},
			f.name + " is not the leader; asking the leader " + rep.Leader},
	} {
		r := raftelect(t, append(append([]string{"members"}, tt.args...), "--config", f.cfg, "--wait", "10s")...)
		t.Logf("members %s: exit %d: %s%s", strings.Join(tt.args, " "), r.code, r.stdout, r.stderr)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("members %s: exit %d, %q; want 2 and %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.want)
		}
	}
	r = raftelect(t, "members", "add", rep.Leader, "--address", "127.0.0.1:1", "--config", f.cfg)
	if r.code != 0 || !strings.Contains(r.stdout, rep.Leader+" is a member already (voter at ") {
		t.Errorf("members add of a member: exit %d, %q %q; want 0, nothing to do", r.code, r.stdout, r.stderr)
	}
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
