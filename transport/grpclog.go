package transport

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc/grpclog"

	"github.com/raftelect/raftelect/internal/logbound"
)

// gRPC's own log (grpclog) is global to the process and bypasses the
// elector's bounded logger; some of its lines are the network's doing (a
// peer's GOAWAY, a malformed header, a failed handshake at info level). The
// transport therefore installs, once at init, a grpclog logger that writes
// what gRPC's default one would (GRPC_GO_LOG_SEVERITY_LEVEL: errors only
// unless set; GRPC_GO_LOG_VERBOSITY_LEVEL) to the same place (stderr), but
// through a logbound budget per kind of line, with the same numbers as the
// elector's: 10 lines at once, then one per 6 s, suppressed lines counted.
// A program that wants gRPC's logs elsewhere calls grpclog.SetLoggerV2
// after importing this package, as gRPC documents (before any RPC).
func init() { grpclog.SetLoggerV2(newGRPCLogger(os.Stderr, os.Getenv)) }

const (
	grpcLogBurst = 10
	grpcLogEvery = 6 * time.Second
)

// grpcLogger implements grpclog.LoggerV2 and grpclog.DepthLoggerV2.
type grpcLogger struct {
	log       *slog.Logger
	verbosity int
}

func newGRPCLogger(w io.Writer, getenv func(string) string) *grpcLogger {
	level := slog.LevelError
	switch strings.ToLower(getenv("GRPC_GO_LOG_SEVERITY_LEVEL")) {
	case "warning":
		level = slog.LevelWarn
	case "info":
		level = slog.LevelInfo
	}
	v, _ := strconv.Atoi(getenv("GRPC_GO_LOG_VERBOSITY_LEVEL"))
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	return &grpcLogger{log: slog.New(logbound.New(h, grpcLogBurst, grpcLogEvery)).With("logger", "grpc"), verbosity: v}
}

// grpcKind is a line's kind for its budget: its text with every run of
// digits as one '#', cut at 80 bytes. gRPC formats its messages before they
// reach the logger, so addresses, ports and stream IDs would otherwise make
// every line a kind of its own.
func grpcKind(msg string) string {
	var b strings.Builder
	inDigits := false
	for _, r := range msg {
		if b.Len() >= 80 {
			break
		}
		if unicode.IsDigit(r) {
			if !inDigits {
				b.WriteByte('#')
			}
			inDigits = true
			continue
		}
		inDigits = false
		b.WriteRune(r)
	}
	return b.String()
}

func (g *grpcLogger) emit(level slog.Level, msg string) {
	if !g.log.Enabled(context.Background(), level) {
		return
	}
	g.log.Log(context.Background(), level, msg, logbound.KindKey, grpcKind(msg))
}

func (g *grpcLogger) Info(args ...any)   { g.emit(slog.LevelInfo, fmt.Sprint(args...)) }
func (g *grpcLogger) Infoln(args ...any) { g.emit(slog.LevelInfo, sprintln(args...)) }
func (g *grpcLogger) Infof(format string, args ...any) {
	g.emit(slog.LevelInfo, fmt.Sprintf(format, args...))
}
func (g *grpcLogger) Warning(args ...any)   { g.emit(slog.LevelWarn, fmt.Sprint(args...)) }
func (g *grpcLogger) Warningln(args ...any) { g.emit(slog.LevelWarn, sprintln(args...)) }
func (g *grpcLogger) Warningf(format string, args ...any) {
	g.emit(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (g *grpcLogger) Error(args ...any)   { g.emit(slog.LevelError, fmt.Sprint(args...)) }
func (g *grpcLogger) Errorln(args ...any) { g.emit(slog.LevelError, sprintln(args...)) }
func (g *grpcLogger) Errorf(format string, args ...any) {
	g.emit(slog.LevelError, fmt.Sprintf(format, args...))
}
func (g *grpcLogger) Fatal(args ...any)                 { g.fatal(fmt.Sprint(args...)) }
func (g *grpcLogger) Fatalln(args ...any)               { g.fatal(sprintln(args...)) }
func (g *grpcLogger) Fatalf(format string, args ...any) { g.fatal(fmt.Sprintf(format, args...)) }
func (g *grpcLogger) V(l int) bool                      { return l <= g.verbosity }

// The Depth variants are what gRPC's components call.
func (g *grpcLogger) InfoDepth(_ int, args ...any)    { g.emit(slog.LevelInfo, sprintln(args...)) }
func (g *grpcLogger) WarningDepth(_ int, args ...any) { g.emit(slog.LevelWarn, sprintln(args...)) }
func (g *grpcLogger) ErrorDepth(_ int, args ...any)   { g.emit(slog.LevelError, sprintln(args...)) }
func (g *grpcLogger) FatalDepth(_ int, args ...any)   { g.fatal(sprintln(args...)) }

// fatal is never rate-limited: it ends the process, as gRPC's own does.
func (g *grpcLogger) fatal(msg string) {
	fmt.Fprintln(os.Stderr, "FATAL: grpc:", msg)
	os.Exit(1)
}

// sprintln joins like fmt.Sprintln (spaces between all operands), without
// the newline.
func sprintln(args ...any) string { return strings.TrimSuffix(fmt.Sprintln(args...), "\n") }
