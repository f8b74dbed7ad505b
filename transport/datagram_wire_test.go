package transport

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/raftelect/raftelect/proto/raftelect/v1"
)

var wireRequests = []*pb.DatagramRequest{
	{},
	{Heartbeat: &pb.Heartbeat{}},
	{Heartbeat: &pb.Heartbeat{Term: 7}, Stamp: 123456789, State: 0xdeadbeefcafef00d},
	{Heartbeat: &pb.Heartbeat{Term: 7, Commit: proto.Uint64(0)}, Stamp: 1},
	{Heartbeat: &pb.Heartbeat{Term: math.MaxUint64, Commit: proto.Uint64(math.MaxUint64)}, Stamp: math.MaxUint64, State: math.MaxUint64},
	{State: 1},
}

var wireAnswers = []*pb.DatagramAnswer{
	{},
	{Answers: 1, Stream: true},
	{Answers: 99, AckStamp: 1 << 40, AckIncarnation: 0x0123456789abcdef, AckTerm: 3, AckLeader: 1, AckPromiseNs: 900_000_000},
	{Answers: math.MaxUint64, AckPromiseNs: -1},
	{AckPromiseNs: math.MinInt64, AckIncarnation: 1},
}

// The hand encoding is byte for byte the generated code's, each decodes
// what the other encodes, and the largest messages fit maxPayload.
func TestDatagramWire_MatchesTheGeneratedCode(t *testing.T) {
	t.Parallel()
	matchesGenerated(t, "request", wireRequests, appendDatagramRequest, decodeDatagramRequest)
	matchesGenerated(t, "answer", wireAnswers, appendDatagramAnswer, decodeDatagramAnswer)
}

func matchesGenerated[M any, PM interface {
	*M
	proto.Message
}](t *testing.T, what string, msgs []PM, encode func([]byte, PM) []byte, decode func([]byte, PM) error) {
	for i, m := range msgs {
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		require.NoError(t, err)
		require.Equal(t, want, encode([]byte{}, m), "%s %d: %v", what, i, m)
		require.LessOrEqual(t, len(want), maxPayload, "%s %d", what, i)
		got := PM(new(M))
		require.NoError(t, decode(want, got))
		require.True(t, proto.Equal(m, got), "%s %d: decoded %v, want %v", what, i, got, m)
	}
}

// On any input the hand decoders agree with proto.Unmarshal: both fail,
// or both give the same message (less the unknown fields, which the hand
// decoders do not keep).
func FuzzDatagramWire_DecodesAsProtoDoes(f *testing.F) {
	for _, m := range wireRequests {
		f.Add(appendDatagramRequest(nil, m))
	}
	for _, m := range wireAnswers {
		f.Add(appendDatagramAnswer(nil, m))
	}
	f.Add([]byte{0x0a, 0x02, 0x08}) // a heartbeat cut short
	f.Add([]byte{0x0b, 0x0c})       // an empty group at field 1
	f.Add([]byte{0x0c})             // an end of group alone
	f.Add([]byte{0x10, 0x01, 0x10, 0x02, 0x0a, 0x02, 0x08, 0x05, 0x0a, 0x02, 0x10, 0x06})
	f.Fuzz(func(t *testing.T, b []byte) {
		var wantReq, gotReq pb.DatagramRequest
		wantErr := proto.Unmarshal(b, &wantReq)
		gotErr := decodeDatagramRequest(b, &gotReq)
		require.Equal(t, wantErr == nil, gotErr == nil, "request %x: proto says %v, hand %v", b, wantErr, gotErr)
		if wantErr == nil {
			dropUnknown(&wantReq)
			require.True(t, proto.Equal(&wantReq, &gotReq), "request %x: proto %v, hand %v", b, &wantReq, &gotReq)
		}
		var wantAns, gotAns pb.DatagramAnswer
		wantErr = proto.Unmarshal(b, &wantAns)
		gotErr = decodeDatagramAnswer(b, &gotAns)
		require.Equal(t, wantErr == nil, gotErr == nil, "answer %x: proto says %v, hand %v", b, wantErr, gotErr)
		if wantErr == nil {
			wantAns.ProtoReflect().SetUnknown(nil)
			require.True(t, proto.Equal(&wantAns, &gotAns), "answer %x: proto %v, hand %v", b, &wantAns, &gotAns)
		}
	})
}

func dropUnknown(r *pb.DatagramRequest) {
	r.ProtoReflect().SetUnknown(nil)
	if r.Heartbeat != nil {
		r.Heartbeat.ProtoReflect().SetUnknown(nil)
	}
}
