// Command memfloor measures the memory floor of the stack a raftelect node
// carries: how much resident memory any idle Go process needs once it holds
// mutual TLS, gRPC, raft, bbolt and the Prometheus client, whatever it does
// with them. It answers whether issue 15's 12 MB per node can be reached at
// all, and how far a node is above the floor (docs/benchmarks.md, "The floor
// of the stack").
//
// Each level is an idle process that runs for a given duration and exits by
// itself; every level runs what the levels before it run:
//
//	runtime  a Go program that only sleeps
//	tls      a crypto/tls listener on 127.0.0.1 with mutual TLS, one client
//	         connection sending 8 bytes every 100 ms and reading their echo
//	grpc     a gRPC server and client over mutual TLS, a health Check every
//	         100 ms
//	full     a raft.RawNode (one voter) ticked every 100 ms, persisting to a
//	         bbolt file, and a Prometheus registry served over HTTP
//
// A level's executable must link nothing of the levels above it, or its
// file-backed pages would not be its own: the tags memfloor_runtime,
// memfloor_tls, memfloor_grpc and memfloor_full build an executable that
// carries that level and those below only. Built without them, the tool
// carries every level and the driver:
//
//	go run ./tools/memfloor measure --duration 60s
//
// builds one executable per level as `make lean` builds a node, runs three
// copies of each level at once (as three nodes share a host), samples
// /proc as `raftelect bench` does and prints a table.
//
//	memfloor run --level L --duration D
//
// runs one level; it prints "ready" once the level is up, and at the end
// how many periodic exchanges each of its layers made ("exchanges tls=600
// grpc=600").
package main

import (
	"os"
	"strconv"
	"time"
)

// levels in order: each runs the layers of those before it.
var levels = [...]string{"runtime", "tls", "grpc", "full"}

// running is what a started layer gives back.
type running struct {
	// exchanges counts the layer's periodic round trips so far.
	exchanges func() int64
	// stop ends the layer and waits for every goroutine it started; it
	// returns the first error the layer met while running.
	stop func() error
}

// layers[i] starts what level i adds to level i-1; the runtime level adds
// nothing. A file built into the executable fills its slot in init: an
// empty slot means this executable was built for a lower level.
var layers [len(levels)]func() (running, error)

// measure is the driver, present only in the build without level tags.
var measure func(args []string) int

func main() {
	os.Exit(run(os.Args[1:]))
}

const usage = `usage:
  memfloor run --level runtime|tls|grpc|full --duration 60s
  memfloor measure [flags]   (only in a build without memfloor_* tags; see --help)
`

// run parses the command line by hand: the flag package would link fmt and
// reflect into the runtime level, whose floor this tool measures.
func run(args []string) int {
	if len(args) > 0 && args[0] == "measure" {
		if measure == nil {
			return fail("this executable is a level build (memfloor_* tag) and has no driver: build tools/memfloor without tags to measure")
		}
		return measure(args[1:])
	}
	if len(args) == 0 || args[0] != "run" {
		os.Stderr.WriteString(usage)
		return 2
	}
	level, duration := "", time.Duration(0)
	for i := 1; i < len(args); i++ {
		name := args[i]
		if i+1 >= len(args) {
			return fail(name + " needs a value\n" + usage)
		}
		value := args[i+1]
		i++
		switch name {
		case "--level", "-level":
			level = value
		case "--duration", "-duration":
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				return fail("--duration " + value + ": give a positive duration such as 60s")
			}
			duration = d
		default:
			return fail("unknown flag " + name + "\n" + usage)
		}
	}
	if duration == 0 {
		return fail("--duration is required (how long the level stays up before it exits)")
	}
	n := levelIndex(level)
	if n < 0 {
		return fail("--level " + strconv.Quote(level) + ": give one of runtime, tls, grpc, full")
	}
	for i := 1; i <= n; i++ {
		if layers[i] == nil {
			return fail("level " + level + " is not in this executable (built for a lower level); build tools/memfloor without memfloor_* tags, or with memfloor_" + level)
		}
	}
	return idle(n, duration)
}

// idle starts levels 1..n, prints "ready", stays up for d and stops them.
func idle(n int, d time.Duration) int {
	var started []running
	stopAll := func() error {
		var first error
		for i := len(started) - 1; i >= 0; i-- {
			if err := started[i].stop(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for i := 1; i <= n; i++ {
		r, err := layers[i]()
		if err != nil {
			stopAll()
			return fail("start level " + levels[i] + ": " + err.Error())
		}
		started = append(started, r)
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(d)
	line := "exchanges"
	for i, r := range started {
		line += " " + levels[i+1] + "=" + strconv.FormatInt(r.exchanges(), 10)
	}
	if err := stopAll(); err != nil {
		return fail("level " + levels[n] + " failed while running: " + err.Error())
	}
	os.Stdout.WriteString(line + "\n")
	return 0
}

func levelIndex(name string) int {
	for i, l := range levels {
		if l == name {
			return i
		}
	}
	return -1
}

func fail(msg string) int {
	os.Stderr.WriteString("memfloor: " + msg + "\n")
	return 1
}
