package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/transport"
)

func TestClassifySendErrors(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{status.Error(codes.DeadlineExceeded, "x"), ClassTimeout},
		{fmt.Errorf("send: %w", context.DeadlineExceeded), ClassTimeout},
		{status.Error(codes.Unavailable, "connection refused"), ClassUnavailable},
		{status.Error(codes.Unavailable, "connection error: desc = \"transport: authentication handshake failed: tls: bad certificate\""), ClassAuth},
		{status.Error(codes.Canceled, "x"), ClassCanceled},
		{context.Canceled, ClassCanceled},
		{status.Error(codes.Unauthenticated, "x"), ClassAuth},
		{status.Error(codes.PermissionDenied, "x"), ClassAuth},
		{status.Error(codes.InvalidArgument, "x"), ClassOther},
		{errors.New("boom"), ClassOther},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

func TestEventsAndStateAreExported(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	st := election.Status{Name: "n1", Role: "leader", Term: 5, Leader: "n1", HoldsLease: true,
		Peers: []election.PeerStatus{{Name: "n2", Reachable: true, RTT: 2 * time.Millisecond, QueueDepth: 3, Drops: 7, SendErrors: 2, LastContact: time.Now(), DatagramHeartbeats: true}}}
	m.Observe(func() election.Status { return st })
	cb := m.Callbacks(election.Callbacks{})

	m.Sent("n2", "Heartbeat")
	m.Sent("n2", "Heartbeat")
	m.Received("n2", "HeartbeatResp")
	m.Dropped("n2", "App")
	m.SendFailed("n2", status.Error(codes.DeadlineExceeded, "x"))
	m.SendLatency("n2", 3*time.Millisecond)

	// The first term is the baseline; 5 -> 7 is two elections.
	if g := gather(t, reg)["raftelect_elections_started_total"]; g != 0 {
		t.Errorf("elections before any term change = %v, want 0", g)
	}
	cb.OnNewLeader("n1", 5)
	cb.OnNewLeader("", 6)
	cb.OnNewLeader("n3", 7)

	want := map[string]float64{
		`raftelect_peer_messages_sent_total{peer="n2",type="Heartbeat"}`:         2,
		`raftelect_peer_messages_received_total{peer="n2",type="HeartbeatResp"}`: 1,
		`raftelect_peer_queue_full_drops_total{peer="n2",type="App"}`:            1,
		`raftelect_peer_send_errors_total{class="timeout",peer="n2"}`:            1,
		`raftelect_peer_dropped_messages_total{peer="n2"}`:                       7,
		`raftelect_peer_send_failures_total{peer="n2"}`:                          2,
		`raftelect_peer_queue_depth{peer="n2"}`:                                  3,
		`raftelect_peer_datagram_heartbeats{peer="n2"}`:                          1,
		`raftelect_peer_reachable{peer="n2"}`:                                    1,
		`raftelect_is_leader`:                                                    1,
		`raftelect_term`:                                                         5,
		`raftelect_has_leader`:                                                   1,
		`raftelect_leader_changes_total`:                                         2,
		`raftelect_elections_started_total`:                                      2,
		`raftelect_peer_send_latency_seconds_count{peer="n2"}`:                   1,
	}
	got := gather(t, reg)
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

// gather flattens the registry into "name{labels}" -> value.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[strings.Replace(key, mf.GetName(), mf.GetName()+"_count", 1)] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// TestHotPathDoesNotAllocate: the transport calls Sent for every message;
// an idle cluster must stay cheap (docs/benchmarks.md, idle cost).
func TestHotPathDoesNotAllocate(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.Sent("n2", "Heartbeat")
	m.SendLatency("n2", time.Millisecond)
	if a := testing.AllocsPerRun(100, func() {
		m.Sent("n2", "Heartbeat")
		m.Received("n2", "HeartbeatResp")
		m.SendLatency("n2", time.Millisecond)
	}); a > 0 {
		t.Errorf("%v allocations per message", a)
	}
}

// TestElectionsCountFromStartTerm: a restarted node's stored term is not
// counted as elections, nor a new node's bootstrap term; every increase
// after it is.
func TestElectionsCountFromStartTerm(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.StartTerm(0)
	// A fresh cluster: raft bootstraps into term 1, the first election
	// makes term 2. That is one election.
	m.Callbacks(election.Callbacks{}).OnNewLeader("n1", 2)
	if g := gather(t, reg)["raftelect_elections_started_total"]; g != 1 {
		t.Errorf("fresh node after its first election: elections = %v, want 1", g)
	}
	reg = prometheus.NewRegistry()
	m = New(reg)
	m.StartTerm(40)
	m.Callbacks(election.Callbacks{}).OnNewLeader("n1", 41)
	if g := gather(t, reg)["raftelect_elections_started_total"]; g != 1 {
		t.Errorf("restarted node: elections = %v, want 1", g)
	}
}

// The expiry gauges are absent until the transport reports a load (a 0
// would read as "expired"), then show the latest load in unix seconds.
func TestCertificateExpiryGaugesFollowTheLatestLoad(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	const certName, caName = "raftelect_tls_certificate_expiry_timestamp_seconds", "raftelect_tls_ca_expiry_timestamp_seconds"
	got := gather(t, reg)
	if _, ok := got[certName]; ok {
		t.Errorf("%s exported before any certificate was loaded", certName)
	}
	if _, ok := got[caName]; ok {
		t.Errorf("%s exported before any CA was loaded", caName)
	}
	cert, ca := time.Unix(1_900_000_000, 0), time.Unix(2_000_000_000, 0)
	m.CertificatesLoaded(cert, ca)
	m.CertificatesLoaded(cert.Add(time.Hour), ca) // a reload
	got = gather(t, reg)
	if g := got[certName]; g != float64(cert.Add(time.Hour).Unix()) {
		t.Errorf("%s = %v, want %d (the reloaded certificate)", certName, g, cert.Add(time.Hour).Unix())
	}
	if g := got[caName]; g != float64(ca.Unix()) {
		t.Errorf("%s = %v, want %d", caName, g, ca.Unix())
	}
}

// Every rejection reason is exported from the start, at zero, and counts
// what the transport reports.
func TestRejectionsExportedByReasonFromZero(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	m.Rejected(transport.RejectNotMember)
	m.Rejected(transport.RejectNotMember)
	m.Rejected(transport.RejectHandshakeTimedOut)
	got := gather(t, reg)
	for _, r := range transport.RejectReasons {
		want := 0.0
		switch r {
		case transport.RejectNotMember:
			want = 2
		case transport.RejectHandshakeTimedOut:
			want = 1
		}
		k := fmt.Sprintf("raftelect_rejected_total{reason=%q}", r)
		if g, ok := got[k]; !ok || g != want {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, want)
		}
	}
}

// Every kind of configuration difference is exported for every peer, 1 for
// the kinds that differ and 0 for the others, so that an alert fires on the
// value alone.
func TestConfigMismatchGaugePerPeerAndKind(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	st := election.Status{Name: "n1", ElectionsHeld: true, Peers: []election.PeerStatus{
		{Name: "n2", ConfigMismatch: []string{transport.MismatchMembership, transport.MismatchTimings}},
		{Name: "n3"},
		{Name: "n4", ConfigUnknown: true},
	}}
	m.Observe(func() election.Status { return st })
	want := map[string]float64{
		`raftelect_peer_config_mismatch{kind="cluster-id",peer="n2"}`: 0,
		`raftelect_peer_config_mismatch{kind="membership",peer="n2"}`: 1,
		`raftelect_peer_config_mismatch{kind="timings",peer="n2"}`:    1,
		`raftelect_peer_config_mismatch{kind="cluster-id",peer="n3"}`: 0,
		`raftelect_peer_config_mismatch{kind="membership",peer="n3"}`: 0,
		`raftelect_peer_config_mismatch{kind="timings",peer="n3"}`:    0,
		`raftelect_peer_config_unknown{peer="n3"}`:                    0,
		`raftelect_peer_config_unknown{peer="n4"}`:                    1,
		`raftelect_elections_held`:                                    1,
	}
	got := gather(t, reg)
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

// Voters (witnesses included) and learners are read from the membership the
// node applied; each preferred-leader move the election package reports
// counts once.
func TestMembersGaugesAndPreferredMoves(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	st := election.Status{Name: "n1", Members: []election.Member{
		{Name: "n1"}, {Name: "n2", Priority: 5}, {Name: "w", Witness: true}, {Name: "n4", Learner: true},
	}}
	m.Observe(func() election.Status { return st })
	var mm election.MembershipMetrics = m
	mm.PreferredLeaderMoved("fail-back to preferred member n2")
	mm.PreferredLeaderMoved("fail-back to preferred member n2, again")
	got := gather(t, reg)
	for k, v := range map[string]float64{
		"raftelect_voters":                       3,
		"raftelect_learners":                     1,
		"raftelect_preferred_leader_moves_total": 2,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}
