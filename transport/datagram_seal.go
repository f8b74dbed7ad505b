package transport

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Sealed datagrams. A datagram is authenticated and encrypted with a key
// that both ends of one TLS session of the Peer service export from it
// (RFC 8446 section 7.5, tls.ConnectionState.ExportKeyingMaterial): only
// the two processes that did the mutually authenticated handshake know
// it, so a datagram that opens came from the member whose certificate that
// session verified, and from no one else. The exporter's context is 16
// random bytes that the sender puts in the first request of its control
// stream (SendRequest.datagram_context), so each stream has a key of its
// own, which lives as long as the stream: counters start at 1 for every
// key, and a key must never see a counter twice (AES-GCM's nonce).
//
// On the wire: kind (1 byte), key ID (4), counter (8), then the AES-GCM
// sealed payload and its 16-byte tag. The first 13 bytes are the
// additional data, and the nonce is the kind and the counter, so the two
// directions of one key (requests from the TLS client, answers from the
// TLS server) never share a nonce. A counter may be accepted once only
// (replayWindow).

const (
	datagramRequest byte = 1 // from the TLS client of the session: a request
	datagramAnswer  byte = 2 // from its TLS server: the answer to one

	sealHeader   = 1 + 4 + 8
	sealOverhead = sealHeader + 16

	// exporterLabel names what the exported key is for (RFC 5705 labels
	// start with EXPORTER).
	exporterLabel = "EXPORTER-raftelect-datagram-v1"
)

// datagramKey is one TLS session's datagram key.
type datagramKey struct {
	id   uint32
	aead cipher.AEAD
}

// datagramContextBytes is the length of a stream's key context.
const datagramContextBytes = 16

// exportDatagramKey derives the datagram key of one stream (context) on a
// TLS session.
func exportDatagramKey(cs *tls.ConnectionState, context []byte) (*datagramKey, error) {
	if cs == nil || !cs.HandshakeComplete {
		return nil, errors.New("no TLS session")
	}
	if len(context) != datagramContextBytes {
		return nil, fmt.Errorf("a datagram key context of %d bytes, want %d", len(context), datagramContextBytes)
	}
	km, err := cs.ExportKeyingMaterial(exporterLabel, context, 32+4)
	if err != nil {
		return nil, fmt.Errorf("exporting a datagram key: %w", err)
	}
	block, err := aes.NewCipher(km[:32])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &datagramKey{id: binary.BigEndian.Uint32(km[32:]), aead: aead}, nil
}

func nonce(kind byte, counter uint64) []byte {
	var n [12]byte
	n[0] = kind
	binary.BigEndian.PutUint64(n[4:], counter)
	return n[:]
}

// seal appends to dst the datagram of kind with payload, under counter.
func (k *datagramKey) seal(dst []byte, kind byte, counter uint64, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, kind)
	dst = binary.BigEndian.AppendUint32(dst, k.id)
	dst = binary.BigEndian.AppendUint64(dst, counter)
	return k.aead.Seal(dst, nonce(kind, counter), payload, dst[start:start+sealHeader])
}

// sealedHeader reads a datagram's header; ok is false when it is too short
// to be one.
func sealedHeader(b []byte) (kind byte, id uint32, counter uint64, ok bool) {
	if len(b) < sealOverhead {
		return 0, 0, 0, false
	}
	return b[0], binary.BigEndian.Uint32(b[1:5]), binary.BigEndian.Uint64(b[5:13]), true
}

// open authenticates and decrypts datagram b (whose header said kind and
// counter) into dst[:0]; it does not check the counter for replays.
func (k *datagramKey) open(dst, b []byte, kind byte, counter uint64) ([]byte, error) {
	return k.aead.Open(dst[:0], nonce(kind, counter), b[sealHeader:], b[:sealHeader])
}

// replayWindow accepts each counter once: counters above the highest seen,
// and those up to 64 below it not seen yet. Datagrams may come late or
// twice; an attacker who recorded one must not make a node step it again.
type replayWindow struct {
	mu      sync.Mutex
	highest uint64
	seen    uint64 // bit i: highest-i was accepted
}

// accept reports whether counter is new, and records it.
func (w *replayWindow) accept(counter uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if counter == 0 {
		return false // counters start at 1
	}
	if counter > w.highest {
		shift := counter - w.highest
		if shift >= 64 {
			w.seen = 0
		} else {
			w.seen <<= shift
		}
		w.seen |= 1
		w.highest = counter
		return true
	}
	back := w.highest - counter
	if back >= 64 || w.seen&(1<<back) != 0 {
		return false
	}
	w.seen |= 1 << back
	return true
}
