// Package chtest starts private ClickHouse servers for tests.
package chtest

import (
	"errors"
	"os"
	"testing"

	"github.com/parley-chat/parley/pkg/chserver"
)

// Start runs a ClickHouse server in a new temp dir, stopped when the test
// ends. Without a server binary the test is skipped, except when the CI
// environment variable is set: CI must never pass by skipping.
func Start(t testing.TB) *chserver.Server {
	t.Helper()
	s, err := chserver.Start(t.Context(), chserver.Options{Dir: t.TempDir()})
	if errors.Is(err, chserver.ErrNotInstalled) {
		msg := "this test needs a ClickHouse server binary (clickhouse-server or clickhouse) on PATH; on Debian: sudo apt-get install clickhouse-server"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}
