package checker

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftelect/raftelect/eventlog"
)

// Builders for readable logs; times are in milliseconds.

func ms(n int64) int64 { return n * int64(time.Millisecond) }

func start(t int64, node string, term uint64, vote string) eventlog.Event {
	return eventlog.Event{Mono: ms(t), Node: node, Kind: eventlog.KindStart, Term: term, Vote: vote}
}

func state(t int64, node string, term uint64, vote, role string) eventlog.Event {
	return eventlog.Event{Mono: ms(t), Node: node, Kind: eventlog.KindState, Term: term, Vote: vote, Role: role}
}

func leaseStart(t int64, node string, token uint64) eventlog.Event {
	return eventlog.Event{Mono: ms(t), Node: node, Kind: eventlog.KindLeaseStart, Term: token, Token: token}
}

func leaseEnd(t int64, node string, token uint64) eventlog.Event {
	return eventlog.Event{Mono: ms(t), Node: node, Kind: eventlog.KindLeaseEnd, Term: token, Token: token}
}

func crash(t int64, node string) eventlog.Event {
	return eventlog.Event{Mono: ms(t), Node: node, Kind: eventlog.KindCrash}
}

func stop(t int64, node string) eventlog.Event {
	return eventlog.Event{Mono: ms(t), Node: node, Kind: eventlog.KindStop}
}

