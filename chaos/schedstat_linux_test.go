package chaos

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The scheduler's counts of this process agree with the CPU time getrusage
// reports for it (also from the scheduler, in µs), and its run periods grow
// when threads sleep and wake.
func TestReadThreadTimes_CountsWork(t *testing.T) {
	before, err := readThreadTimes(os.Getpid())
	if err != nil {
		t.Skipf("no schedstat on this kernel: %v", err)
	}
	cpu0 := processCPU(t)
	// Spin until this process has used 50 ms of CPU: on a loaded machine
	// that takes longer than 50 ms of wall time.
	const work = 50 * time.Millisecond
	for limit := time.Now().Add(30 * time.Second); processCPU(t)-cpu0 < work; {
		if time.Now().After(limit) {
			t.Fatal("did not get 50 ms of CPU in 30 s")
		}
	}
	for range 10 {
		time.Sleep(time.Millisecond) // off the CPU and back: run periods
	}
	after, err := readThreadTimes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	used := processCPU(t) - cpu0
	got := after.onCPU - before.onCPU
	if diff := (got - used).Abs(); diff > used/5+2*time.Millisecond {
		t.Errorf("schedstat says %v on the CPU, getrusage %v", got, used)
	}
	if runs := after.wakeups - before.wakeups; runs < 10 {
		t.Errorf("run periods grew by %d over 10 sleeps", runs)
	}
	if _, err := readThreadTimes(-1); err == nil {
		t.Error("no error for a process that does not exist")
	}
}
