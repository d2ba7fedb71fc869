package main

import (
	"flag"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
)

// memoryLimitShare is the share of the container's memory limit that the
// Go runtime is asked to stay under: the rest is the headroom of what it
// does not count (the kernel's page cache of the file store, for one) and
// of garbage made between two collections.
const memoryLimitShare = 0.9

// memoryLimitFlag defines --memory-limit, the container's memory limit,
// which Kubernetes passes from the pod spec (resourceFieldRef).
func memoryLimitFlag(fs *flag.FlagSet, limit *int64) {
	fs.Int64Var(limit, "memory-limit", 0, "the container's memory limit in bytes: Go's soft memory limit (GOMEMLIMIT) is set to 90% of it, unless GOMEMLIMIT is set (0: none)")
}

// setMemoryLimit sets the Go runtime's soft memory limit to
// memoryLimitShare of limit, the container's memory limit in bytes, so
// that the heap is collected harder as it nears the limit rather than
// growing to twice what is live (GOGC) and being killed. GOMEMLIMIT, when
// set, wins: the runtime read it at start. It logs the limit in force.
func setMemoryLimit(limit int64, log *slog.Logger) {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok || limit <= 0 {
		if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
			log.Info("memory limit", "soft_limit_mib", l>>20, "from", "GOMEMLIMIT")
		}
		return
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	log.Info("memory limit", "soft_limit_mib", soft>>20, "container_limit_mib", limit>>20)
}
