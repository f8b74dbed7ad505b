package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// agreedLeader polls `status -o json` until every node names one leader.
func (c *cluster) agreedLeader(t *testing.T, limit time.Duration) statusReport {
	t.Helper()
	var rep statusReport
	eventually(t, limit, "status agrees on one leader", func() error {
		var r result
		rep, r = c.statusJSON(t)
		if r.code != 0 || !rep.Agreed {
			return fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		return nil
	})
	return rep
}

// TestTransferMovesLeadershipToTheNamedNodeOrTheBest: `raftelect transfer
// --to NODE` makes NODE the leader in a higher term and says so; without
// --to, some other node leads afterwards; a bad --to is a usage error and
// naming the leader itself a failure, each with a message saying why.
func TestTransferMovesLeadershipToTheNamedNodeOrTheBest(t *testing.T) {
	c := startCluster(t)
	rep := c.agreedLeader(t, 30*time.Second)
	var to string
	for _, n := range rep.Nodes {
		if n.Name != rep.Leader {
			to = n.Name
			break
		}
	}
	r := raftelect(t, "transfer", "--config", c.nodes[0].cfg, "--to", to)
	t.Logf("raftelect transfer --to %s: exit %d\n%s%s", to, r.code, r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("transfer --to %s: exit %d: %s", to, r.code, r.stderr)
	}
	want := regexp.MustCompile(fmt.Sprintf(`^leadership moved from %s to %s \(term (\d+)\) in \S+\n$`, rep.Leader, to))
	if !want.MatchString(r.stdout) {
		t.Errorf("transfer output %q, want %v", r.stdout, want)
	}
	after := c.agreedLeader(t, 10*time.Second)
	if after.Leader != to || after.Term <= rep.Term {
		t.Errorf("after transfer: leader %s term %d; want %s in a term above %d", after.Leader, after.Term, to, rep.Term)
	}

	// Without --to: the leader chooses; someone else leads.
	r = raftelect(t, "transfer", "--config", c.nodes[1].cfg)
	t.Logf("raftelect transfer: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("transfer: exit %d: %s", r.code, r.stderr)
	}
	again := c.agreedLeader(t, 10*time.Second)
	if again.Leader == after.Leader || again.Term <= after.Term {
		t.Errorf("after transfer without --to: leader %s term %d; was %s term %d", again.Leader, again.Term, after.Leader, after.Term)
	}

	r = raftelect(t, "transfer", "--config", c.nodes[0].cfg, "--to", again.Leader)
	if r.code != 1 || !strings.Contains(r.stderr, again.Leader+" leads already") {
		t.Errorf("transfer to the leader: exit %d, %q; want 1 and 'leads already'", r.code, r.stderr)
	}
	r = raftelect(t, "transfer", "--config", c.nodes[0].cfg, "--to", "n9")
	if r.code != 2 || !strings.Contains(r.stderr, `--to "n9": not among the nodes (n1, n2, n3)`) {
		t.Errorf("transfer to n9: exit %d, %q; want 2 and the nodes", r.code, r.stderr)
	}

	// A certificate of the same CA that names no member (and no operator)
	// gets nothing: no status, so no leader to ask, and no transfer.
	certDir := c.dir + "/certs"
	if r := raftelect(t, "certs", "issue", "--dir", certDir, "--name", "op1", "--host", "127.0.0.1"); r.code != 0 {
		t.Fatalf("certs issue op1: %+v", r)
	}
	var peers []string
	for _, n := range again.Nodes {
		peers = append(peers, n.Name+"="+n.Address)
	}
	r = raftelect(t, "transfer", "--peers", strings.Join(peers, ","), "--ca", certDir+"/ca.crt",
		"--cert", certDir+"/op1.crt", "--key", certDir+"/op1.key")
	if r.code != 1 || !strings.Contains(r.stderr, "unreachable: n1, n2, n3") {
		t.Errorf("transfer with a non-member certificate: exit %d, %q; want 1 and every node refusing it", r.code, r.stderr)
	}
	if now := c.agreedLeader(t, 10*time.Second); now.Leader != again.Leader || now.Term != again.Term {
		t.Errorf("a refused transfer moved leadership: %s term %d -> %s term %d", again.Leader, again.Term, now.Leader, now.Term)
	}

	// A --to that is down is refused with what to do, and nothing moves.
	var gone string
	for _, n := range again.Nodes {
		if n.Name != again.Leader {
			gone = n.Name
			break
		}
	}
	c.node(gone).kill()
	var live *proc
	for _, p := range c.nodes {
		if p.name != gone {
			live = p
		}
	}
	eventually(t, 10*time.Second, "transfer to a stopped node is refused", func() error {
		r := raftelect(t, "transfer", "--config", live.cfg, "--to", gone)
		if r.code != 1 || !strings.Contains(r.stderr, "cannot transfer to "+gone+": it is not reachable from this leader now") {
			return fmt.Errorf("exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		t.Logf("transfer --to %s (stopped): exit %d: %s", gone, r.code, r.stderr)
		return nil
	})
}

// TestTransferByAnOperator: an operator's certificate (certs issue
// --operator, listed in every node's operators) may move leadership.
func TestTransferByAnOperator(t *testing.T) {
	c := startCluster(t) // its configs list operators: [ops]
	certDir := c.dir + "/certs"
	if r := raftelect(t, "certs", "issue", "--dir", certDir, "--operator", "--name", "ops"); r.code != 0 {
		t.Fatalf("certs issue --operator: %+v", r)
	}
	rep := c.agreedLeader(t, 30*time.Second)
	var peers []string
	for _, n := range rep.Nodes {
		peers = append(peers, n.Name+"="+n.Address)
	}
	r := raftelect(t, "transfer", "--peers", strings.Join(peers, ","), "--ca", certDir+"/ca.crt",
		"--cert", certDir+"/ops.crt", "--key", certDir+"/ops.key")
	t.Logf("raftelect transfer with the operator certificate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "leadership moved from "+rep.Leader+" to ") {
		t.Fatalf("operator transfer: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if after := c.agreedLeader(t, 10*time.Second); after.Leader == rep.Leader || after.Term <= rep.Term {
		t.Errorf("after the operator's transfer: leader %s term %d; was %s term %d", after.Leader, after.Term, rep.Leader, rep.Term)
	}
}
