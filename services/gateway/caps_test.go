package gateway

import (
	"math"
	"testing"
)

func TestSessionCapOf(t *testing.T) {
	const gib = 1 << 30
	soft := int64(gib) * 9 / 10 // --memory-limit 1Gi
	tests := []struct {
		name   string
		files  int
		memory int64
		want   int
	}{
		{"no limit at all", 0, math.MaxInt64, 0},
		{"the file limit alone, less a tenth", 65536, math.MaxInt64, 65536 - 6553},
		{"a small file limit keeps 256", 1024, math.MaxInt64, 1024 - 256},
		{"the memory limit alone: three quarters of it at 16 KiB a session", 0, soft, 44236},
		{"a container's file limit under 1 GiB: memory bounds it", 1 << 20, soft, 44236},
		{"a low file limit under a large memory limit: files bound it", 4096, 8 * gib, 4096 - 409},
		{"a memory limit too small for one session still admits one", 65536, 1 << 10, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sessionCapOf(tt.files, tt.memory); got != tt.want {
				t.Errorf("sessionCapOf(%d, %d) = %d, want %d", tt.files, tt.memory, got, tt.want)
			}
		})
	}
}
