package gateway

// sessionCap is the WebSocket sessions the process may hold: its open-file
// limit less a reserve, so that a flood of sessions leaves files for
// /healthz, ordinary requests, the bus and, in `parley all`, the store.
// Without a limit to read it returns 0: no bound.
func sessionCap() int {
	n := openFiles()
	return max(0, n-max(n/10, minReservedFiles))
}

// minReservedFiles is the least the session cap leaves of the open-file
// limit for everything else.
const minReservedFiles = 256

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
