package main

import "syscall"

// setParentDeathSignal asks the kernel to send sig to the child when this
// process dies, so that children started by demo and exec do not outlive a
// kill -9 of raftelect.
func setParentDeathSignal(a *syscall.SysProcAttr, sig syscall.Signal) { a.Pdeathsig = sig }
