// Package logbound bounds how many log lines the network can make a node
// write. Every log line a peer can trigger (a rejected message, a refused
// connection, raft's own complaints about odd messages) passes through a
// Handler that gives each kind of line a small budget: a burst, then one
// line per interval. Lines over budget are counted, not written; the next
// line of that kind that is written carries the count as "suppressed".
//
// A kind is the level and message of a record, or the value of its "logkind"
// attribute when it has one (for messages formatted with variable text, such
// as raft's, whose format string is the kind). The number of kinds tracked is
// bounded too: past MaxKinds, new kinds share one budget.
package logbound

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// KindKey is the attribute that names a record's kind when its message
// alone does not (the attribute itself is not written).
const KindKey = "logkind"

// MaxKinds bounds the budgets kept; kinds beyond it share one.
const MaxKinds = 256

// Handler rate-limits records per kind and passes the rest to the next
// handler.
type Handler struct {
	next  slog.Handler
	state *state
}

type state struct {
	mu     sync.Mutex
	burst  int
	every  time.Duration
	now    func() time.Time
	kinds  map[kindKey]*budget
	shared budget
}

type kindKey struct {
	level slog.Level
	kind  string
}

type budget struct {
	tokens     float64
	last       time.Time
	suppressed uint64
}

// New wraps next: each kind may write burst lines at once and one more per
// every after that.
func New(next slog.Handler, burst int, every time.Duration) *Handler {
	return newWithClock(next, burst, every, time.Now)
}

func newWithClock(next slog.Handler, burst int, every time.Duration, now func() time.Time) *Handler {
	return &Handler{next: next, state: &state{
		burst: burst, every: every, now: now, kinds: map[kindKey]*budget{},
	}}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	kind := r.Message
	hasKind := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == KindKey {
			kind, hasKind = a.Value.String(), true
			return false
		}
		return true
	})
	ok, suppressed := h.state.allow(kindKey{r.Level, kind})
	if !ok {
		return nil
	}
	if hasKind || suppressed > 0 {
		out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool {
			if a.Key != KindKey {
				out.AddAttrs(a)
			}
			return true
		})
		if suppressed > 0 {
			out.AddAttrs(slog.Uint64("suppressed", suppressed))
		}
		r = out
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler; the budgets stay shared.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(as), state: h.state}
}

// WithGroup implements slog.Handler; the budgets stay shared.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), state: h.state}
}

// allow spends a token of k's budget, returning whether the line may be
// written and how many lines of its kind were suppressed since the last one.
func (s *state) allow(k kindKey) (bool, uint64) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.kinds[k]
	if b == nil {
		if len(s.kinds) >= MaxKinds {
			b = &s.shared
		} else {
			b = &budget{tokens: float64(s.burst), last: now}
			s.kinds[k] = b
		}
	}
	if s.every > 0 {
		b.tokens = min(float64(s.burst), b.tokens+float64(now.Sub(b.last))/float64(s.every))
	}
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return true, n
}
