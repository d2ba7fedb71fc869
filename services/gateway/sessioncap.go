//go:build unix

package gateway

import "syscall"

// sessionCap is the WebSocket sessions the process may hold: its open-file
// limit less a reserve, so that a flood of sessions leaves files for
// /healthz, ordinary requests, the bus and, in `parley all`, the store.
// The Go runtime has already raised the soft limit to the hard one at start
// (Go 1.19 and later, on Linux and the BSDs), so the limit read here is the
// highest the process may have. Without a limit to read it returns 0: no
// bound.
func sessionCap() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 0
	}
	n := int(lim.Cur)
	return max(0, n-max(n/10, minReservedFiles))
}

// minReservedFiles is the least the session cap leaves of the open-file
// limit for everything else.
const minReservedFiles = 256
