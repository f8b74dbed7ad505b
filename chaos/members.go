//go:build linux

package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftelect/raftelect/eventlog"
	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

// Membership changes on real processes: an add or remove fault asks the
// leader over the Node service, as `raftelect members` does, with the
// harness's operator certificate, and then polls every running member's
// Members until each has applied the result. The time from the request to
// that point is the change's time.

// changePoll is how often the harness asks the members whether they have
// applied a change: the resolution of the measured change times.
const changePoll = 20 * time.Millisecond

// changeLimit bounds one change, in election timeouts: the node service
// gives up on a learner after 30, and a change that needs a new leader
// first (its leader killed) gets a few more.
const changeLimit = 40

// memberView is one node's answer to Members: names, "(learner)" marked.
type memberView []string

func viewOf(resp *pb.MembersResponse) memberView {
	var v memberView
	for _, m := range resp.GetMembers() {
		n := m.GetName()
		if m.GetLearner() {
			n += "(learner)"
		}
		v = append(v, n)
	}
	slices.Sort(v)
	return v
}

// members asks node i for its applied membership.
func (r *runner) members(ctx context.Context, i int) (*pb.MembersResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	return pb.NewNodeClient(r.sp.conns[i]).Members(ctx, &pb.MembersRequest{})
}

// changeMembers carries out an add (replaces: the member it replaces, or
// "") or a remove of node target, and records it in the result's changes.
// It returns a description of the change.
func (r *runner) changeMembers(ctx context.Context, kind string, target int, replaces string, o *NodeConfig) (string, error) {
	c := r.c
	name := c.nodes[target].name
	limit := changeLimit * r.o.ElectionTimeout
	ch := MembershipChange{Kind: kind, Node: name, Replaces: replaces}
	switch kind {
	case FaultAdd:
		ch.Desc = "add " + name
		if replaces != "" {
			ch.Desc = fmt.Sprintf("replace %s by %s", replaces, name)
		}
	case FaultRemove:
		ch.Desc = "remove " + name
	}
	// The members before the change, from the leader, and what they must
	// be after it.
	before, clusterID, leader, err := r.leaderMembers(ctx, limit)
	if err != nil {
		return ch.Desc, err
	}
	want := slices.DeleteFunc(slices.Clone(before), func(n string) bool {
		return n == name || n == name+"(learner)" || (replaces != "" && n == replaces)
	})
	if kind == FaultAdd {
		want = append(want, name)
		slices.Sort(want)
		if err := c.joinConfig(target, clusterID, o); err != nil {
			return ch.Desc, err
		}
		if err := c.start(target); err != nil {
			return ch.Desc, err
		}
	}
	ch.Before, ch.After = before, want

	// Ask the leader, and whoever leads next if it is not the leader any
	// more. A call that fails otherwise (its leader killed, say) may still
	// have started the change: the members tell.
	ch.Requested = eventlog.Now()
	deadline := time.Now().Add(limit)
	if kind == FaultRemove && leader == target {
		// The leader does not remove itself: hand leadership over first,
		// as `raftelect members remove` does, and ask the new leader. Which
		// node leads when a remove comes up is up to the elections before
		// it, so a scenario cannot rule this out.
		if leader, err = r.handOver(ctx, leader, deadline); err != nil {
			r.addChange(ch)
			return ch.Desc, fmt.Errorf("%s leads and could not hand leadership over before its removal: %w", name, err)
		}
		ch.HandedOverTo = c.nodes[leader].name
		r.logf("CHANGE %s: %s leads; it handed leadership to %s first", ch.Desc, name, ch.HandedOverTo)
	}
	for {
		err = r.requestChange(ctx, kind, leader, target, replaces)
		if status.Code(err) != codes.FailedPrecondition || time.Now().After(deadline) {
			break
		}
		if leader, err = r.awaitLeader(ctx, deadline); err != nil {
			break
		}
	}
	ch.Answered = eventlog.Now()
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.Aborted:
		// Refused outright: nothing was proposed, so no member will show
		// it. Say why now rather than wait for the run to end.
		ch.RequestError = err.Error()
		r.addChange(ch)
		return ch.Desc, fmt.Errorf("the leader %s refused the change: %w", c.nodes[leader].name, err)
	}
	if err != nil {
		ch.RequestError = err.Error()
		r.logf("CHANGE %s: the request failed (%v); waiting for the members to show whether it went through", ch.Desc, err)
	}
	// Every running member applied the change: a removed node is no
	// member to ask.
	var lastDiff string
	for {
		diff := ""
		for i, p := range c.nodes {
			if !c.pc.Running(i) || p.name == name && kind == FaultRemove || p.name == replaces {
				continue
			}
			if !slices.Contains(want, p.name) {
				continue
			}
			resp, err := r.members(ctx, i)
			if err != nil {
				diff += fmt.Sprintf("%s: %v; ", p.name, err)
				continue
			}
			if got := viewOf(resp); !slices.Equal(got, want) {
				diff += fmt.Sprintf("%s has %v; ", p.name, got)
			}
		}
		if diff == "" {
			break
		}
		if ctx.Err() != nil {
			return ch.Desc, r.changeCut(ch, want, lastDiff)
		}
		lastDiff = diff
		if time.Now().After(deadline) {
			r.addChange(ch)
			return ch.Desc, fmt.Errorf("the change did not reach every member within %v (want %v): %s", limit, want, lastDiff)
		}
		if err := sleepCtx(ctx, changePoll); err != nil {
			return ch.Desc, r.changeCut(ch, want, lastDiff)
		}
	}
	ch.Applied = eventlog.Now()
	ch.Took = Millis(ch.Applied - ch.Requested)
	r.logf("CHANGE %s applied on every member %v after the request: %v", ch.Desc, ch.Took, want)

	// A removed node, or a replaced one that runs, learns it was removed
	// and must stop by itself, saying so. That is watched on the side, so
	// that one that does not stop fails the run without holding up the
	// changes after it.
	k := r.addChange(ch)
	for _, gone := range []string{name, replaces} {
		if gone == "" || (kind == FaultAdd && gone == name) {
			continue
		}
		i := slices.IndexFunc(c.nodes, func(p *proc) bool { return p.name == gone })
		if i < 0 || !c.pc.Running(i) {
			continue
		}
		r.exits.Go(func() {
			if err := r.awaitRemovedExit(ctx, i, limit); err != nil {
				r.fail(fmt.Errorf("change %s: %w", ch.Desc, err))
				return
			}
			r.mu.Lock()
			r.changes[k].RemovedExited = append(r.changes[k].RemovedExited, gone)
			r.mu.Unlock()
		})
	}
	return ch.Desc, nil
}

