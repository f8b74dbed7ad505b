//go:build unix && !linux

package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Only Linux has PID namespaces, subreapers and /proc: elsewhere exec's
// command is contained by its process group and the watchdog alone.

func namespaceAvailable(string) error {
	return errors.New("PID namespaces exist only on Linux")
}

func inNewPIDNamespace(*syscall.SysProcAttr) {}

func becomeSubreaper() error {
	return errors.New("only Linux lets a process adopt its orphaned descendants (PR_SET_CHILD_SUBREAPER)")
}

func processTree(int, map[int]bool) (live, zombies []int) { return nil, nil }

func reap(map[int]bool) {}

func notifyChildExit(chan<- os.Signal) {}

const execInitArg = "__exec-init"

func runExecInit([]string) int {
	fmt.Fprintf(os.Stderr, "raftelect %s: PID namespaces exist only on Linux\n", execInitArg)
	return exitUsage
}
