//go:build linux

package netns

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Available reports whether New and the faults can work here: nil if the
// process is root, `ip` and `nft` are installed, a network namespace can be
// created and nftables accepts an egress hook in it. Otherwise the error says
// what is missing and how to get it; tests skip with it. The probe runs once
// per process.
func Available() error { return available() }

var available = sync.OnceValue(func() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("chaos: needs root (running as uid %d)", uid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("chaos: ip not found: apt-get install iproute2")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("chaos: nft not found: apt-get install nftables")
	}
	return probe()
})

// probe creates a throw-away namespace, binds a netdev egress chain in it and
// deletes it again.
func probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		return fmt.Errorf("chaos: random namespace name: %w", err)
	}
	ns := fmt.Sprintf("re-%d-%x-probe", os.Getpid(), r)
	if err := ipCmd(ctx, "netns", "add", ns); err != nil {
		return fmt.Errorf("chaos: cannot create a network namespace: %w", err)
	}
	defer deleteNamespace(ns)
	script := "table netdev " + Table + ` {
	chain egress { type filter hook egress device "lo" priority 0; policy accept; }
}
`
	if _, err := run(ctx, []byte(script), "ip", "netns", "exec", ns, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("chaos: nftables has no netdev egress hook here (needs Linux >= 5.16 with CONFIG_NETFILTER_EGRESS and nft >= 1.0.1): %w", err)
	}
	return nil
}
