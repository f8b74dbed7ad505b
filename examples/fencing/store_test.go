package main

import (
	"errors"
	"testing"
)

// A leader that was replaced (a higher token was seen) cannot write any
// more, even if it still believes it leads: a process paused past the end of
// its lease (GC, SIGSTOP) and then resumed.
func TestFencedStore_RejectsStaleToken(t *testing.T) {
	s := newFencedStore()
	if err := s.Write(3, "owner", "n1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(3, "owner", "n1 again"); err != nil {
		t.Fatalf("the same leadership must be able to write again: %v", err)
	}
	if err := s.Write(5, "owner", "n2"); err != nil {
		t.Fatal(err)
	}
	err := s.Write(3, "owner", "n1 after a pause")
	if !errors.Is(err, ErrStaleToken) {
		t.Fatalf("stale write: got %v, want ErrStaleToken", err)
	}
	if v, hi := s.Get("owner"); v != "n2" || hi != 5 {
		t.Fatalf("store holds %q with highest token %d, want n2 and 5", v, hi)
	}
}
