package chserver_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/chserver"
	"github.com/parley-chat/parley/pkg/chserver/chtest"
)

func mustQuery(t *testing.T, addr, q string) string {
	t.Helper()
	got, err := chtest.Query(addr, q)
	if err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	return got
}

func TestStartAnswersAndCloseStops(t *testing.T) {
	s := chtest.Start(t)

	if got := mustQuery(t, s.HTTPAddr(), "SELECT 1"); got != "1" {
		t.Errorf("SELECT 1 = %q, want 1", got)
	}
	if got := mustQuery(t, s.HTTPAddr(), "SELECT timezone()"); got != "Etc/UTC" {
		t.Errorf("SELECT timezone() = %q, want Etc/UTC", got)
	}
	tcpAddr := strings.TrimSuffix(strings.TrimPrefix(s.DSN(), "clickhouse://"), "/default")
	if tcpAddr == s.DSN() || !strings.HasPrefix(tcpAddr, "127.0.0.1:") || tcpAddr == s.HTTPAddr() {
		t.Fatalf("DSN() = %q, want clickhouse://127.0.0.1:PORT/default with a port other than HTTP's %s", s.DSN(), s.HTTPAddr())
	}
	c, err := net.DialTimeout("tcp", tcpAddr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial native port: %v", err)
	}
	c.Close()

	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if _, err := chtest.Query(s.HTTPAddr(), "SELECT 1"); err == nil {
		t.Error("SELECT 1 after Close() answered, want the server gone")
	}
	if c, err := net.DialTimeout("tcp", tcpAddr, 2*time.Second); err == nil {
		c.Close()
		t.Error("native port accepts connections after Close(), want the server gone")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
}

func TestRestartKeepsData(t *testing.T) {
	s := chtest.Start(t)
	mustQuery(t, s.HTTPAddr(), "CREATE TABLE kept (n UInt32) ENGINE = MergeTree ORDER BY n")
	mustQuery(t, s.HTTPAddr(), "INSERT INTO kept (n) VALUES (7)")
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	s2, err := chserver.Start(t.Context(), chserver.Options{Dir: s.Dir()})
	if err != nil {
		t.Fatalf("Start() again on the same dir: %v", err)
	}
	defer s2.Close()
	if got := mustQuery(t, s2.HTTPAddr(), "SELECT sum(n) FROM kept"); got != "7" {
		t.Errorf("SELECT sum(n) FROM kept after restart = %q, want 7", got)
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	dying := filepath.Join(dir, "dying-server")
	script := "#!/bin/sh\necho 'config is broken: no such setting' >&2\nexit 3\n"
	if err := os.WriteFile(dying, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		give        chserver.Options
		wantIs      error
		wantContain string
	}{
		{name: "no dir", give: chserver.Options{Binary: dying}, wantContain: "no dir"},
		{name: "binary missing", give: chserver.Options{Dir: t.TempDir(), Binary: "no-such-clickhouse-binary"}, wantIs: chserver.ErrNotInstalled},
		{name: "server dies", give: chserver.Options{Dir: t.TempDir(), Binary: dying}, wantContain: "config is broken: no such setting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			s, err := chserver.Start(ctx, tt.give)
			if err == nil {
				s.Close()
				t.Fatalf("Start(%+v) = nil error, want one", tt.give)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Start(%+v) = %v, want %v", tt.give, err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantContain) {
				t.Errorf("Start(%+v) = %v, want it to contain %q", tt.give, err, tt.wantContain)
			}
		})
	}
}
