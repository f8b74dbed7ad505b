package election_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/raftelect/raftelect/election"
	"github.com/raftelect/raftelect/storage"
)

// A node runs leader-only work through RunWhileLeader: the work starts when
// the node holds the lease and its context ends when the lease does. This
// one-node cluster (no TLS, loopback only: a demonstration) elects itself,
// runs the work once and stops.
func Example() {
	e, err := election.New(election.Config{
		Name: "solo",
		// Port 0: any free port (a one-node cluster dials no one).
		Peers:             []election.PeerConfig{{Name: "solo", Address: "127.0.0.1:0"}},
		Insecure:          true,
		HeartbeatInterval: 10 * time.Millisecond,
		ElectionTimeout:   100 * time.Millisecond,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	e.RunWhileLeader(func(ctx context.Context, lease election.Lease) error {
		fmt.Println("leading as", lease.Holder, "with a fencing token:", lease.Token > 0)
		stop() // done: stop the node
		return nil
	})
	if err := e.Run(ctx); err != nil {
		fmt.Println(err)
	}
	// Output: leading as solo with a fencing token: true
}

// Errors are values to test with errors.Is.
func ExampleErrNotRunning() {
	e, err := election.New(election.Config{
		Name:     "n1",
		Peers:    []election.PeerConfig{{Name: "n1", Address: "127.0.0.1:7000"}, {Name: "n2", Address: "127.0.0.1:7001"}, {Name: "n3", Address: "127.0.0.1:7002"}},
		Insecure: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = e.Transfer(context.Background(), "n2")
	fmt.Println(errors.Is(err, election.ErrNotRunning))
	// Output: true
}

// Configuration problems come back all at once, each saying what to do.
func ExampleConfig_Validate() {
	err := election.Config{
		Name:              "n1",
		Peers:             []election.PeerConfig{{Name: "n1", Address: "127.0.0.1:7000"}},
		HeartbeatInterval: 100 * time.Millisecond,
		ElectionTimeout:   150 * time.Millisecond,
		Insecure:          true,
	}.Validate()
	fmt.Println(err)
	// Output: election timeout 150ms must be more than twice the heartbeat interval 100ms
}

// Transfer, like every call that needs a running leader, says why it cannot
// act with errors to test with errors.Is: ErrNotRunning before Run has
// started the node, ErrNotLeader on a node that does not lead (here, one
// node of three whose peers are not up), ErrUnknownPeer for a name not in
// Peers.
func ExampleErrNotLeader() {
	e, err := election.New(election.Config{
		Name: "n1",
		Peers: []election.PeerConfig{
			{Name: "n1", Address: "127.0.0.1:0"}, // any free port
			{Name: "n2", Address: "127.0.0.1:1"}, // not up
			{Name: "n3", Address: "127.0.0.1:2"}, // not up
		},
		Insecure:          true,
		HeartbeatInterval: 10 * time.Millisecond,
		ElectionTimeout:   100 * time.Millisecond,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { stop(); <-done }()

	for errors.Is(e.Transfer(ctx, "n2"), election.ErrNotRunning) {
		time.Sleep(time.Millisecond) // Run has not started the node yet
	}
	err = e.Transfer(ctx, "n2")
	fmt.Println("not leader:", errors.Is(err, election.ErrNotLeader))
	err = e.Transfer(ctx, "n9")
	fmt.Println("unknown peer:", errors.Is(err, election.ErrUnknownPeer))
	// Output:
	// not leader: true
	// unknown peer: true
}

// A node whose own certificate, key or CA cannot work is refused before it
// starts, with an error that says what is wrong and matches ErrCertificate:
// an operator's problem, which restarting will not solve.
func ExampleErrCertificate() {
	_, err := election.New(election.Config{
		Name:  "n1",
		Peers: []election.PeerConfig{{Name: "n1", Address: "127.0.0.1:7000"}},
		TLS:   election.TLSConfig{CAFile: "no/such/ca.crt", CertFile: "no/such/n1.crt", KeyFile: "no/such/n1.key"},
	})
	fmt.Println(errors.Is(err, election.ErrCertificate))
	// Output: true
}

// A store that holds another node's raft state (a data directory copied from
// n2) is refused when the node starts, with an error that matches
// ErrStoreMismatch and says what to do: voting and acknowledging with n2's
// history would break the promises the lease rests on.
func ExampleErrStoreMismatch() {
	copied := storage.NewMemory()
	if err := copied.SetIdentity(storage.Identity{Node: "n2"}); err != nil {
		fmt.Println(err)
		return
	}
	e, err := election.New(election.Config{
		Name:     "n1",
		Peers:    []election.PeerConfig{{Name: "n1", Address: "127.0.0.1:0"}, {Name: "n2", Address: "127.0.0.1:1"}, {Name: "n3", Address: "127.0.0.1:2"}},
		Insecure: true,
		Storage:  copied,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = e.Run(context.Background())
	fmt.Println(errors.Is(err, election.ErrStoreMismatch))
	// Output: true
}