// changeCut records a change the end of the run cut short and says where
// it stood.
func (r *runner) changeCut(ch MembershipChange, want memberView, lastDiff string) error {
	r.addChange(ch)
	if lastDiff == "" {
		return fmt.Errorf("the run ended before the change reached every member (want %v), while the request was still waiting for the leader's answer", want)
	}
	return fmt.Errorf("the run ended before the change reached every member (want %v): %s", want, lastDiff)
}

// requestChange sends the change to node leader.
func (r *runner) requestChange(ctx context.Context, kind string, leader, target int, replaces string) error {
	c := r.c
	client := pb.NewNodeClient(r.sp.conns[leader])
	ctx, cancel := context.WithTimeout(ctx, changeLimit*r.o.ElectionTimeout)
	defer cancel()
	if kind == FaultRemove {
		_, err := client.RemoveMember(ctx, &pb.RemoveMemberRequest{Name: c.nodes[target].name})
		return err
	}
	m := c.member(target)
	_, err := client.AddMember(ctx, &pb.AddMemberRequest{
		Member: &pb.ClusterMember{
			Name: c.nodes[target].name, Address: c.peerAddr(leader, target),
			Witness: m.Witness, Priority: int32(m.Priority),
		},
		Replaces: replaces,
	})
	return err
}

// handOver asks node leader to hand leadership to another member (of its
// choosing, as `raftelect transfer` does without --to) and returns the node
// that leads then.
func (r *runner) handOver(ctx context.Context, leader int, deadline time.Time) (int, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	resp, err := pb.NewNodeClient(r.sp.conns[leader]).Transfer(ctx, &pb.TransferRequest{})
	if err != nil {
		return -1, err
	}
	i := slices.IndexFunc(r.c.nodes, func(p *proc) bool { return p.name == resp.GetLeader() })
	if i < 0 || i == leader {
		return -1, fmt.Errorf("after the transfer %q leads (term %d), not another member", resp.GetLeader(), resp.GetTerm())
	}
	// A leader a moment old has no acknowledgements yet, and refuses to
	// remove a voter until a quorum of the rest acknowledged it ("only 1
	// acknowledged this leader"): ask once it holds the lease, which rests
	// on those acknowledgements.
	for !r.t.holdsLease(resp.GetLeader()) {
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("%s leads after the transfer but did not take the lease", resp.GetLeader())
		}
		if err := sleepCtx(ctx, changePoll); err != nil {
			return -1, err
		}
	}
	return i, nil
}

// awaitLeader waits until the event logs show a leader that runs.
func (r *runner) awaitLeader(ctx context.Context, deadline time.Time) (int, error) {
	for {
		if l, _ := r.t.leader(); l != "" {
			i := slices.IndexFunc(r.c.nodes, func(p *proc) bool { return p.name == l })
			if i >= 0 && r.c.pc.Running(i) {
				return i, nil
			}
		}
		if time.Now().After(deadline) {
			return -1, errors.New("no leader to ask for the change")
		}
		if err := sleepCtx(ctx, changePoll); err != nil {
			return -1, err
		}
	}
}

