// Command fencing shows leader work guarded by raftelect's fencing token.
//
// It runs a three-node cluster in this process (loopback, mutual TLS, the
// test timings: heartbeat 100ms, election timeout 1s). Each node registers
// the same leader work: while it holds the lease it writes to an external
// store, passing the lease's token. The store rejects any write whose token
// is lower than one it has seen. The program then moves leadership away,
// and replays a write from the old leader as if its process had been paused
// past the end of its lease: the store rejects it.
//
// The lease alone keeps two nodes from acting at once while processes run;
// the token is what protects the store from a process that was paused (GC,
// SIGSTOP, a VM migration) and acts after its lease ended without noticing.
//
//	go run ./examples/fencing
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/election"
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	dir, err := os.MkdirTemp("", "raftelect-fencing-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ca, err := certs.NewCA("fencing example CA", time.Hour)
	if err != nil {
		return err
	}

	names := []string{"n1", "n2", "n3"}
	var peers []election.PeerConfig
	for _, name := range names {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		peers = append(peers, election.PeerConfig{Name: name, Address: addr})
	}

	store := newFencedStore()
	nodes := map[string]*election.Elector{}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, len(names))
	started := 0
	defer func() {
		stop() // each node ends its lease and stops
		for range started {
			<-done
		}
	}()
	for _, name := range names {
		f, err := ca.WriteNode(filepath.Join(dir, name), name, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			return err
		}
		e, err := election.New(election.Config{
			Name:              name,
			Peers:             peers,
			HeartbeatInterval: 100 * time.Millisecond,
			ElectionTimeout:   time.Second,
			TLS:               election.TLSConfig{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key},
		})
		if err != nil {
			return err
		}
		e.RunWhileLeader(func(ctx context.Context, lease election.Lease) error {
			return leaderWork(ctx, lease, store)
		})
		nodes[name] = e
		go func() { done <- e.Run(ctx) }()
		started++
	}

	first, firstLease, err := waitLease(nodes, "", 10*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("%s leads with token %d\n", first, firstLease.Token)
	time.Sleep(500 * time.Millisecond)

	tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = nodes[first].Transfer(tctx, "")
	cancel()
	if err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	second, secondLease, err := waitLease(nodes, first, 5*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("leadership moved: %s leads with token %d\n", second, secondLease.Token)
	time.Sleep(500 * time.Millisecond)

	// The old leader's process wakes up from a long pause and, not having
	// looked at its context, writes with the token it had.
	err = store.Write(firstLease.Token, "owner", first+" (after a pause)")
	if !errors.Is(err, ErrStaleToken) {
		return fmt.Errorf("the store accepted a stale write: %v", err)
	}
	fmt.Printf("stale write rejected: %v\n", err)

	owner, highest := store.Get("owner")
	fmt.Printf("store: owner=%s, highest token %d\n", owner, highest)
	return nil
}

// leaderWork is what only the leader may do: here, record itself as the
// owner every 100ms. Every write carries the lease's token, and the work
// stops as soon as the lease's context is cancelled.
func leaderWork(ctx context.Context, lease election.Lease, store *fencedStore) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if err := store.Write(lease.Token, "owner", lease.Holder); err != nil {
			return err // replaced: raftelect restarts the work only if we lead again
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// waitLease waits until a node other than not holds the lease.
func waitLease(nodes map[string]*election.Elector, not string, within time.Duration) (string, election.Lease, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for name, e := range nodes {
			if l, ok := e.Lease(); ok && name != not {
				return name, l, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "", election.Lease{}, fmt.Errorf("no lease holder other than %q within %v", not, within)
}

// freeAddr returns a loopback address whose port was free a moment ago: the
// kernel picks it, the listener is closed, and the node listens there when it
// runs. A deployment gives each node a fixed address instead.
func freeAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer lis.Close()
	return lis.Addr().String(), nil
}
