//go:build linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Table is the nftables table (family netdev) that holds every fault of one
// node but DropUDP, inside that node's namespace. Deleting it heals the node.
const Table = "raftelect_chaos"

// UDPTable holds a node's DropUDP, apart from Table, so that Heal, which
// ends the node's other faults, leaves it standing: a firewall that passes
// no UDP stays while other faults come and go. AllowUDP deletes it.
const UDPTable = "raftelect_chaos_udp"

// chains declares the table and its two chains, both bound to the node's
// eth0, so loopback traffic is never affected. Declaring them again when
// they exist is a no-op, so faults accumulate. Base chains of both tables
// see every packet: a drop in either is final.
func chains(table string) string {
	return `table netdev ` + table + ` {
	chain ingress { type filter hook ingress device "eth0" priority 0; policy accept; }
	chain egress { type filter hook egress device "eth0" priority 0; policy accept; }
}
`
}

// DropBetween silently drops every IP packet that node from sends to node to.
//
// The rule sits in from's namespace, on the egress of its eth0: no EPERM,
// no ICMP, and the receiver never sees the packet. The sender's TCP is told
// of the drop all the same (the device returns NET_XMIT_DROP) and retries
// at its next write, not on its retransmission timer; DropArriving drops
// as a lossy network does (see the package doc). Heal(from) removes it;
// Heal(to) does not.
//
// Only that direction is cut. Packets from to reach from, so a UDP datagram
// from to arrives; but TCP needs both directions, so a connection that to
// opens to from cannot complete its handshake either (from's SYN-ACK is
// dropped), and established connections stall both ways at the TCP level
// while to's data keeps arriving at from's socket.
func (nw *Network) DropBetween(from, to int) error {
	if err := nw.checkPair(from, to); err != nil {
		return err
	}
	return nw.addRules(from, fmt.Sprintf("add rule netdev %s egress ip daddr %s drop\n", Table, nw.nodes[to].IP))
}

// DropArriving drops every IP packet that node from sends to node to as it
// arrives at to, before to's stack sees it. Unlike DropBetween, from's
// stack learns nothing: its sends succeed, and TCP finds the loss only by
// its retransmission timer, as when a network loses the packets. (A drop on
// from's way out makes the send fail on from's host: TCP retries at the
// application's next write, or every 500 ms, instead of backing off.)
// Heal(to) removes it; Heal(from) does not.
func (nw *Network) DropArriving(from, to int) error {
	if err := nw.checkPair(from, to); err != nil {
		return err
	}
	return nw.addRules(to, fmt.Sprintf("add rule netdev %s ingress ip saddr %s drop\n", Table, nw.nodes[from].IP))
}

// Isolate silently drops everything the node sends or receives on its eth0,
// including ARP, as if its host vanished from the network. Loopback traffic,
// including connections to its own IP, still works.
func (nw *Network) Isolate(node int) error {
	if err := nw.check(node); err != nil {
		return err
	}
	return nw.addRules(node, fmt.Sprintf("add rule netdev %[1]s ingress drop\nadd rule netdev %[1]s egress drop\n", Table))
}

// DropUDP silently drops every UDP packet the node sends or receives on its
// eth0, as a firewall or load balancer that passes only TCP does; TCP, ICMP
// and ARP pass. The rules count what they drop (UDPDropped). They live in
// UDPTable: Heal(node) leaves them, AllowUDP(node) removes them.
func (nw *Network) DropUDP(node int) error {
	if err := nw.check(node); err != nil {
		return err
	}
	return nw.addRulesTo(UDPTable, node, fmt.Sprintf("add rule netdev %[1]s ingress meta l4proto udp counter drop\nadd rule netdev %[1]s egress meta l4proto udp counter drop\n", UDPTable))
}

// AllowUDP removes the node's DropUDP; allowing a node that drops nothing
// is not an error.
func (nw *Network) AllowUDP(node int) error {
	if err := nw.check(node); err != nil {
		return err
	}
	return nw.deleteTable(node, UDPTable)
}

