//go:build !memfloor_runtime && !memfloor_tls && !memfloor_grpc && !memfloor_full

package main

import (
	"bytes"
	"context"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/procfs"
)

func init() { measure = runMeasure }

// pkgPath is this tool's package, built by the driver for each level.
const pkgPath = "github.com/raftelect/raftelect/tools/memfloor"

// levelTags are the build tags of each level's executable: its own tag,
// and those of `make lean` that apply (grpcnotrace keeps html/template and
// with it every exported method out of an executable that links gRPC).
var levelTags = map[string]string{
	"runtime": "memfloor_runtime",
	"tls":     "memfloor_tls",
	"grpc":    "memfloor_grpc,lean,grpcnotrace",
	"full":    "memfloor_full,lean,grpcnotrace",
}

type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }
func (e *envFlag) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q: give KEY=VALUE, such as GOGC=50", v)
	}
	*e = append(*e, v)
	return nil
}

func runMeasure(args []string) int {
	fs := flag.NewFlagSet("memfloor measure", flag.ContinueOnError)
	duration := fs.Duration("duration", 60*time.Second, "how long each level is sampled once all its copies are up")
	copies := fs.Int("copies", 3, "processes of each level run at once (a cluster's nodes on one host)")
	levelList := fs.String("levels", strings.Join(levels[:], ","), "levels to measure, in this order")
	binDir := fs.String("bin-dir", "", "where the level executables are built (default: a temporary directory, removed at the end)")
	build := fs.Bool("build", true, "build the level executables; false measures those already in --bin-dir")
	var env envFlag
	fs.Var(&env, "env", "KEY=VALUE added to every level process's environment, such as GOGC=50 (repeatable)")
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *duration <= 0 || *copies < 1 {
		return fail("--duration and --copies must be positive")
	}
	var chosen []string
	for l := range strings.SplitSeq(*levelList, ",") {
		if levelIndex(l) < 0 {
			return fail(fmt.Sprintf("--levels: unknown level %q; give some of %s", l, strings.Join(levels[:], ",")))
		}
		chosen = append(chosen, l)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	work, err := os.MkdirTemp("", "memfloor-measure-")
	if err != nil {
		return fail(err.Error())
	}
	defer os.RemoveAll(work)
	dir := *binDir
	if dir == "" {
		dir = filepath.Join(work, "bin")
	}
	if *build {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(err.Error())
		}
		for _, l := range chosen {
			if err := buildLevel(ctx, l, dir); err != nil {
				return fail(err.Error())
			}
		}
	}

	var results []levelResult
	for _, l := range chosen {
		r, err := measureLevel(ctx, l, filepath.Join(dir, "memfloor-"+l), *copies, *duration, env, work)
		if err != nil {
			return fail(fmt.Sprintf("level %s: %v", l, err))
		}
		results = append(results, r)
	}
	printResults(os.Stdout, results, *copies, *duration, env)
	return 0
}

// buildLevel builds level l's executable into dir with `make lean`'s flags.
func buildLevel(ctx context.Context, l, dir string) error {
	out := filepath.Join(dir, "memfloor-"+l)
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", levelTags[l], "-trimpath", "-ldflags", "-s -w", "-o", out, pkgPath)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build level %s (%s): %v\n%s", l, cmd.String(), err, stderr.String())
	}
	return nil
}

// segments are the sizes in the file of an executable's PT_LOAD segments,
// by their permissions (what `readelf -lW` lists and a process maps).
type segments struct {
	file               int64
	text, rodata, data uint64
}

func readSegments(path string) (segments, error) {
	st, err := os.Stat(path)
	if err != nil {
		return segments{}, err
	}
	f, err := elf.Open(path)
	if err != nil {
		return segments{}, err
	}
	defer f.Close()
	s := segments{file: st.Size()}
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		switch {
		case p.Flags&elf.PF_X != 0:
			s.text += p.Filesz
		case p.Flags&elf.PF_W != 0:
			s.data += p.Filesz
		default:
			s.rodata += p.Filesz
		}
	}
	return s, nil
}

// sample is one process's memory at the end of the window, and the max and
// mean of its VmRSS over the window's per-second samples.
type sample struct {
	rssMax, rssMean            uint64
	rss, rssFile, rssAnon, pss uint64
	exchanges                  string
}

type levelResult struct {
	level string
	seg   segments
	procs []sample
}

// lockedBuffer collects a child's output while the driver reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type child struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan struct{}
	err            error // set before done is closed
}

