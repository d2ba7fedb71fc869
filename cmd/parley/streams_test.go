package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/buspolicy"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestStreamsApply upgrades a data dir whose CHAT stream an older version
// defined: `parley all` applies the definition before the services start
// (they could not), and `parley streams apply` does the same against a
// running server as admin.
func TestStreamsApply(t *testing.T) {
	dir := t.TempDir()
	old := stream.Options{ChatMaxAge: time.Hour}
	inStore(t, dir, func(js jetstream.JetStream) {
		if err := stream.Create(t.Context(), js, old, stream.Chat); err != nil {
			t.Fatal(err)
		}
	})

	a, logs := testAll(t, dir)
	if !strings.Contains(logs.String(), `"msg":"applied this version's definition","kind":"stream","name":"CHAT"`) {
		t.Errorf("parley all did not log the update of CHAT; logs:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "differs from this version") {
		t.Errorf("a service found a stream unlike its definition after parley all applied them; logs:\n%s", logs.String())
	}

	admin := []string{"streams", "apply", "--nats-url", a.NATSURL(), "--replicas", "1",
		"--nats-user", buspolicy.Admin, "--nats-password-file", filepath.Join(dir, natsAdminPasswordFile)}
	out := runStreamsApply(t, admin)
	if want := len(stream.Names()) + len(stream.Buckets()); strings.Count(out, ": unchanged\n") != want {
		t.Errorf("streams apply on what parley all applied:\n%s\nwant %d lines ending in unchanged", out, want)
	}

	// An operator's change by hand is undone.
	_, js := adminConn(t, a)
	if err := stream.Ensure(t.Context(), js, old, stream.Chat); err != nil {
		t.Fatal(err)
	}
	if out := runStreamsApply(t, admin); !strings.Contains(out, "stream CHAT: updated\n") || !strings.Contains(out, "stream KEYS: unchanged\n") {
		t.Errorf("streams apply after a change of CHAT:\n%s\nwant CHAT updated, KEYS unchanged", out)
	}
	s, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := stream.Config(stream.Chat, stream.Options{})
	if got := s.CachedInfo().Config.MaxAge; got != want.MaxAge {
		t.Errorf("CHAT max age after streams apply = %v, want %v", got, want.MaxAge)
	}
}

func runStreamsApply(t *testing.T, args []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("parley %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

func TestStreamsUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no subcommand", []string{"streams"}},
		{"unknown subcommand", []string{"streams", "update"}},
		{"negative replicas", []string{"streams", "apply", "--nats-url", "nats://127.0.0.1:1", "--replicas", "-1"}},
		{"user without password file", []string{"streams", "apply", "--nats-url", "nats://127.0.0.1:1", "--nats-user", "admin"}},
		{"no store", []string{"streams", "apply", "--data-dir", "/nonexistent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(t.Context(), tt.args, new(bytes.Buffer), new(bytes.Buffer))
			if !errors.As(err, new(usageError)) {
				t.Errorf("run(%q) = %v, want a usage error", tt.args, err)
			}
		})
	}
}

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
