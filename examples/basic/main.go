// Command basic runs a three-node raftelect cluster inside one process, on
// loopback with mutual TLS, and shows a leader elected, its leader-only work
// running, and a failover when the leader stops. It ends by itself.
//
//	go run ./examples/basic
package main

import (
	"context"
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
	dir, err := os.MkdirTemp("", "raftelect-basic-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ca, err := certs.NewCA("raftelect example CA", time.Hour)
	if err != nil {
		log.Fatal(err)
	}

	// Three nodes on free loopback ports.
	names := []string{"n1", "n2", "n3"}
	var peers []election.PeerConfig
	for _, name := range names {
		addr, err := freeAddr()
		if err != nil {
			log.Fatal(err)
		}
		peers = append(peers, election.PeerConfig{Name: name, Address: addr})
	}

	start := time.Now()
	stamp := func() string { return fmt.Sprintf("%6.2fs", time.Since(start).Seconds()) }
	nodes := make([]*election.Elector, len(names))
	stops := make([]context.CancelFunc, len(names))
	done := make([]chan error, len(names))
	for i, name := range names {
		files, err := ca.WriteNode(filepath.Join(dir, name), name, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			log.Fatal(err)
		}
		e, err := election.New(election.Config{
			Name:              name,
			Peers:             peers,
			Labels:            map[string]string{"api": "https://" + name + ".example"},
			HeartbeatInterval: 100 * time.Millisecond,
			ElectionTimeout:   time.Second,
			TLS:               election.TLSConfig{CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key},
		})
		if err != nil {
			log.Fatal(err)
		}
		// Leader-only work: runs while this node holds the lease; its
		// context ends the moment the lease does.
		e.RunWhileLeader(func(ctx context.Context, lease election.Lease) error {
			fmt.Printf("%s  %s leads, fencing token %d\n", stamp(), lease.Holder, lease.Token)
			<-ctx.Done()
			fmt.Printf("%s  %s stopped leading\n", stamp(), lease.Holder)
			return nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		nodes[i], stops[i], done[i] = e, cancel, make(chan error, 1)
		go func() { done[i] <- e.Run(ctx) }()
	}

	leader := waitLeader(nodes, -1)
	fmt.Printf("%s  every node agrees: %s leads in term %d\n", stamp(), nodes[leader].Name(), nodes[leader].Leader().Term)
	time.Sleep(time.Second)

	fmt.Printf("%s  stopping %s gracefully (it hands leadership over first)\n", stamp(), nodes[leader].Name())
	stopAt := time.Now()
	stops[leader]()
	next := waitLeader(nodes, leader)
	fmt.Printf("%s  %s leads after %v\n", stamp(), nodes[next].Name(), time.Since(stopAt).Round(time.Millisecond))
	if err := <-done[leader]; err != nil {
		log.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	for i := range nodes {
		stops[i]()
	}
	for i := range nodes {
		if i != leader {
			if err := <-done[i]; err != nil {
				log.Fatal(err)
			}
		}
	}
}

// waitLeader waits until a node other than skip holds the lease.
func waitLeader(nodes []*election.Elector, skip int) int {
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for i, e := range nodes {
			if i != skip && e.IsLeader() {
				return i
			}
		}
	}
	log.Fatal("no leader within 15s")
	return -1
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
