package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// raftelect status with an operator certificate (issued by `certs issue
// --operator`, listed in the nodes' operators) gets every node's answer; a
// certificate from the same CA that names no member and no operator gets
// none, and is told why.
func TestStatus_OperatorCertificateAnsweredStrangerRefused(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	certDir := filepath.Join(c.dir, "certs")
	if r := raftelect(t, "certs", "issue", "--dir", certDir, "--operator", "--name", "ops"); r.code != 0 || !strings.Contains(r.stdout, "operator ops") {
		t.Fatalf("certs issue --operator: %+v", r)
	}
	if r := raftelect(t, "certs", "issue", "--dir", certDir, "--name", "stranger"); r.code != 0 {
		t.Fatalf("certs issue: %+v", r)
	}
	as := func(name string) (statusReport, result) {
		r := raftelect(t, "status", "--config", c.nodes[0].cfg, "-o", "json",
			"--cert", filepath.Join(certDir, name+".crt"), "--key", filepath.Join(certDir, name+".key"))
		var rep statusReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("status -o json as %s: %v\nstdout: %s\nstderr: %s", name, err, r.stdout, r.stderr)
		}
		return rep, r
	}
	eventually(t, 15*time.Second, "the operator's status to agree on a leader", func() error {
		rep, r := as("ops")
		if r.code != 0 || !rep.Agreed {
			return fmt.Errorf("exit %d, report %+v", r.code, rep)
		}
		return nil
	})
	rep, r := as("stranger")
	if r.code != 1 {
		t.Errorf("status as a stranger: exit %d, want 1", r.code)
	}
	for _, n := range rep.Nodes {
		if n.OK || n.ErrorClass != "auth" || !strings.Contains(n.Error, "names no member of this cluster and no configured operator") {
			t.Errorf("%s answered a stranger or said the wrong thing: ok=%v class=%s err=%s", n.Name, n.OK, n.ErrorClass, n.Error)
		}
	}
}