// measureLevel runs copies processes of level l from bin at once, waits
// until all are up, samples their VmRSS every second for d and reads
// RssFile, RssAnon and Pss at the end. Each process exits by itself a
// little after the window; one that does not is killed by its pid.
func measureLevel(ctx context.Context, l, bin string, copies int, d time.Duration, env []string, work string) (levelResult, error) {
	seg, err := readSegments(bin)
	if err != nil {
		return levelResult{}, fmt.Errorf("read the executable (build it first, or drop --build=false): %w", err)
	}
	tmp, err := os.MkdirTemp(work, l+"-")
	if err != nil {
		return levelResult{}, err
	}
	// The processes run a grace period past the window, so that they are
	// all still up when it ends, then exit by themselves.
	const startLimit, grace = 30 * time.Second, 5 * time.Second
	var children []*child
	defer func() {
		for _, c := range children {
			select {
			case <-c.done:
			default:
				c.cmd.Process.Kill() // a process this driver started, by its pid
				<-c.done
			}
		}
	}()
	for range copies {
		c := &child{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
		c.cmd = exec.Command(bin, "run", "--level", l, "--duration", (d + grace).String())
		// TMPDIR: the full level's bbolt directory goes under the
		// driver's own, which it removes.
		c.cmd.Env = append(append(os.Environ(), "TMPDIR="+tmp), env...)
		c.cmd.Stdout, c.cmd.Stderr = c.stdout, c.stderr
		if err := c.cmd.Start(); err != nil {
			return levelResult{}, err
		}
		children = append(children, c)
		go func() {
			c.err = c.cmd.Wait()
			close(c.done)
		}()
	}
	if err := pollAll(ctx, children, startLimit, func(c *child) (bool, error) {
		select {
		case <-c.done:
			return false, fmt.Errorf("pid %d exited before it was up: %v\n%s", c.cmd.Process.Pid, c.err, c.stderr.String())
		default:
		}
		return strings.Contains(c.stdout.String(), "ready\n"), nil
	}); err != nil {
		return levelResult{}, err
	}

	res := levelResult{level: l, seg: seg, procs: make([]sample, copies)}
	sums := make([]uint64, copies)
	n := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return levelResult{}, ctx.Err()
		case <-tick.C:
		}
		for i, c := range children {
			st, err := status(c.cmd.Process.Pid)
			if err != nil {
				return levelResult{}, fmt.Errorf("pid %d: %w (did it exit? %s)", c.cmd.Process.Pid, err, c.stderr.String())
			}
			res.procs[i].rssMax = max(res.procs[i].rssMax, st.VmRSS)
			sums[i] += st.VmRSS
		}
		n++
	}
	for i, c := range children {
		pid := c.cmd.Process.Pid
		st, err := status(pid)
		if err != nil {
			return levelResult{}, fmt.Errorf("pid %d: %w", pid, err)
		}
		p, err := procfs.NewProc(pid)
		if err != nil {
			return levelResult{}, err
		}
		roll, err := p.ProcSMapsRollup()
		if err != nil {
			return levelResult{}, fmt.Errorf("pid %d: smaps_rollup: %w", pid, err)
		}
		s := &res.procs[i]
		s.rssMean = sums[i] / uint64(max(n, 1))
		s.rss, s.rssFile, s.rssAnon, s.pss = st.VmRSS, st.RssFile, st.RssAnon, roll.Pss
	}
	// Let them finish: each prints its exchanges, which shows it did its
	// periodic work the whole time.
	if err := pollAll(ctx, children, grace+startLimit, func(c *child) (bool, error) {
		select {
		case <-c.done:
			return true, nil
		default:
			return false, nil
		}
	}); err != nil {
		return levelResult{}, fmt.Errorf("waiting for the processes to exit by themselves: %w", err)
	}
	for i, c := range children {
		if c.err != nil {
			return levelResult{}, fmt.Errorf("pid %d: %v\n%s", c.cmd.Process.Pid, c.err, c.stderr.String())
		}
		_, ex, ok := strings.Cut(c.stdout.String(), "exchanges")
		if !ok {
			return levelResult{}, fmt.Errorf("pid %d exited without printing its exchanges: %q", c.cmd.Process.Pid, c.stdout.String())
		}
		res.procs[i].exchanges = strings.TrimSpace(ex)
	}
	return res, nil
}

func status(pid int) (procfs.ProcStatus, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return procfs.ProcStatus{}, err
	}
	return p.NewStatus()
}

// pollAll polls cond for every child every 50 ms until all hold, an error,
// or limit.
func pollAll(ctx context.Context, children []*child, limit time.Duration, cond func(*child) (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		all := true
		for _, c := range children {
			ok, err := cond(c)
			if err != nil {
				return err
			}
			all = all && ok
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done within %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

const mib = 1 << 20

// span prints the range of f over the processes in MB.
func span(ps []sample, f func(sample) uint64) string {
	vals := make([]uint64, len(ps))
	for i, p := range ps {
		vals[i] = f(p)
	}
	lo, hi := slices.Min(vals), slices.Max(vals)
	if fmt.Sprintf("%.1f", float64(lo)/mib) == fmt.Sprintf("%.1f", float64(hi)/mib) {
		return fmt.Sprintf("%.1f", float64(lo)/mib)
	}
	return fmt.Sprintf("%.1f-%.1f", float64(lo)/mib, float64(hi)/mib)
}

func printResults(w io.Writer, results []levelResult, copies int, d time.Duration, env []string) {
	fmt.Fprintf(w, "%d processes per level at once, %v each; MB = 2^20 bytes; VmRSS max and mean over per-second samples, the rest at the end", copies, d)
	if len(env) > 0 {
		fmt.Fprintf(w, "; env %s", strings.Join(env, " "))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "level\tfile\tr-x\tr--\trw-\tVmRSS max\tVmRSS mean\tRssFile\tRssAnon\tPss\texchanges")
	for _, r := range results {
		var ex []string
		for _, p := range r.procs {
			if p.exchanges == "" {
				p.exchanges = "-" // the runtime level exchanges nothing
			}
			ex = append(ex, "["+p.exchanges+"]")
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\n", r.level,
			float64(r.seg.file)/mib, float64(r.seg.text)/mib, float64(r.seg.rodata)/mib, float64(r.seg.data)/mib,
			span(r.procs, func(s sample) uint64 { return s.rssMax }),
			span(r.procs, func(s sample) uint64 { return s.rssMean }),
			span(r.procs, func(s sample) uint64 { return s.rssFile }),
			span(r.procs, func(s sample) uint64 { return s.rssAnon }),
			span(r.procs, func(s sample) uint64 { return s.pss }),
			strings.Join(ex, " "))
	}
	tw.Flush()
}
