// Package eventlog records a node's leadership history as JSON lines, one
// event per line, so that a checker can read the logs of every node of a
// cluster afterwards and verify raft's and the lease's promises.
//
// Times are CLOCK_MONOTONIC nanoseconds: processes on one host share that
// clock, so events from different processes can be ordered without trusting
// wall clocks. (Across hosts, only per-node order is meaningful.)
package eventlog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
)

// Kind says what an Event records.
type Kind string

const (
	// KindStart: the node process started (after loading its state).
	KindStart Kind = "start"
	// KindState: raft term, vote, role or leader changed.
	KindState Kind = "state"
	// KindLeaseStart: the node began to hold the leader lease; leader-only
	// work may run from now on. Token is the fencing token (the term).
	KindLeaseStart Kind = "lease_start"
	// KindLeaseEnd: the node stopped holding the lease; leader-only work has
	// been told to stop.
	KindLeaseEnd Kind = "lease_end"
	// KindStop: the node stopped cleanly.
	KindStop Kind = "stop"
	// KindCrash is written by a test harness on a node's behalf when it kills
	// the node (kill -9): the node cannot write it itself. Mono is the time of
	// the kill.
	KindCrash Kind = "crash"
)

// Event is one line of an event log.
type Event struct {
	Mono   int64  `json:"mono_ns"`          // CLOCK_MONOTONIC, nanoseconds
	Node   string `json:"node"`             // node name
	Kind   Kind   `json:"kind"`             // what happened
	Term   uint64 `json:"term"`             // raft term at the event
	Vote   string `json:"vote,omitempty"`   // name voted for in Term, "" for none
	Role   string `json:"role,omitempty"`   // follower, pre-candidate, candidate, leader
	Leader string `json:"leader,omitempty"` // leader known at the event, "" for none
	Token  uint64 `json:"token,omitempty"`  // fencing token, for lease events
}

// Writer appends events to a log. It is safe for concurrent use. Each event
// is written with one write call, so a crash leaves at most one partial line,
// which Read skips.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	c   io.Closer
	buf []byte
}

// NewWriter writes events to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Create opens (appending, creating if needed) an event log file.
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	return &Writer{w: f, c: f}, nil
}

// Write appends e; a zero Mono is filled in with Now.
func (w *Writer) Write(e Event) error {
	if e.Mono == 0 {
		e.Mono = Now()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(append(w.buf[:0], b...), '\n')
	_, err = w.w.Write(w.buf)
	return err
}

// Close closes the underlying file, if Create opened it.
func (w *Writer) Close() error {
	if w.c == nil {
		return nil
	}
	return w.c.Close()
}

// Read parses an event log. A torn last line (a crash mid-write) is skipped;
// a malformed line elsewhere is an error naming its line number.
func Read(r io.Reader) ([]Event, error) {
	var out []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	var pendingErr error
	for sc.Scan() {
		line++
		if pendingErr != nil {
			return nil, pendingErr
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			pendingErr = fmt.Errorf("event log line %d: %w", line, err)
			continue
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// ReadFile reads an event log file.
func ReadFile(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ev, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ev, nil
}
