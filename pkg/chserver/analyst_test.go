package chserver_test

import (
	"strings"
	"testing"

	"github.com/parley-chat/parley/pkg/chserver"
	"github.com/parley-chat/parley/pkg/chserver/chtest"
)

func TestAnalystUserOnlyReads(t *testing.T) {
	s := chtest.Start(t)
	mustQuery(t, s.HTTPAddr(), "CREATE DATABASE analyst")
	mustQuery(t, s.HTTPAddr(), "CREATE TABLE analyst.t (x UInt8) ENGINE = Memory")
	mustQuery(t, s.HTTPAddr(), "INSERT INTO analyst.t VALUES (1)")
	mustQuery(t, s.HTTPAddr(), "CREATE TABLE raw (x UInt8) ENGINE = Memory")
	if got, err := chtest.QueryAs(s.HTTPAddr(), "analyst", "SELECT count() FROM analyst.t"); err != nil || got != "1" {
		t.Errorf("analyst SELECT count() = %q, %v; want 1, nil", got, err)
	}
	if _, err := chtest.QueryAs(s.HTTPAddr(), "analyst", "INSERT INTO analyst.t VALUES (2)"); err == nil || !strings.Contains(err.Error(), "readonly") {
		t.Errorf("analyst INSERT error = %v, want a readonly refusal", err)
	}
	if _, err := chtest.QueryAs(s.HTTPAddr(), "analyst", "SELECT count() FROM default.raw"); err == nil || !strings.Contains(err.Error(), "Access denied") {
		t.Errorf("analyst SELECT from database default: error %v, want access denied", err)
	}
}

func TestRestartOnSamePorts(t *testing.T) {
	s := chtest.Start(t)
	mustQuery(t, s.HTTPAddr(), "CREATE TABLE kept (x UInt8) ENGINE = TinyLog")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := chserver.Start(t.Context(), chserver.Options{Dir: s.Dir(), TCPPort: s.TCPPort(), HTTPPort: s.HTTPPort()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Close() })
	if again.DSN() != s.DSN() || again.HTTPAddr() != s.HTTPAddr() {
		t.Errorf("restarted server at %s %s, want %s %s", again.DSN(), again.HTTPAddr(), s.DSN(), s.HTTPAddr())
	}
	if got := mustQuery(t, again.HTTPAddr(), "EXISTS TABLE kept"); got != "1" {
		t.Errorf("EXISTS TABLE kept = %q after restart, want 1", got)
	}
}
