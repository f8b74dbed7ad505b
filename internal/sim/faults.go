package sim

import (
	"fmt"
	"time"

	"github.com/raftelect/raftelect/eventlog"
	"github.com/raftelect/raftelect/storage"
)

// planFaults draws the schedule's faults: one to four, each at a random
// time with a random length, healed before the end of the run so that the
// last seconds show the cluster settle.
func (s *sim) planFaults() {
	end := s.opts.Duration - 2*ElectionTimeout
	if len(s.opts.Focus) == 0 && s.rng.IntN(6) == 0 {
		// A restart that lost its state comes alone: docs/safety.md ("What
		// it does not cover") names lost state on one node together with
		// another fault that leaves a node a term behind as beyond the vote
		// guard, and so is a majority losing state. (Drawn with other
		// faults, seed 502 of an earlier model shows two leaders of term 2
		// after two nodes lost their state.)
		at := ElectionTimeout + time.Duration(s.rng.Int64N(int64(end-ElectionTimeout)))
		length := min(200*time.Millisecond+time.Duration(s.rng.Int64N(int64(4*time.Second))), end-at)
		nd := s.nodes[s.rng.IntN(len(s.nodes))]
		if s.m != nil {
			s.aloneWithLostState()
		}
		s.faults = append(s.faults, fmt.Sprintf("crash-lose-state %s at %v for %v", nd.name, at, length))
		s.at(at, func() { s.crash(nd) })
		s.at(at+length, func() { s.restart(nd, true) })
		return
	}
	count := 1 + s.rng.IntN(4)
	kinds := []string{"partition", "one-way", "crash", "pause", "slow-disk", "backer-restart"}
	if s.opts.Refusals {
		kinds = append(kinds, "reject", "reject-all")
	}
	if len(s.opts.Focus) > 0 {
		kinds, count = s.opts.Focus, 2+s.rng.IntN(4)
	}
	for range count {
		at := ElectionTimeout + time.Duration(s.rng.Int64N(int64(end-ElectionTimeout)))
		length := 200*time.Millisecond + time.Duration(s.rng.Int64N(int64(4*time.Second)))
		length = min(length, end-at)
		kind := kinds[s.rng.IntN(len(kinds))]
		a := s.rng.IntN(len(s.nodes))
		b := (a + 1 + s.rng.IntN(len(s.nodes)-1)) % len(s.nodes)
		na, nb := s.nodes[a], s.nodes[b]
		s.faults = append(s.faults, fmt.Sprintf("%s %s/%s at %v for %v", kind, na.name, nb.name, at, length))
		switch kind {
		case "partition":
			s.at(at, func() { s.setDrop(a, true); s.trace("fault: %s cut off", na.name) })
			s.at(at+length, func() { s.setDrop(a, false); s.trace("heal: %s", na.name) })
		case "one-way":
			s.at(at, func() { s.links[a][b].drop = true; s.trace("fault: %s -> %s dropped", na.name, nb.name) })
			s.at(at+length, func() { s.links[a][b].drop = false; s.trace("heal: %s -> %s", na.name, nb.name) })
		case "reject":
			// b's firewall rejects connections from a; b is alive.
			s.at(at, func() { s.links[a][b].reject = true; s.trace("fault: %s refuses %s", nb.name, na.name) })
			s.at(at+length, func() { s.links[a][b].reject = false; s.trace("heal: %s accepts %s", nb.name, na.name) })
		case "reject-all":
			// A reject rule in front of b: every peer's connection to it is
			// refused, while b's own connections out still work.
			s.at(at, func() { s.setReject(b, true); s.trace("fault: %s refuses everyone", nb.name) })
			s.at(at+length, func() { s.setReject(b, false); s.trace("heal: %s accepts everyone", nb.name) })
		case "crash":
			if s.rng.IntN(2) == 0 {
				// A quick restart (a supervisor restarting the process):
				// back within the leases and promises it left behind.
				length = 50*time.Millisecond + time.Duration(s.rng.Int64N(int64(450*time.Millisecond)))
			}
			s.at(at, func() { s.crash(na) })
			s.at(at+length, func() { s.restart(na, false) })
		case "backer-restart":
			// The worst moment for a restart: the leader's lease rests on
			// one follower's promise (the other stopped hearing the leader
			// a little earlier), and that follower restarts at once, cut
			// off from the leader, just as the other one campaigns. Only
			// the vote guard keeps its vote for the campaign inside the
			// promise it made before it went down.
			gap := 200*time.Millisecond + time.Duration(s.rng.Int64N(int64(500*time.Millisecond)))
			s.at(at, func() {
				l := s.leaseHolder()
				if l < 0 {
					return
				}
				f2, f1 := s.followers(l)
				s.links[l][f2].drop = true
				s.trace("fault: %s -> %s dropped (backer-restart)", s.nodes[l].name, s.nodes[f2].name)
				s.at(s.now+gap, func() {
					s.links[l][f1].drop = true
					s.crash(s.nodes[f1])
					s.at(s.now+20*time.Millisecond+time.Duration(s.rng.Int64N(int64(100*time.Millisecond))), func() { s.restart(s.nodes[f1], false) })
				})
				s.at(s.now+gap+3*time.Second, func() {
					s.links[l][f1].drop, s.links[l][f2].drop = false, false
					s.trace("heal: backer-restart")
				})
			})
		case "pause":
			s.at(at, func() {
				na.pausedUntil = max(na.pausedUntil, s.now+length)
				s.trace("fault: %s paused until %v", na.name, na.pausedUntil)
			})
		case "slow-disk":
			delay := time.Duration(1+s.rng.IntN(300)) * time.Millisecond
			s.at(at, func() { na.diskDelay = delay; s.trace("fault: %s disk takes %v", na.name, delay) })
			s.at(at+length, func() { na.diskDelay = 0; s.trace("heal: %s disk", na.name) })
		}
	}
}

