// Package chaos runs real raftelect clusters under real faults and judges
// the outcome.
//
// Run builds a netns.Network (one network namespace per node, veth into a
// bridge), a development CA and one certificate per node, writes each
// node's YAML config, and starts `raftelect run` processes in the
// namespaces with mutual TLS. It waits for the cluster to settle on one
// leader, then plays a Scenario's schedule of faults against it: nftables
// drops, isolation, random loss and flapping inside the namespaces;
// SIGKILL, SIGTERM (with restart) and SIGSTOP/SIGCONT to the processes;
// latency and jitter through TCP proxies in the nodes' namespaces. Targets
// are roles ("leader", "follower-1") resolved when a fault starts.
//
// While it runs, it tails every node's event log (CLOCK_MONOTONIC times,
// one clock for all processes on the host), polls each node's Status for
// queue depths and drops, and samples CPU and RSS from /proc. At the end it
// runs checker.Check over all event logs, measures elections, leader
// changes, leaderless time, lease overlap and failover times from the
// observation start, and judges them against the scenario's expectations.
// A Result carries it all, prints as a summary, and is written to the run
// directory as JSON and as an SVG timeline.
//
// Everything needs root, iproute2 and nftables with the netdev egress hook;
// Available says what is missing. docs/chaos.md is the user's guide.
package chaos
