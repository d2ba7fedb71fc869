package main

import "syscall"

// testProcAttr asks the kernel to kill a process the test binary starts
// when the test binary dies, so that a test killed or crashed leaves no
// NATS server or chat instance behind.
func testProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