func (s *sim) at(t time.Duration, f func()) {
	s.push(&event{at: t, kind: evFault, fault: f})
}

func (s *sim) setDrop(a int, drop bool) {
	for b := range s.nodes {
		if b != a {
			s.links[a][b].drop, s.links[b][a].drop = drop, drop
		}
	}
}

func (s *sim) setReject(b int, reject bool) {
	for a := range s.nodes {
		if a != b {
			s.links[a][b].reject = reject
		}
	}
}

// crash kills nd's process: its lease ends with it.
func (s *sim) crash(nd *node) {
	if !nd.up {
		return
	}
	s.closeLease(nd, s.now)
	nd.up = false
	s.log(nd, eventlog.Event{Kind: eventlog.KindCrash})
	s.trace("fault: %s crashed", nd.name)
}

// restart starts nd again, with its store or (lost) an empty one.
func (s *sim) restart(nd *node, lost bool) {
	if nd.up || nd.gone || nd.inc == 0 {
		return // running, stopped for good after its removal, or a spare never started
	}
	store := nd.store
	if lost {
		store = storage.NewMemory()
		if l := s.leader(); l != nil && s.m != nil {
			nd.lostUnder = l.core.Status().GetTerm()
		}
	}
	s.trace("restart: %s lost=%v", nd.name, lost)
	s.start(nd, store)
}

// leaseHolder is the node that holds a lease now, or -1.
func (s *sim) leaseHolder() int {
	for i, nd := range s.nodes {
		if nd.up && nd.leaseOpen {
			return i
		}
	}
	return -1
}

// followers returns two nodes other than l, drawn at random.
func (s *sim) followers(l int) (int, int) {
	var others []int
	for i := range s.nodes {
		if i != l {
			others = append(others, i)
		}
	}
	a := s.rng.IntN(len(others))
	b := (a + 1 + s.rng.IntN(len(others)-1)) % len(others)
	return others[a], others[b]
}
