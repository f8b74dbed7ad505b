package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/raftelect/raftelect/eventlog"
	tc "github.com/raftelect/raftelect/internal/testcluster"
	"github.com/raftelect/raftelect/k8s/resourcelock"
)

// TestManagersElectOneLeader runs three controller-runtime managers, each
// with a runnable that needs leader election, on three raftelect nodes. No
// API server exists: the rest.Config points at a closed port, and nothing
// the manager starts here needs one. Exactly one runnable runs at any time;
// when the leader's raftelect node stops, its manager stops with "leader
// election lost" and another's runnable starts within the lock's bound.
func TestManagersElectOneLeader(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())
	c := tc.New(t, 3)
	c.Start()
	leaseDuration, renewDeadline, retryPeriod := 2*time.Second, 600*time.Millisecond, 200*time.Millisecond

	type span struct {
		node       string
		start, end int64
	}
	var (
		mu      sync.Mutex
		spans   []span
		running = map[string]int64{}
	)
	errs := make([]chan error, len(c.Nodes))
	cancels := make([]context.CancelFunc, len(c.Nodes))
	var locks []*resourcelock.Lock
	for i, n := range c.Nodes {
		lock, err := resourcelock.New(resourcelock.Config{Elector: n.Elector, LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod})
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, lock)
		mgr, err := ctrl.NewManager(&rest.Config{Host: "https://127.0.0.1:1"}, ctrl.Options{
			LeaderElection:                      true,
			LeaderElectionResourceLockInterface: lock,
			LeaseDuration:                       &leaseDuration,
			RenewDeadline:                       &renewDeadline,
			RetryPeriod:                         &retryPeriod,
			Metrics:                             metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress:              "0",
		})
		if err != nil {
			t.Fatal(err)
		}
		name := n.Name
		mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			mu.Lock()
			for other := range running {
				t.Errorf("%s started leading while %s leads", name, other)
			}
			running[name] = eventlog.Now()
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			spans = append(spans, span{name, running[name], eventlog.Now()})
			delete(running, name)
			mu.Unlock()
			return nil
		}))
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i], errs[i] = cancel, make(chan error, 1)
		go func() { errs[i] <- mgr.Start(ctx) }()
	}
	defer func() {
		for i := range cancels {
			cancels[i]()
			<-errs[i]
		}
	}()
	leader := func() string {
		mu.Lock()
		defer mu.Unlock()
		for n := range running {
			return n
		}
		return ""
	}
	waitFor := func(within time.Duration, what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("timed out after %v waiting for %s", within, what)
	}
	var first string
	waitFor(15*time.Second, "a leading manager", func() bool { first = leader(); return first != "" })
	fi := -1
	for i, n := range c.Nodes {
		if n.Name == first {
			fi = i
		}
	}
	t0 := eventlog.Now()
	c.StopNode(fi)
	select {
	case err := <-errs[fi]:
		errs[fi] <- err // for the deferred drain
		if err == nil || !strings.Contains(err.Error(), "leader election lost") {
			t.Errorf("the old leader's manager returned %v, want leader election lost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old leader's manager did not stop")
	}
	bound := tc.ElectionTimeout + locks[0].HandoverDelay() + retryPeriod*22/10 + 400*time.Millisecond
	var second string
	waitFor(bound+5*time.Second, "another leading manager", func() bool { second = leader(); return second != "" && second != first })
	mu.Lock()
	took := time.Duration(running[second] - t0)
	mu.Unlock()
	t.Logf("%s's node stopped; %s's runnable started %v later (bound %v)", first, second, took, bound)
	if took > bound {
		t.Errorf("takeover took %v, bound %v", took, bound)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.start < b.end && b.start < a.end {
				t.Errorf("%s and %s ran at once", a.node, b.node)
			}
		}
	}
}
