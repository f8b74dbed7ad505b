package main

import (
	"bytes"
	"strings"
	"testing"
)

// The CONFIG column shows, from the leader's view, whether each node's
// configuration agrees with the leader's, and every difference any node
// reports is printed under the table in words, including those the leader
// cannot see (a node it does not list).
func TestStatusTable_ConfigColumnAndDifferences(t *testing.T) {
	r := statusReport{Leader: "n1", Term: 3, Agreed: false, ViewFrom: "n1", Nodes: []nodeReport{
		{Name: "n1", OK: true, Role: "leader", Term: 3, Leader: "n1", HoldsLease: true, Peers: []peerReport{
			{Name: "n2", Reachable: true},
			{Name: "n3", Reachable: true, ConfigMismatch: []string{"membership"}, ConfigDetail: "n3 lists members this node does not: n4, n5"},
			{Name: "n4", ConfigUnknown: true},
		}},
		{Name: "n2", OK: true, Role: "follower", Term: 3, Leader: "n1", Peers: []peerReport{{Name: "n1"}}},
		{Name: "n3", OK: true, Role: "follower", Term: 3, Leader: "n1", ElectionsHeld: true, Peers: []peerReport{
			{Name: "n1", ConfigMismatch: []string{"membership"}, ConfigDetail: "this node lists members n1 does not: n4, n5"},
		}},
		{Name: "n4", OK: true, Role: "pre-candidate", Term: 1},
	}}
	var out bytes.Buffer
	printStatusTable(&out, r)
	t.Logf("\n%s", out.String())
	lines := strings.Split(out.String(), "\n")
	if !strings.HasSuffix(strings.TrimSpace(lines[0]), "DROPS  CONFIG") {
		t.Fatalf("header %q lacks CONFIG", lines[0])
	}
	want := map[string]string{"n1": "-", "n2": "ok", "n3": "membership", "n4": "unknown"}
	for _, l := range lines[1:5] {
		f := strings.Fields(l)
		if got := f[len(f)-1]; got != want[f[0]] {
			t.Errorf("row %q: CONFIG %q, want %q", l, got, want[f[0]])
		}
	}
	for _, s := range []string{
		"n1 about n3: membership: n3 lists members this node does not: n4, n5",
		"n3 about n1: membership: this node lists members n1 does not: n4, n5",
		"n3: takes no part in elections while a member disagrees with it on membership",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q", s)
		}
	}
}
