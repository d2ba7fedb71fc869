package gateway

import (
	"math"
	"runtime/debug"
)

// sessionCap is the WebSocket sessions the process may hold: the lesser of
// its open-file limit less a reserve, so that a flood of sessions leaves
// files for /healthz, ordinary requests, the bus and, in `parley all`, the
// store, and what a share of its soft memory limit (GOMEMLIMIT, or
// --memory-limit) holds, so that a flood is refused with 429 rather than
// the process killed for its memory. Without either limit to read it
// returns 0: no bound.
func sessionCap() int {
	return sessionCapOf(openFiles(), debug.SetMemoryLimit(-1))
}

// sessionCapOf is sessionCap for an open-file limit of files (0: none) and
// a soft memory limit of memory bytes (math.MaxInt64: none).
func sessionCapOf(files int, memory int64) int {
	byFiles := max(0, files-max(files/10, minReservedFiles))
	if memory <= 0 || memory == math.MaxInt64 {
		return byFiles
	}
	byMemory := max(1, int(float64(memory)*sessionMemoryShare/sessionBytes))
	if byFiles == 0 {
		return byMemory
	}
	return min(byFiles, byMemory)
}

const (
	// minReservedFiles is the least the session cap leaves of the
	// open-file limit for everything else.
	minReservedFiles = 256
	// sessionBytes is what the memory cap counts for a session: an idle
	// one holds 12.4 KiB (BENCHMARKS.md), and a busy one its queue too.
	sessionBytes = 16 << 10
	// sessionMemoryShare is the share of the soft memory limit sessions
	// may fill; the rest is the process's own, its caches and the pages
	// being read.
	sessionMemoryShare = 0.75
)

// connCap is the HTTP connections the process may hold, sessions included:
// its open-file limit less a smaller reserve than sessionCap's, for the bus
// and the store, so that a full set of sessions leaves connections for
// ordinary requests; but at least half the limit. Without a limit to read
// it returns 0: no bound.
func connCap() int {
	n := openFiles()
	return max(n/2, n-max(n/20, minReservedConnFiles))
}

// minReservedConnFiles is the least connCap leaves of the open-file limit
// for everything but connections.
const minReservedConnFiles = 128
