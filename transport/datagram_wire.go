package transport

// The two datagram messages, DatagramRequest and DatagramAnswer
// (proto/raftelect/v1/peer.proto), are encoded and decoded here with
// protowire rather than with proto.Marshal and proto.Unmarshal. Each node
// handles a few of them per heartbeat, every time with cold caches after
// a heartbeat's sleep, and the reflective path touched enough code and
// tables to be a tenth of an idle leader's CPU (docs/benchmarks.md). The
// bytes are the ones proto.Marshal makes (fields in number order, proto3
// zero values left out), and decoding follows proto.Unmarshal: unknown
// fields and fields of an unexpected wire type are skipped, a repeated
// scalar keeps its last value, a repeated message is merged.
// TestDatagramWire_* hold both to the generated code, FuzzDatagramWire_*
// on arbitrary input.

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

var errDatagramWire = errors.New("malformed datagram message")

func appendHeartbeat(b []byte, h *pb.Heartbeat) []byte {
	if h.Term != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, h.Term)
	}
	if h.Commit != nil {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, *h.Commit)
	}
	return b
}

func sizeHeartbeat(h *pb.Heartbeat) int {
	n := 0
	if h.Term != 0 {
		n += 1 + protowire.SizeVarint(h.Term)
	}
	if h.Commit != nil {
		n += 1 + protowire.SizeVarint(*h.Commit)
	}
	return n
}

// appendDatagramRequest appends r's encoding to b.
func appendDatagramRequest(b []byte, r *pb.DatagramRequest) []byte {
	if r.Heartbeat != nil {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeHeartbeat(r.Heartbeat)))
		b = appendHeartbeat(b, r.Heartbeat)
	}
	if r.Stamp != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, r.Stamp)
	}
	if r.State != 0 {
		b = protowire.AppendTag(b, 3, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, r.State)
	}
	return b
}

// appendDatagramAnswer appends a's encoding to b.
func appendDatagramAnswer(b []byte, a *pb.DatagramAnswer) []byte {
	varint := func(num protowire.Number, v uint64) {
		if v != 0 {
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, v)
		}
	}
	varint(1, a.Answers)
	varint(2, protowire.EncodeBool(a.Stream))
	varint(3, a.AckStamp)
	if a.AckIncarnation != 0 {
		b = protowire.AppendTag(b, 4, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, a.AckIncarnation)
	}
	varint(5, a.AckTerm)
	varint(6, a.AckLeader)
	varint(7, uint64(a.AckPromiseNs))
	return b
}

// field is one decoded field: its number and type, and its value as a
// varint or fixed64 (v) or bytes (raw).
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	raw []byte
}

// eachField calls f for each field of b, in order; an error when b is not
// a well-formed message.
func eachField(b []byte, f func(field)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber { // as proto.Unmarshal
			return errDatagramWire
		}
		b = b[n:]
		fd := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			fd.v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			fd.v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			fd.raw, n = protowire.ConsumeBytes(b)
		default: // fixed32, groups: never ours, skipped whole
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errDatagramWire
		}
		b = b[n:]
		f(fd)
	}
	return nil
}

func decodeHeartbeat(b []byte, h *pb.Heartbeat) error {
	return eachField(b, func(f field) {
		if f.typ != protowire.VarintType {
			return
		}
		switch f.num {
		case 1:
			h.Term = f.v
		case 2:
			v := f.v
			h.Commit = &v
		}
	})
}

// decodeDatagramRequest decodes b into r, which it resets first.
func decodeDatagramRequest(b []byte, r *pb.DatagramRequest) error {
	r.Reset()
	var inner error
	err := eachField(b, func(f field) {
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			if r.Heartbeat == nil {
				r.Heartbeat = &pb.Heartbeat{}
			}
			if err := decodeHeartbeat(f.raw, r.Heartbeat); err != nil {
				inner = err
			}
		case f.num == 2 && f.typ == protowire.VarintType:
			r.Stamp = f.v
		case f.num == 3 && f.typ == protowire.Fixed64Type:
			r.State = f.v
		}
	})
	return errors.Join(err, inner)
}

// decodeDatagramAnswer decodes b into a, which it resets first.
func decodeDatagramAnswer(b []byte, a *pb.DatagramAnswer) error {
	a.Reset()
	return eachField(b, func(f field) {
		if f.typ == protowire.Fixed64Type {
			if f.num == 4 {
				a.AckIncarnation = f.v
			}
			return
		}
		if f.typ != protowire.VarintType {
			return
		}
		switch f.num {
		case 1:
			a.Answers = f.v
		case 2:
			a.Stream = protowire.DecodeBool(f.v)
		case 3:
			a.AckStamp = f.v
		case 5:
			a.AckTerm = f.v
		case 6:
			a.AckLeader = f.v
		case 7:
			a.AckPromiseNs = int64(f.v)
		}
	})
}
