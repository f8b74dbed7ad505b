package main

import (
	"errors"
	"fmt"
	"sync"
)

// ErrStaleToken is returned for a write whose fencing token is lower than
// one the store has already seen: it comes from a leader that has since
// been replaced, however sure it still is that it leads.
var ErrStaleToken = errors.New("stale fencing token")

// fencedStore stands for any external system leader work writes to (a
// database row, an object store, a queue). It keeps the highest fencing
// token it has seen and rejects writes that carry a lower one. Real systems
// do the same with a conditional write: UPDATE ... WHERE token <= $token,
// a compare-and-swap on a version, a lock with a fencing sequence.
type fencedStore struct {
	mu      sync.Mutex
	highest uint64
	data    map[string]string
	log     []string // accepted writes, in order
}

func newFencedStore() *fencedStore { return &fencedStore{data: map[string]string{}} }

// Write stores key=value if token is at least the highest seen. An equal
// token is the same leadership writing again; a higher one is a new leader,
// and from then on the old one is shut out.
func (s *fencedStore) Write(token uint64, key, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return fmt.Errorf("write %s=%q with token %d, highest seen %d: %w", key, value, token, s.highest, ErrStaleToken)
	}
	s.highest = token
	s.data[key] = value
	s.log = append(s.log, fmt.Sprintf("token %d: %s=%s", token, key, value))
	return nil
}

// Get returns the value of key and the highest token seen.
func (s *fencedStore) Get(key string) (string, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data[key], s.highest
}
