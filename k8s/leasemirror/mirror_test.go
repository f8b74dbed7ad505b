package leasemirror_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/raftelect/raftelect/k8s/leasemirror"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// token is a settable leadership, as resourcelock.Lock.Token reports it.
type token struct {
	mu sync.Mutex
	t  uint64
}

func (k *token) set(t uint64) { k.mu.Lock(); k.t = t; k.mu.Unlock() }
func (k *token) get() (uint64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.t, k.t != 0
}

func getLease(t *testing.T, c kubernetes.Interface) *coordinationv1.Lease {
	t.Helper()
	l, err := c.CoordinationV1().Leases("default").Get(context.Background(), "raftelect-leader", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return l
}

// writes counts the creates and updates the fake API server received.
func writes(c *fake.Clientset) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "create" || a.GetVerb() == "update" {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestLeaseNamesTheLeaderInEveryCluster: while leading, the mirror writes
// a Lease naming the holder and term in every cluster and renews it; once
// the token changes it stops writing, returning nil.
func TestLeaseNamesTheLeaderInEveryCluster(t *testing.T) {
	a, b := fake.NewClientset(), fake.NewClientset()
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	tok := &token{t: 7}
	done := make(chan error, 1)
	go func() {
		done <- leasemirror.Run(context.Background(), leasemirror.Config{
			Identity: "pod-a", Clusters: map[string]kubernetes.Interface{"a": a, "b": b}, Token: tok.get,
			RenewPeriod: time.Second, LeaseDuration: 1500 * time.Millisecond, Clock: clk,
		})
	}()
	for _, c := range []kubernetes.Interface{a, b} {
		waitFor(t, "the Lease", func() bool { return getLease(t, c) != nil })
		l := getLease(t, c)
		if *l.Spec.HolderIdentity != "pod-a" || l.Annotations[leasemirror.TermAnnotation] != "7" || *l.Spec.LeaseTransitions != 7 {
			t.Errorf("Lease names %q term %q transitions %d; want pod-a, 7, 7", *l.Spec.HolderIdentity, l.Annotations[leasemirror.TermAnnotation], *l.Spec.LeaseTransitions)
		}
		if *l.Spec.LeaseDurationSeconds != 2 {
			t.Errorf("leaseDurationSeconds %d, want 2 (1.5s rounded up)", *l.Spec.LeaseDurationSeconds)
		}
		if !l.Spec.RenewTime.Time.Equal(clk.Now()) {
			t.Errorf("renewTime %v, want the injected clock's %v", l.Spec.RenewTime.Time, clk.Now())
		}
	}
	// A renewal after RenewPeriod on the injected clock, in every cluster;
	// the round is over once the mirror waits on the clock again.
	waitFor(t, "the mirror to wait on the clock", clk.HasWaiters)
	clk.Step(time.Second)
	for _, c := range []kubernetes.Interface{a, b} {
		waitFor(t, "a renewal", func() bool {
			l := getLease(t, c)
			return l != nil && l.Spec.RenewTime.Time.Equal(clk.Now())
		})
	}
	waitFor(t, "the mirror to wait on the clock", clk.HasWaiters)
	// Leadership moves on: the mirror stops without writing again.
	tok.set(8)
	before := writes(a) + writes(b)
	clk.Step(time.Second)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil once the term ended", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("Run goes on 20s after its term ended (%d writes before, %d now)", before, writes(a)+writes(b))
	}
	if got := writes(a) + writes(b); got != before {
		t.Errorf("the mirror wrote after its term ended (%d writes before, %d after)", before, got)
	}
}

// TestFollowerNeverWrites: started without a leadership, Run writes nothing
// and says why.
func TestFollowerNeverWrites(t *testing.T) {
	c := fake.NewClientset()
	err := leasemirror.Run(context.Background(), leasemirror.Config{
		Identity: "pod-b", Clusters: map[string]kubernetes.Interface{"a": c}, Token: (&token{}).get,
	})
	if !errors.Is(err, leasemirror.ErrNotLeading) {
		t.Errorf("Run on a follower: %v, want ErrNotLeading", err)
	}
	if l := getLease(t, c); l != nil {
		t.Errorf("a follower wrote the Lease: %+v", l.Spec)
	}
}

// TestNeverOverwritesALaterTerm: a paused old leader that resumes finds its
// successor's record and leaves it alone.
func TestNeverOverwritesALaterTerm(t *testing.T) {
	newer := "pod-new"
	c := fake.NewClientset(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "raftelect-leader", Namespace: "default", Annotations: map[string]string{leasemirror.TermAnnotation: strconv.Itoa(9)}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &newer},
	})
	ctx, cancel := context.WithCancel(context.Background())
	tok := &token{t: 5}
	clk := clocktesting.NewFakeClock(time.Now())
	done := make(chan error, 1)
	go func() {
		done <- leasemirror.Run(ctx, leasemirror.Config{Identity: "pod-old", Clusters: map[string]kubernetes.Interface{"a": c}, Token: tok.get, Clock: clk})
	}()
	// The first round has run once the mirror waits for its next renewal.
	waitFor(t, "the first round", clk.HasWaiters)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l := getLease(t, c); *l.Spec.HolderIdentity != newer {
		t.Errorf("the old leader overwrote term 9's Lease: holder %q", *l.Spec.HolderIdentity)
	}
}
