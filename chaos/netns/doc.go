// Package netns builds a small real network out of Linux network namespaces
// and injects faults into it with nftables, for chaos tests that run real
// processes (or real sockets) on their own IP addresses.
//
// # Topology
//
// New(ctx, 3) creates four namespaces, named after the test process's pid and
// a random part so that concurrent networks never collide, and picks a /24 in
// 10.0.0.0/8 from the same random part:
//
//	 re-<pid>-<rand>-0        re-<pid>-<rand>-1        re-<pid>-<rand>-2
//	+------------------+     +------------------+     +------------------+
//	| lo 127.0.0.1     |     | lo 127.0.0.1     |     | lo 127.0.0.1     |
//	| eth0 10.a.b.1/24 |     | eth0 10.a.b.2/24 |     | eth0 10.a.b.3/24 |
//	+--------+---------+     +--------+---------+     +--------+---------+
//	         | veth                   | veth                   | veth
//	+--------+------------------------+------------------------+---------+
//	|        v0                       v1                       v2        |
//	|        +------------------- br0 (bridge) --------------------+     |
//	|                          re-<pid>-<rand>-b                         |
//	+--------------------------------------------------------------------+
//
// Every node sees the others on one L2 segment; nothing is routed and nothing
// touches the host's own namespace, so traffic stays inside namespaces this
// package created. Close deletes exactly those namespaces, which takes the
// veth pairs and the bridge with them.
//
// # Faults
//
// All faults of a node live in one nftables table, "netdev raftelect_chaos",
// inside that node's namespace, with an ingress and an egress chain bound to
// its eth0. Heal deletes the table; loopback is never touched because the
// chains are bound to eth0 only. Faults added to a node accumulate until Heal.
// DropUDP alone lives in a second table, "netdev raftelect_chaos_udp", so
// that a node can pass only TCP for a whole run while other faults come and
// are healed; AllowUDP (or HealAll) deletes it.
//
// Why nftables: this kernel has no sch_netem, so packet loss cannot come from
// tc; nftables can drop silently and, with "numgen random mod 100 < P", at
// random. (Delay and jitter, which nftables cannot add, belong to a TCP proxy
// in the path, not to this package.)
//
// Why drop and never reject: a WAN link that black-holes traffic sends no RST,
// no ICMP unreachable, no FIN. A reject would hand the peer a clear signal
// that real partitions do not give, and would hide exactly the bugs (a send
// that blocks on a silent peer) the chaos tests are there to find.
//
// Why the netdev family and not an inet table's output chain: a drop in the
// inet output hook happens inside the sender's IP stack and is reported back
// to it (sendmsg returns EPERM for UDP; TCP sees a failed transmit and keeps
// the segment unsent instead of waiting for an ACK). That is a local signal,
// not a lost packet. The netdev egress hook runs after the stack has handed
// the packet to the device: sendmsg succeeds, but the device still reports
// the drop (NET_XMIT_DROP), and TCP takes it as local congestion: the
// segment stays unsent and is tried again at the next write or every
// 500 ms, with no retransmission backoff (ss shows a persist timer; seen in
// raftelect bench, docs/benchmarks.md). Only the ingress hook, before the
// receiving stack sees the packet, makes a drop indistinguishable from one
// lost on the wire for both ends: DropArriving, and LossArriving for random
// loss. This needs Linux 5.16 or later (CONFIG_NETFILTER_EGRESS) and nft
// 1.0.1 or later; Available checks it.
//
// Requirements: root, and the iproute2 ("ip") and nftables ("nft") Debian
// packages. Tests call Available and skip with its message when any is
// missing.
package netns
