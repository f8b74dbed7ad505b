// Package clusterid makes and reads the cluster's identity: a random ID that
// the first leader of a new cluster proposes through raft, so that every
// node applies the same one, and that travels in snapshots once the entry
// that carried it is compacted away. Nodes record it in their stores and
// carry it on every peer connection, so a node of another cluster, or a
// data directory copied from one, is told apart.
package clusterid

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
)

// prefix marks a raft entry (or snapshot data) that carries the cluster ID.
// The cluster proposes nothing else, so it is the only data a log holds.
const prefix = "raftelect.cluster-id.v1:"

// idBytes is the ID's length: 128 random bits, written as 32 hex digits.
const idBytes = 16

// New returns a fresh random cluster ID.
func New() string {
	b := make([]byte, idBytes)
	_, _ = rand.Read(b) // never fails on the platforms Go supports
	return hex.EncodeToString(b)
}

// FromBits returns the cluster ID made of 128 bits a caller drew (the
// deterministic core draws them from its own seeded source).
func FromBits(hi, lo uint64) string {
	b := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, hi), lo)
	return hex.EncodeToString(b)
}

// Valid reports whether id has the shape New gives.
func Valid(id string) bool {
	if len(id) != 2*idBytes {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Record returns the entry data (or snapshot data) that carries id.
func Record(id string) []byte { return append([]byte(prefix), id...) }

// Parse returns the ID in data written by Record, and whether data is such
// a record. Anything else (including a record with a malformed ID) is not.
func Parse(data []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(data, []byte(prefix))
	if !ok || !Valid(string(rest)) {
		return "", false
	}
	return string(rest), true
}
