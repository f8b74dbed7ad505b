package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// Status shows the members as the leader applied them (role, witness,
// priority), the preferred leader, the last preferred move, each node's
// membership note, the members added online that the given peers lack, and
// the given nodes that are no members; a removed node that is down does not
// make the report unhealthy.
func TestStatusTable_Members(t *testing.T) {
	members := []memberListReport{
		{Name: "n1", Address: "127.0.0.1:7001", Role: "voter", Priority: 10},
		{Name: "n2", Address: "127.0.0.1:7002", Role: "voter"},
		{Name: "n4", Address: "127.0.0.1:7004", Role: "learner"},
		{Name: "w", Address: "127.0.0.1:7009", Role: "witness"},
	}
	nodes := []nodeReport{
		{Name: "n1", OK: true, Configured: true, Role: "leader", Term: 4, Leader: "n1", HoldsLease: true, Members: members,
			ClusterID: "0123456789abcdef0123456789abcdef", PreferredLeader: "n1", LastPreferredMove: "fail-back to preferred member n1 (priority 10 > 0)"},
		{Name: "n2", OK: true, Configured: true, Role: "follower", Term: 4, Leader: "n1", Members: members[:2],
			MembershipNote: "configured but not members: [n3]"},
		{Name: "n3", Configured: true, NotMember: true, ErrorClass: "unavailable", Error: "connection refused"},
		{Name: "n4", Address: "127.0.0.1:7004", OK: true, Role: "follower", Term: 4, Leader: "n1", Members: members},
		{Name: "w", Address: "127.0.0.1:7009", OK: true, Role: "follower", Term: 4, Leader: "n1", Members: members},
	}
	r := summarize(nodes)
	if !r.Agreed || r.Leader != "n1" {
		t.Errorf("report %+v: want agreed on n1 (n3, removed and down, does not count)", r)
	}
	var out bytes.Buffer
	printStatusTable(&out, r)
	t.Logf("\n%s", out.String())
	for _, re := range []string{
		`(?m)^members, as n1 applied them:$`,
		`(?m)^  NAME +ADDRESS +ROLE +PRIORITY$`,
		`(?m)^  n1 +127\.0\.0\.1:7001 +voter +10$`,
		`(?m)^  n4 +127\.0\.0\.1:7004 +learner +0$`,
		`(?m)^  w +127\.0\.0\.1:7009 +witness +0$`,
		`(?m)^  cluster ID: 0123456789abcdef0123456789abcdef$`,
		`(?m)^  preferred leader: n1$`,
		`(?m)^  last preferred move, by n1: fail-back to preferred member n1 \(priority 10 > 0\)$`,
		`(?m)^n3: not a member \(removed, or never added\); take it out of the config files' peers, and stop it if it runs$`,
		`(?m)^n4: a member the given peers do not list \(added online\); asked at 127\.0\.0\.1:7004$`,
		`(?m)^n2: its configured peers differ from the members \(the members apply; update its config file to match\): configured but not members: \[n3\]$`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("status output lacks %s", re)
		}
	}
	if strings.Contains(out.String(), "unreachable: n3") {
		t.Errorf("the removed node n3 is reported unreachable")
	}
}
