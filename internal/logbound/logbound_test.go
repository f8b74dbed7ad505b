package logbound

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func newTestLogger(burst int, every time.Duration) (*slog.Logger, *bytes.Buffer, *fakeClock) {
	var buf bytes.Buffer
	clk := &fakeClock{t: time.Unix(1000, 0)}
	h := newWithClock(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}), burst, every, clk.now)
	return slog.New(h), &buf, clk
}

func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestFloodOfOneKindWritesOnlyItsBudget(t *testing.T) {
	log, buf, clk := newTestLogger(5, 10*time.Second)
	for range 100_000 {
		log.Warn("rejected message", "from", "n2")
	}
	require.Len(t, lines(buf), 5, "a flood writes only the burst")

	clk.t = clk.t.Add(10 * time.Second)
	log.Warn("rejected message", "from", "n2")
	got := lines(buf)
	require.Len(t, got, 6)
	require.Contains(t, got[5], "suppressed=99995", "the next line written says how many were suppressed")
}

func TestKindsHaveSeparateBudgets(t *testing.T) {
	log, buf, _ := newTestLogger(1, time.Minute)
	for range 10 {
		log.Warn("a")
		log.Warn("b")
		log.Info("a") // another level is another kind
	}
	require.Len(t, lines(buf), 3)
}

func TestKindAttributeNamesTheKindAndIsNotWritten(t *testing.T) {
	log, buf, _ := newTestLogger(1, time.Minute)
	log.Warn("term 5 ignored vote from 7", KindKey, "%d ignored vote from %x")
	log.Warn("term 6 ignored vote from 9", KindKey, "%d ignored vote from %x")
	got := lines(buf)
	require.Len(t, got, 1)
	require.NotContains(t, got[0], KindKey)
}

func TestKindsBeyondTheBoundShareOneBudget(t *testing.T) {
	log, buf, _ := newTestLogger(1, time.Minute)
	for i := range MaxKinds + 1000 {
		log.Warn("x", KindKey, strings.Repeat("k", i+1))
	}
	require.Len(t, lines(buf), MaxKinds+1, "a peer cannot grow the table or the log by varying the text")
}

func TestWithAttrsSharesTheBudget(t *testing.T) {
	log, buf, _ := newTestLogger(2, time.Minute)
	a := log.With("node", "n1")
	b := log.With("node", "n1", "peer", "n2")
	for range 10 {
		a.Warn("m")
		b.Warn("m")
	}
	require.Len(t, lines(buf), 2)
}