// leaderMembers returns the leader's applied membership, the cluster ID
// and the leader, once it has no change in progress (no learner).
func (r *runner) leaderMembers(ctx context.Context, limit time.Duration) (memberView, string, int, error) {
	deadline := time.Now().Add(limit)
	for {
		leader, err := r.awaitLeader(ctx, deadline)
		if err != nil {
			return nil, "", -1, err
		}
		resp, err := r.members(ctx, leader)
		if err == nil {
			v := viewOf(resp)
			if !slices.ContainsFunc(v, func(n string) bool { return strings.HasSuffix(n, "(learner)") }) && resp.GetClusterId() != "" {
				return v, resp.GetClusterId(), leader, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, "", -1, fmt.Errorf("the leader %s did not answer Members with a cluster ID and no change in progress within %v (last error: %v)", r.c.nodes[leader].name, limit, err)
		}
		if err := sleepCtx(ctx, changePoll); err != nil {
			return nil, "", -1, err
		}
	}
}

// awaitRemovedExit waits for node i's process to exit by itself and checks
// that it said it was removed.
func (r *runner) awaitRemovedExit(ctx context.Context, i int, limit time.Duration) error {
	c := r.c
	p := c.running(i)
	if p == nil {
		return nil
	}
	start := time.Now()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-p.Done():
	case <-t.C:
		return fmt.Errorf("%s was removed but still runs %v later", c.nodes[i].name, limit)
	case <-ctx.Done():
		return fmt.Errorf("%s was removed but still ran %v later, when the run ended", c.nodes[i].name, time.Since(start).Round(time.Millisecond))
	}
	tail := c.stderrTail(i, 5)
	if p.ExitCode() == 0 || !strings.Contains(tail, "removed") {
		return fmt.Errorf("%s exited (code %d) but not as removed; its last lines:\n%s", c.nodes[i].name, p.ExitCode(), tail)
	}
	r.logf("%s exited by itself after its removal (code %d)", c.nodes[i].name, p.ExitCode())
	return nil
}

// addChange records ch and returns its index in r.changes.
func (r *runner) addChange(ch MembershipChange) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, ch)
	return len(r.changes) - 1
}

// checkFinalMembers: after the last change, every running node, restarted
// ones included, must show the members that change left.
func (r *runner) checkFinalMembers(ctx context.Context) {
	r.mu.Lock()
	var want memberView
	if n := len(r.changes); n > 0 && r.changes[n-1].Applied != 0 {
		want = r.changes[n-1].After // one that never applied failed the run already
	}
	r.mu.Unlock()
	if want == nil {
		return
	}
	for i, p := range r.c.nodes {
		if !r.c.pc.Running(i) {
			continue
		}
		resp, err := r.members(ctx, i)
		switch {
		case err != nil:
			r.fail(fmt.Errorf("at the end, %s did not answer Members: %w", p.name, err))
		case !slices.Equal(viewOf(resp), want):
			r.fail(fmt.Errorf("at the end, %s shows members %v, not %v as the last change left them", p.name, viewOf(resp), want))
		}
	}
}

// jointMarker is what a node's log line about an applied membership says of
// a joint configuration (core's memberSummary).
var jointMarker = []byte("[joint]")

// awaitJointLeader watches the nodes' logs from now on and returns the
// leader once its log says it applied a joint configuration. The leader
// applies it first and leaves it after one more round trip to a quorum:
// the window a kill must hit.
func (r *runner) awaitJointLeader(ctx context.Context, deadline time.Time) (int, error) {
	c := r.c
	offs := make([]int64, len(c.nodes))
	for i := range c.nodes {
		offs[i] = c.pc.LogSize(i)
	}
	partial := make([][]byte, len(c.nodes))
	for {
		for i, p := range c.nodes {
			b, n := readFrom(p.stderr, offs[i])
			offs[i] += n
			b = append(partial[i], b...)
			for {
				nl := bytes.IndexByte(b, '\n')
				if nl < 0 {
					break
				}
				line := b[:nl]
				b = b[nl+1:]
				if !bytes.Contains(line, []byte("membership changed")) || !bytes.Contains(line, jointMarker) {
					continue
				}
				if l, _ := r.t.leader(); l == p.name && c.pc.Running(i) {
					return i, nil
				}
			}
			partial[i] = append([]byte(nil), b...)
		}
		if time.Now().After(deadline) {
			return -1, errors.New("no leader applied a joint configuration")
		}
		// Tight: the leader stays in the joint configuration for about
		// one round trip and one write to disk.
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return -1, err
		}
	}
}

// leftJoint reports whether node i's log says it applied a configuration
// that is not joint after its last joint one: read after its process is
// gone, it tells whether a kill landed inside the joint configuration.
func leftJoint(c *cluster, i int) (bool, error) {
	b, err := os.ReadFile(c.nodes[i].stderr)
	if err != nil {
		return false, err
	}
	lines := bytes.Split(b, []byte("\n"))
	for k := len(lines) - 1; k >= 0; k-- {
		if bytes.Contains(lines[k], []byte("membership changed")) {
			return !bytes.Contains(lines[k], jointMarker), nil
		}
	}
	return false, errors.New("no membership change in its log")
}

// readFrom returns what file name holds from offset off on.
func readFrom(name string, off int64) ([]byte, int64) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, 0
	}
	b, _ := io.ReadAll(f)
	return b, int64(len(b))
}
