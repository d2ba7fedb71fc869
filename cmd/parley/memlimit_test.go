package main

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name       string
		gomemlimit string // "" leaves it unset
		limit      int64
		want       int64
	}{
		{"a share of the container's limit", "", 1 << 30, 966367641},
		{"no limit given", "", 0, math.MaxInt64},
		{"GOMEMLIMIT wins", "500MiB", 1 << 30, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetMemoryLimit(math.MaxInt64)
			if tt.gomemlimit != "" {
				t.Setenv("GOMEMLIMIT", tt.gomemlimit)
			}
			setMemoryLimit(tt.limit, log)
			if got := debug.SetMemoryLimit(-1); got != tt.want {
				t.Errorf("setMemoryLimit(%d) with GOMEMLIMIT %q: soft limit %d, want %d", tt.limit, tt.gomemlimit, got, tt.want)
			}
		})
	}
}
