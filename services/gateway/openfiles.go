//go:build unix

package gateway

import "syscall"

// openFiles is the open-file limit of the process, 0 when there is none to
// read. The Go runtime has already raised the soft limit to the hard one at
// start (Go 1.19 and later, on Linux and the BSDs), so it is the highest
// the process may have.
func openFiles() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 0
	}
	return int(lim.Cur)
}
