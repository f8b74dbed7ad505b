//go:build linux

package transport

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/raft/v3/raftpb"
)

// inOwnNetns is set in the environment of a test binary re-run in a network
// namespace of its own (runInOwnNetns).
const inOwnNetns = "RAFTELECT_TEST_IN_OWN_NETNS"

// runInOwnNetns runs the calling test again in a new process inside a
// network namespace of its own (unshare -n), where it may put nftables
// rules on the loopback without touching the host's; the namespace goes
// with the process. It returns true in that process, where the test goes
// on; in the calling one it waits for the run, checks that it passed, and
// returns false. It skips, saying why, without root or the tools.
func runInOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(inOwnNetns) != "" {
		out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput()
		require.NoError(t, err, "bring up the namespace's loopback: %s", out)
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: it runs in a network namespace of its own (unshare -n) with an nftables rule on its loopback")
	}
	for _, tool := range []string{"unshare", "ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (util-linux, iproute2, nftables): %v", tool, err)
		}
	}
	cmd := exec.Command("unshare", "-n", "--", os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v", "-test.count", "1", "-test.timeout", "2m")
	cmd.Env = append(os.Environ(), inOwnNetns+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in its own network namespace:\n%s", out)
	require.NoError(t, err, "the run in its own network namespace failed")
	require.Contains(t, string(out), "--- PASS: "+t.Name(), "the run in its own network namespace did not pass")
	return false
}

// nft runs an nftables script.
func nft(t *testing.T, script string) {
	t.Helper()
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "nft: %s", out)
}

// Every packet from n1 to n2's listener is dropped for 8 s, silently, while
// n1 keeps sending heartbeats; then the path heals. n1's connection to n2
// holds data that TCP retransmits with backoff: six times every ~56 ms (the
// retransmission timeout, at its 50 ms floor here), then after 0.1, 0.2,
// 0.4 ... s, at about 0.3, 0.5, 0.7, 1.1, 2.0, 3.8, 7.4, 14.6 s after the
// first lost segment, so after this drop its next retransmission comes
// some 6 s after the heal. (The keepalive timeout, which gRPC also sets as
// TCP_USER_TIMEOUT, is 20 s here, so that the connection lives through the
// drop and TCP's backoff decides; at the default 3 s the connection is
// closed after 3 s and gRPC's reconnect backoff decides, which the bench
// measures.) With the stalled path probed by fresh dials (path.go), a
// heartbeat arrives within a probe interval (100 ms here) and a handshake
// of the heal. The limit, 2 s, is generous; without the prober the first
// heartbeat came 6.7 s after the heal and the test failed.
func TestStalledPath_HeartbeatsCrossAHealedOneWayDropAtOnce(t *testing.T) {
	if !runInOwnNetns(t) {
		return
	}
	tn := newTestNet(t, 2, func(_ int, o *Options) {
		o.ControlTimeout = 500 * time.Millisecond // half of a 1 s election timeout
		o.KeepaliveTimeout = 20 * time.Second
	})
	n1, n2 := tn.trs[0], tn.recs[1]
	_, port, err := net.SplitHostPort(tn.peers[1].Addr)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			n1.Send([]*raftpb.Message{msg(raftpb.MsgHeartbeat, 1, 2, 1)})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { cancel(); <-sent }()
	waitFor(t, 10*time.Second, "heartbeats from n1 at n2", func() bool { return n2.countFrom(1) > 0 })

	// Dropped on the way in, after the sender's stack sent them: as a
	// lossy network drops packets, the sender learns nothing and TCP
	// retransmits on its timer. (Dropped on the way out, in the output or
	// egress hook, the send fails on the sender's host, and TCP retries at
	// the application's next write or every 500 ms.)
	nft(t, fmt.Sprintf("table netdev stall {\n chain in { type filter hook ingress device \"lo\" priority 0; policy accept; tcp dport %s drop; }\n}\n", port))
	unreachable := tn.recs[0].unreachable.Load()
	waitFor(t, 5*time.Second, "n1 to find n2 unreachable", func() bool { return tn.recs[0].unreachable.Load() > unreachable })
	const outage = 8 * time.Second // the fault's length, not a wait for anything
	select {
	case <-time.After(outage):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	before := n2.countFrom(1)
	nft(t, "delete table netdev stall\n")
	healed := time.Now()
	waitFor(t, 2*time.Second, "a heartbeat from n1 after the heal", func() bool { return n2.countFrom(1) > before })
	p := n1.set().byName["n2"]
	t.Logf("first heartbeat %v after the heal; stalled connections replaced: %d", time.Since(healed).Round(time.Millisecond), p.rerouted.Load())
}