// cat joins log fragments.
func cat(parts ...[]eventlog.Event) []eventlog.Event {
	var out []eventlog.Event
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// boot: three nodes start at 0 and a wins term 1 at 1000 ms with b's vote,
// taking the lease at once.
func boot() []eventlog.Event {
	return []eventlog.Event{
		start(0, "a", 0, ""), start(0, "b", 0, ""), start(0, "c", 0, ""),
		state(1000, "a", 1, "a", "candidate"),
		state(1010, "b", 1, "a", "follower"),
		state(1020, "a", 1, "a", "leader"),
		leaseStart(1020, "a", 1),
	}
}

// failover: a's lease ends and a is cut off at 5000; b wins term 2 at 6000.
func failover() []eventlog.Event {
	return []eventlog.Event{
		leaseEnd(5000, "a", 1),
		state(6000, "b", 2, "b", "candidate"),
		state(6010, "c", 2, "b", "follower"),
		state(6020, "b", 2, "b", "leader"),
		leaseStart(6020, "b", 2),
	}
}

func kinds(r Report) []string {
	var out []string
	for _, v := range r.Violations {
		out = append(out, v.Kind)
	}
	return out
}

func TestCheckerRules(t *testing.T) {
	tests := []struct {
		name   string
		events []eventlog.Event
		opts   Options
		want   []string // violation kinds, nil for a clean log
	}{
		{name: "healthy boot", events: boot()},
		{name: "failover to a new leader in a higher term", events: cat(boot(), failover())},

		// Rule 1: one leader per term.
		{
			name: "two leaders in one term",
			events: cat(boot(), []eventlog.Event{
				leaseEnd(5000, "a", 1),
				state(6000, "c", 1, "c", "leader"),
			}),
			want: []string{TwoLeadersInTerm},
		},

		// Rule 2: terms never go back, votes never change within a term.
		{
			name: "restart keeps its term and vote",
			events: cat(boot(), []eventlog.Event{
				crash(3000, "b"),
				start(3100, "b", 1, "a"),
				state(3200, "b", 1, "a", "follower"),
			}),
		},
		{
			name: "restart with lost state regresses the term",
			events: cat(boot(), []eventlog.Event{
				crash(3000, "b"),
				start(3100, "b", 0, ""),
			}),
			want: []string{TermRegressed},
		},
		{
			name: "state event with a lower term",
			events: cat(boot(), []eventlog.Event{
				state(3000, "c", 1, "", "follower"),
				state(3100, "c", 0, "", "follower"),
			}),
			want: []string{TermRegressed},
		},
		{
			name: "vote in a new term may differ",
			events: cat(boot(), failover(), []eventlog.Event{
				state(9000, "a", 3, "c", "follower"),
			}),
		},
		{
			name: "vote changes within a term",
			events: cat(boot(), []eventlog.Event{
				state(1015, "b", 1, "c", "follower"),
			}),
			want: []string{VoteChanged},
		},

		// Rule 3: no two leases at once.
		{name: "lease ends before the next begins", events: cat(boot(), failover())},
		{
			name: "a crash ends the lease",
			events: cat(boot(), []eventlog.Event{
				crash(5000, "a"),
				state(6000, "b", 2, "b", "candidate"),
				state(6020, "b", 2, "b", "leader"),
				leaseStart(6020, "b", 2),
			}),
		},
		{
			name: "a lease never ended runs to the end of observation",
			events: cat(boot(), []eventlog.Event{
				state(6000, "b", 2, "b", "candidate"),
				state(6020, "b", 2, "b", "leader"),
				leaseStart(6020, "b", 2),
				state(7000, "c", 2, "b", "follower"),
			}),
			want: []string{LeaseOverlap},
		},

		// Rule 4: fencing tokens increase across holders.
		{
			name: "same node re-acquires with the same token",
			events: cat(boot(), []eventlog.Event{
				leaseEnd(2000, "a", 1),
				leaseStart(2500, "a", 1),
			}),
		},
		{
			name: "a new holder with a lower token",
			events: cat(boot(), []eventlog.Event{
				leaseEnd(2000, "a", 1),
				state(2100, "a", 5, "a", "leader"), // a leads term 5 ...
				leaseStart(2100, "a", 5),
				leaseEnd(3000, "a", 5),
				state(3000, "a", 5, "a", "follower"),
				state(4000, "b", 4, "b", "leader"), // ... then b, from a stale term 4
				leaseStart(4000, "b", 4),
			}),
			want: []string{TokenNotIncreasing},
		},

		// Rule 5: a lease lies inside its holder's leadership of that term.
		{
			name: "lease ends at the instant leadership ends",
			events: cat(boot(), []eventlog.Event{
				state(5000, "a", 1, "a", "follower"),
				leaseEnd(5000, "a", 1),
			}),
		},
		{
			name: "lease taken by a follower",
			events: cat(boot(), []eventlog.Event{
				leaseStart(1500, "c", 2),
			}),
			want: []string{LeaseOutsideTerm},
		},
		{
			name: "lease token differs from the leader's term",
			events: cat(boot(), []eventlog.Event{
				leaseEnd(2000, "a", 1),
				leaseStart(2500, "a", 2),
			}),
			want: []string{LeaseOutsideTerm},
		},
		{
			name: "lease held after stepping down",
			events: cat(boot(), []eventlog.Event{
				state(5000, "a", 1, "a", "follower"),
				leaseEnd(5001, "a", 1),
			}),
			want: []string{LeaseOutsideTerm},
		},

		// Rule 6: a leader soon after every start.
		{
			name:   "leader within the recovery bound",
			events: cat(boot(), []eventlog.Event{crash(3000, "b"), start(3100, "b", 1, "a")}),
			opts:   Options{RecoveryBound: 2 * time.Second},
		},
		{
			name:   "boot slower than the recovery bound",
			events: boot(),
			opts:   Options{RecoveryBound: 500 * time.Millisecond},
			want:   []string{NoLeaderAfterRestart, NoLeaderAfterRestart, NoLeaderAfterRestart},
		},
		{
			name: "no leader after the leader restarts",
			events: cat(boot(), []eventlog.Event{
				crash(3000, "a"),
				start(3100, "a", 1, "a"),
				state(9000, "c", 1, "a", "follower"),
			}),
			opts: Options{RecoveryBound: 2 * time.Second},
			want: []string{NoLeaderAfterRestart},
		},
		{
			name: "observation ends before the bound",
			events: cat(boot(), []eventlog.Event{
				crash(3000, "a"),
				start(3100, "a", 1, "a"),
			}),
			opts: Options{RecoveryBound: 2 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(tt.events, tt.opts)
			require.ElementsMatch(t, tt.want, kinds(r), r.Summary())
			require.Equal(t, len(tt.want) == 0, r.OK())
		})
	}
}

func TestCheckerCatchesDoubleVote(t *testing.T) {
	// b votes for a in term 5, is killed, comes back having lost its state,
	// and votes for c in term 5: the double vote that persistence prevents.
	events := []eventlog.Event{
		start(0, "b", 4, ""),
		state(100, "b", 5, "a", "follower"),
		crash(200, "b"),
		start(300, "b", 5, ""),
		state(400, "b", 5, "c", "follower"),
	}
	r := Check(events, Options{})
	require.False(t, r.OK())
	require.Len(t, r.Violations, 1)
	v := r.Violations[0]
	require.Equal(t, VoteChanged, v.Kind)
	require.Equal(t, "b", v.Node)
	require.Equal(t, ms(400), v.Mono)
	require.Contains(t, v.Detail, "term 5")
}

func TestCheckerCatchesLeaseOverlap(t *testing.T) {
	// a is cut off and keeps its lease 300 ms past b's election (the bug a
	// lease exists to prevent). Nodes' events come interleaved in no
	// particular order; only one node's events at the same instant must keep
	// their order.
	events := []eventlog.Event{
		leaseEnd(6320, "a", 1),
		state(6000, "b", 2, "b", "candidate"),
		state(6400, "a", 2, "", "follower"),
		state(6020, "b", 2, "b", "leader"),
		leaseStart(6020, "b", 2),
	}
	events = append(events, boot()...)
	r := Check(events, Options{})
	require.Equal(t, []string{LeaseOverlap}, kinds(r), r.Summary())
	require.Equal(t, 300*time.Millisecond, r.MaxOverlap)
	require.Equal(t, 300*time.Millisecond, r.TotalOverlap)
	require.Equal(t, "b", r.Violations[0].Node)
	require.Equal(t, ms(6020), r.Violations[0].Mono)
	require.Contains(t, r.Violations[0].Detail, "300ms")
}

func TestReportFigures(t *testing.T) {
	events := cat(boot(), failover(), []eventlog.Event{
		stop(8000, "c"),
		start(8100, "c", 2, "b"),
		state(8200, "c", 2, "b", "follower"),
	})
	r := Check(events, Options{RecoveryBound: 2 * time.Second})
	require.True(t, r.OK(), r.Summary())
	require.Equal(t, 3, r.Nodes)
	require.Equal(t, len(events), r.Events)
	require.Equal(t, 2, r.Terms)
	require.Equal(t, 2, r.Elections)
	require.Equal(t, 1, r.LeaderChanges)
	require.Equal(t, 2, r.Leases)
	require.Equal(t, 1, r.Restarts)
	require.Zero(t, r.MaxOverlap)
	// The boot waited 1020 ms for a leader; c's restart found b leading.
	require.Equal(t, 1020*time.Millisecond, r.MaxRecovery)
	require.Contains(t, r.Summary(), "checked 15 events from 3 nodes: 2 elections, 2 leases, max overlap 0s, 0 violations")
}

func TestTimeline(t *testing.T) {
	got := Timeline(cat(boot(), failover()))
	require.Equal(t, []Interval{
		{Node: "a", Term: 1, Start: ms(1020), End: ms(6020)}, // a never heard of term 2: led to the end
		{Node: "a", Term: 1, Start: ms(1020), End: ms(5000), Lease: true},
		{Node: "b", Term: 2, Start: ms(6020), End: ms(6020)},
		{Node: "b", Term: 2, Start: ms(6020), End: ms(6020), Lease: true},
	}, got)
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	byNode := map[string][]eventlog.Event{}
	for _, e := range cat(boot(), failover()) {
		e.Mono += ms(1) // Write would replace a zero Mono with the time now
		byNode[e.Node] = append(byNode[e.Node], e)
	}
	var paths []string
	for node, events := range byNode {
		p := filepath.Join(dir, node+".jsonl")
		w, err := eventlog.Create(p)
		require.NoError(t, err)
		for _, e := range events {
			require.NoError(t, w.Write(e))
		}
		require.NoError(t, w.Close())
		paths = append(paths, p)
	}
	r, err := CheckFiles(paths, Options{})
	require.NoError(t, err)
	require.True(t, r.OK(), r.Summary())
	require.Equal(t, 2, r.Elections)

	_, err = CheckFiles([]string{filepath.Join(dir, "missing.jsonl")}, Options{})
	require.Error(t, err)
}

// With LostStateRestarts (the simulator), a start in term 0 is a node that
// lost its state, not a term that went back; a vote it then changes in a
// term it already voted in is still caught.
func TestCheckerLostStateRestarts(t *testing.T) {
	lost := cat(boot(), failover(), []eventlog.Event{
		crash(7000, "c"),
		start(7100, "c", 0, ""),
	})
	if r := Check(lost, Options{LostStateRestarts: true}); !r.OK() {
		t.Fatalf("a restart without state was reported: %v", kinds(r))
	}
	if r := Check(lost, Options{}); len(kinds(r)) != 1 || kinds(r)[0] != TermRegressed {
		t.Fatalf("without the option the regressed term must be reported, got %v", kinds(r))
	}
	revote := append(lost, state(7200, "c", 2, "a", "follower"))
	if r := Check(revote, Options{LostStateRestarts: true}); len(kinds(r)) != 1 || kinds(r)[0] != VoteChanged {
		t.Fatalf("a second vote in term 2 after losing state: got %v, want %s", kinds(r), VoteChanged)
	}
}
