package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// threadTimes is what the scheduler says about all threads of a process:
// the time they spent on a CPU (nanosecond precision, unlike utime+stime,
// which count 10 ms ticks: at an idle node's few ms per second a 60 s
// window holds only a few hundred ticks) and how many times one of them
// was put on a CPU (run periods: each is one wake-up).
type threadTimes struct {
	onCPU   time.Duration
	wakeups uint64
}

// readThreadTimes sums /proc/<pid>/task/*/schedstat ("on-CPU ns, waiting
// ns, run periods"). A thread that ended between two readings takes its
// counts with it; a Go process keeps its threads, so that is rare.
func readThreadTimes(pid int) (threadTimes, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return threadTimes{}, fmt.Errorf("no schedstat for pid %d (is it running, and is CONFIG_SCHEDSTATS on?): %v", pid, err)
	}
	var tt threadTimes
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b))
		if len(f) != 3 {
			return threadTimes{}, fmt.Errorf("%s: %q is not three numbers", path, b)
		}
		ns, err1 := strconv.ParseUint(f[0], 10, 64)
		runs, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return threadTimes{}, fmt.Errorf("%s: %q is not three numbers", path, b)
		}
		tt.onCPU += time.Duration(ns)
		tt.wakeups += runs
	}
	return tt, nil
}

// loadAverage is the first field of /proc/loadavg (the 1-minute load
// average), or -1 when it cannot be read: CPU figures of a shared machine
// are only comparable at a similar load.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