// UDPDropped returns how many UDP packets the node's DropUDP has dropped,
// both ways, since it was added (0 without one): a run shows with it that
// the drop met traffic.
func (nw *Network) UDPDropped(node int) (uint64, error) {
	if err := nw.check(node); err != nil {
		return 0, err
	}
	// Listing a table that does not exist fails; "add" makes it exist.
	out, err := nw.nftOutput(node, fmt.Sprintf("add table netdev %[1]s\nlist table netdev %[1]s\n", UDPTable))
	if err != nil {
		return 0, err
	}
	var total uint64
	for _, m := range counterPackets.FindAllSubmatch(out, -1) {
		n, err := strconv.ParseUint(string(m[1]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("chaos: counter of node %d: %w", node, err)
		}
		total += n
	}
	return total, nil
}

// counterPackets matches an nft counter as `nft list` prints it.
var counterPackets = regexp.MustCompile(`counter packets (\d+) bytes`)

// RejectKind is how Reject answers: what a firewall rule, or a Service proxy
// with no endpoints, sends a client instead of silence.
type RejectKind string

const (
	// RejectTCPReset answers with a TCP RST (nft "reject with tcp reset").
	RejectTCPReset RejectKind = "tcp-reset"
	// RejectICMP answers with ICMP port unreachable (nft "reject", the
	// default of iptables' REJECT target).
	RejectICMP RejectKind = "icmp-port-unreachable"
)

// Reject makes the node's TCP port refuse whatever arrives for it from the
// network: a new connection's SYN and every segment of an established one
// are answered by how (an RST, or ICMP port unreachable), so clients dialling
// it get ECONNREFUSED and clients already connected get ECONNRESET or
// EHOSTUNREACH, while the process behind the port runs on. The rule sits on
// the ingress of the node's eth0 and matches only the destination port:
// connections the node opens itself (to a peer's port, from an ephemeral one)
// and their answers pass untouched, and so does loopback traffic. Heal(node)
// removes it.
func (nw *Network) Reject(node int, port uint16, how RejectKind) error {
	if err := nw.check(node); err != nil {
		return err
	}
	var verdict string
	switch how {
	case RejectTCPReset:
		verdict = "reject with tcp reset"
	case RejectICMP:
		verdict = "reject with icmp type port-unreachable"
	default:
		return fmt.Errorf("chaos: reject %q: want %q or %q", how, RejectTCPReset, RejectICMP)
	}
	if port == 0 {
		return errors.New("chaos: reject needs a port")
	}
	return nw.addRules(node, fmt.Sprintf("add rule netdev %s ingress ip daddr %s tcp dport %d %s\n", Table, nw.nodes[node].IP, port, verdict))
}

// Loss drops, at random, percent % of the IP packets that node sends to the
// given peers (to every other node if none are given), each packet drawn on
// its own ("numgen random mod 100 < percent"). Like DropBetween it acts on the
// node's egress and only in that direction, so the sender's TCP learns of
// each drop and retries at once; LossArriving loses packets as a network
// does. Loss of 0 adds nothing; 100 is the same as DropBetween. Calling it
// twice stacks the two losses.
func (nw *Network) Loss(node int, percent int, peers ...int) error {
	return nw.loss(leaving, node, percent, peers)
}

// LossArriving drops, at random, percent % of the IP packets that the given
// peers (every other node if none are given) send to node, as they arrive at
// node, before its stack sees them: as DropArriving does for every packet.
// The senders' stacks learn nothing, their sends succeed, and TCP finds each
// loss only by its retransmission timer or duplicate ACKs, as on a lossy
// network. Only that direction loses packets. Loss of 0 adds nothing; 100
// is the same as DropArriving from each peer. Heal(node) removes it;
// healing a sender does not.
func (nw *Network) LossArriving(node int, percent int, peers ...int) error {
	return nw.loss(arriving, node, percent, peers)
}

// hook is where on a node's eth0 a fault acts, and which address of a
// packet names the other end of the link there.
type hook struct{ chain, peerAddr string }

var (
	leaving  = hook{"egress", "ip daddr"}  // what the node sends, to its peer
	arriving = hook{"ingress", "ip saddr"} // what the node receives, from its peer
)

// loss is Loss on the leaving hook and LossArriving on the arriving one.
func (nw *Network) loss(h hook, node, percent int, peers []int) error {
	if err := nw.check(node); err != nil {
		return err
	}
	if percent < 0 || percent > 100 {
		return fmt.Errorf("chaos: loss of %d%%: want 0 to 100", percent)
	}
	match := h.peerAddr + " " + nw.prefix.String()
	if len(peers) > 0 {
		seen := make(map[int]bool)
		var addrs []string
		for _, p := range peers {
			if err := nw.checkPair(node, p); err != nil {
				return err
			}
			if !seen[p] {
				seen[p] = true
				addrs = append(addrs, nw.nodes[p].IP.String())
			}
		}
		match = h.peerAddr + " { " + strings.Join(addrs, ", ") + " }"
	}
	switch percent {
	case 0:
		return nil
	case 100: // nft rejects "< 100" against a mod-100 value
		return nw.addRules(node, fmt.Sprintf("add rule netdev %s %s %s drop\n", Table, h.chain, match))
	}
	return nw.addRules(node, fmt.Sprintf("add rule netdev %s %s %s numgen random mod 100 < %d drop\n", Table, h.chain, match, percent))
}

// Heal removes every fault in the node's namespace but DropUDP (AllowUDP
// removes that). Healing a node without faults is not an error.
func (nw *Network) Heal(node int) error {
	if err := nw.check(node); err != nil {
		return err
	}
	return nw.deleteTable(node, Table)
}

// deleteTable deletes one of the node's tables; "add" first makes the
// delete succeed when there is no table.
func (nw *Network) deleteTable(node int, table string) error {
	return nw.nft(node, fmt.Sprintf("add table netdev %[1]s\ndelete table netdev %[1]s\n", table))
}

// HealAll removes every fault in every node's namespace, DropUDP included.
func (nw *Network) HealAll() error {
	var errs []error
	for i := range nw.nodes {
		errs = append(errs, nw.Heal(i), nw.AllowUDP(i))
	}
	return errors.Join(errs...)
}

// Flap applies a fault with on, removes it with off after period, applies it
// again after another period, and so on until ctx ends; it then makes sure
// the fault is off and returns. ctx must have a deadline, so a forgotten
// cancel cannot leave it flapping forever. It stops early at the first error
// from on or off, still calling off if the fault may be on, and returns it.
func (nw *Network) Flap(ctx context.Context, on, off func() error, period time.Duration) error {
	if period <= 0 {
		return fmt.Errorf("chaos: flap period %v must be positive", period)
	}
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("chaos: Flap needs a context with a deadline")
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := on(); err != nil {
		return errors.Join(err, off())
	}
	active := true
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if active {
				return off()
			}
			return nil
		case <-tick.C:
		}
		if active {
			if err := off(); err != nil {
				return err
			}
		} else if err := on(); err != nil {
			return errors.Join(err, off())
		}
		active = !active
	}
}

func (nw *Network) checkPair(from, to int) error {
	if err := nw.check(from); err != nil {
		return err
	}
	if err := nw.check(to); err != nil {
		return err
	}
	if from == to {
		return fmt.Errorf("chaos: node %d and itself: a fault needs two different nodes", from)
	}
	return nil
}

func (nw *Network) addRules(node int, rules string) error {
	return nw.addRulesTo(Table, node, rules)
}

func (nw *Network) addRulesTo(table string, node int, rules string) error {
	return nw.nft(node, chains(table)+rules)
}

// nft runs one nft script, a single transaction, in the node's namespace.
func (nw *Network) nft(node int, script string) error {
	_, err := nw.nftOutput(node, script)
	return err
}

// nftOutput is nft that returns what the script printed.
func (nw *Network) nftOutput(node int, script string) ([]byte, error) {
	if err := nw.checkOpen(); err != nil {
		return nil, err
	}
	return run(context.Background(), []byte(script), "ip", "netns", "exec", nw.nodes[node].Name, "nft", "-f", "-")
}
