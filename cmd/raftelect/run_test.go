package main

import (
	"strings"
	"testing"
)

// TestEvenVotersWarned: an even number of voters gets a warning that says
// what it costs and what to use instead; an odd number (or one) none.
func TestEvenVotersWarned(t *testing.T) {
	for n, want := range map[int]string{
		1: "", 3: "", 5: "",
		2: "2 voters: a majority is 2, so the cluster survives no more failed nodes (0) than 1 voters would",
		4: "4 voters: a majority is 3, so the cluster survives no more failed nodes (1) than 3 voters would, and an even split leaves no side a majority; use 3 or 5 nodes",
	} {
		got := evenVotersWarning(n)
		if (want == "") != (got == "") || !strings.HasPrefix(got, want) {
			t.Errorf("%d voters: %q, want %q", n, got, want)
		}
	}
}

// TestStatusProblemWhenNoNodeAnswered: the one-line summary names the
// unreachable nodes and says nobody answered, not "no single leader ()".
func TestStatusProblemWhenNoNodeAnswered(t *testing.T) {
	rep := summarize([]nodeReport{{Name: "n1"}, {Name: "n2"}})
	if got, want := rep.problem(), "unreachable: n1, n2; no node answered"; got != want {
		t.Errorf("problem() = %q, want %q", got, want)
	}
}
