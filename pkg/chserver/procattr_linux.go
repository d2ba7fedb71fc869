package chserver

import "syscall"

// sysProcAttr asks the kernel to kill the server when the process that
// started it dies, so a crashed test or `parley all` leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
