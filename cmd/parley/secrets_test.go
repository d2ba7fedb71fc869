package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/services/privacy"
)

// kekHelperEnv makes the test binary a KEK helper (kekHelper) instead of
// running the tests: its value is what the helper does.
const kekHelperEnv = "PARLEY_TEST_KEK_HELPER"

// testKEK is the key the helper prints.
var testKEK = strings.Repeat("5a", 32)

// kekHelperArgs are the arguments the helper wants, as a shell would not
// leave them: proof that the command runs without one.
var kekHelperArgs = []string{"-field=kek", "secret/parley;$(id)"}

func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(kekHelperEnv); ok {
		os.Exit(kekHelper(mode))
	}
	os.Exit(m.Run())
}

// kekHelper stands in for a KMS or Vault client.
func kekHelper(mode string) int {
	switch mode {
	case "print":
		if !slices.Equal(os.Args[1:], kekHelperArgs) {
			fmt.Fprintf(os.Stderr, "helper: arguments %q, want %q\n", os.Args[1:], kekHelperArgs)
			return 3
		}
		fmt.Println(testKEK)
	case "fail":
		fmt.Println(testKEK)
		fmt.Fprintln(os.Stderr, "helper: permission denied")
		return 1
	case "garbage":
		fmt.Println("not-a-key-SECRETVALUE")
	case "long":
		fmt.Println(strings.Repeat(testKEK, 100))
	case "hang":
		time.Sleep(time.Hour) // a helper that never answers, for the timeout's test
	case "env":
		// What a Vault client needs, and nothing of the service's own.
		for _, name := range []string{"PATH", "VAULT_ADDR", "PARLEY_TEST_KEK_EXTRA"} {
			if _, ok := os.LookupEnv(name); !ok {
				fmt.Fprintf(os.Stderr, "helper: %s missing\n", name)
				return 3
			}
		}
		for _, name := range []string{natsPasswordEnv, clickHousePasswordEnv, "PARLEY_TEST_UNNAMED"} {
			if _, ok := os.LookupEnv(name); ok {
				fmt.Fprintf(os.Stderr, "helper: given %s\n", name)
				return 3
			}
		}
		fmt.Println(testKEK)
	}
	return 0
}

func TestKEKFromCommand(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	command := strings.Join(append([]string{exe}, kekHelperArgs...), " ")
	want, err := privacy.ParseKEK(testKEK)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mode    string
		timeout time.Duration
		wantErr string // "" for the key
	}{
		{name: "key on stdout", mode: "print", timeout: time.Minute},
		{name: "helper fails", mode: "fail", timeout: time.Minute, wantErr: "exit status 1"},
		{name: "not a key", mode: "garbage", timeout: time.Minute, wantErr: "not a key of 64 hex digits"},
		{name: "too much output", mode: "long", timeout: time.Minute, wantErr: "more than"},
		{name: "timeout", mode: "hang", timeout: 200 * time.Millisecond, wantErr: "no key within 200ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(kekHelperEnv, tt.mode)
			var stderr bytes.Buffer
			k := kekFlags{command: command, timeout: tt.timeout, env: kekHelperEnv}
			got, err := k.load(t.Context(), &stderr)
			if tt.wantErr == "" {
				if err != nil || got != want {
					t.Fatalf("load() = %v, want the helper's key (stderr %q)", err, stderr.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("load() = %v, want an error with %q", err, tt.wantErr)
			}
			// The error names the program, never its output or arguments.
			for _, leak := range []string{testKEK[:16], "SECRETVALUE", "secret/parley"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("load() error %q holds %q", err, leak)
				}
			}
			if tt.mode == "fail" && !strings.Contains(stderr.String(), "permission denied") {
				t.Errorf("the helper's own error did not reach stderr: %q", stderr.String())
			}
		})
	}
}

// The KEK command gets PATH, HOME, the variables of KMS and Vault clients
// and those --kek-command-env names: never the bus's or ClickHouse's
// password, nor anything else of the service's environment.
func TestKEKCommandEnvironment(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(kekHelperEnv, "env")
	t.Setenv("VAULT_ADDR", "https://vault.example:8200")
	t.Setenv("PARLEY_TEST_KEK_EXTRA", "1")
	t.Setenv(natsPasswordEnv, "bus-password")
	t.Setenv(clickHousePasswordEnv, "ch-password")
	t.Setenv("PARLEY_TEST_UNNAMED", "1")
	var stderr bytes.Buffer
	k := kekFlags{command: exe, timeout: time.Minute, env: kekHelperEnv + ", PARLEY_TEST_KEK_EXTRA"}
	if _, err := k.load(t.Context(), &stderr); err != nil {
		t.Fatalf("load() = %v (helper: %q)", err, stderr.String())
	}
}

// The KEK comes one way: a command besides PARLEY_KEK or a file is a
// mistake in the configuration, and nothing at all is one too.
func TestKEKOneSource(t *testing.T) {
	tests := []struct {
		name string
		env  bool
		give kekFlags
		want string
	}{
		{name: "none", want: "no key-encryption key"},
		{name: "command and file", give: kekFlags{command: "/bin/echo", file: "kek"}, want: "one way"},
		{name: "command and env", env: true, give: kekFlags{command: "/bin/echo"}, want: "one way"},
		{name: "file and env", env: true, give: kekFlags{file: "kek"}, want: "one way"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env {
				t.Setenv("PARLEY_KEK", testKEK)
			} else {
				t.Setenv("PARLEY_KEK", "")
				os.Unsetenv("PARLEY_KEK")
			}
			_, err := tt.give.load(t.Context(), &bytes.Buffer{})
			if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("load() = %v, want a usage error with %q", err, tt.want)
			}
		})
	}
}

// parley all, too, refuses a --kek-file given besides PARLEY_KEK, before
// anything is written; PARLEY_KEK alone replaces the default file.
func TestAllKEKOneSource(t *testing.T) {
	t.Setenv("PARLEY_KEK", testKEK)
	dir := t.TempDir()
	_, err := startAll(t.Context(), allConfig{DataDir: dir, KEKFile: filepath.Join(dir, "kek.key")}, slog.New(slog.DiscardHandler))
	if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "one way") {
		t.Errorf("startAll(--kek-file with PARLEY_KEK) = %v, want a usage error with %q", err, "one way")
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("the refused start wrote %d entries in the data dir", len(entries))
	}
}

// A bus user's password comes from its file or from PARLEY_NATS_PASSWORD,
// and the server takes it.
func TestBusPasswordFromFileOrEnv(t *testing.T) {
	dir := t.TempDir()
	srv, err := natsembed.Start(natsembed.Options{StoreDir: dir, Users: []*server.User{{Username: "chat", Password: "right-password"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	file := filepath.Join(dir, "password")
	if err := os.WriteFile(file, []byte("right-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		env       string // PARLEY_NATS_PASSWORD; "" unset
		give      busFlags
		wantUsage bool
		connects  bool
	}{
		{name: "file", give: busFlags{user: "chat", passwordFile: file}, connects: true},
		{name: "environment", env: "right-password", give: busFlags{user: "chat"}, connects: true},
		{name: "file before environment", env: "wrong", give: busFlags{user: "chat", passwordFile: file}, connects: true},
		{name: "wrong password", env: "wrong", give: busFlags{user: "chat"}},
		{name: "user without password", give: busFlags{user: "chat"}, wantUsage: true},
		{name: "password without user", env: "right-password", wantUsage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(natsPasswordEnv, tt.env)
			if tt.env == "" {
				os.Unsetenv(natsPasswordEnv)
			}
			opts, err := tt.give.options()
			if tt.wantUsage {
				if !errors.As(err, new(usageError)) {
					t.Fatalf("options() = %v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			nc, err := nats.Connect(srv.ClientURL(), opts...)
			if err == nil {
				nc.Close()
			}
			if (err == nil) != tt.connects {
				t.Errorf("connect = %v, want connected %v", err, tt.connects)
			}
		})
	}
}

func TestClickHouseDSN(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "password")
	if err := os.WriteFile(file, []byte("s3cret/+@x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		dsn     string
		file    string
		env     string
		want    string
		wantErr bool
	}{
		{name: "no password", dsn: "clickhouse://analytics@clickhouse:9000/default", want: "clickhouse://analytics@clickhouse:9000/default"},
		{name: "from file, escaped", dsn: "clickhouse://analytics@clickhouse:9000/default", file: file, want: "clickhouse://analytics:s3cret%2F+%40x@clickhouse:9000/default"},
		{name: "from environment", dsn: "clickhouse://analytics@ch:9000/db", env: "pw", want: "clickhouse://analytics:pw@ch:9000/db"},
		{name: "no user to give it to", dsn: "clickhouse://ch:9000/db", env: "pw", wantErr: true},
		{name: "missing file", dsn: "clickhouse://analytics@ch:9000/db", file: filepath.Join(dir, "nope"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(clickHousePasswordEnv, tt.env)
			if tt.env == "" {
				os.Unsetenv(clickHousePasswordEnv)
			}
			got, err := clickHouseDSN(tt.dsn, tt.file)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("clickHouseDSN(%q, %q) = %q, %v, want %q (error %v)", tt.dsn, tt.file, got, err, tt.want, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "pw") {
				t.Errorf("error %q holds the password", err)
			}
		})
	}
}

// A password in --nats-url or --clickhouse is warned about once each,
// naming the flag and never the value.
func TestSecretInArgumentsWarned(t *testing.T) {
	t.Setenv(clickHousePasswordEnv, "")
	var stderr bytes.Buffer
	// Nothing listens on port 1: the service stops after its warnings.
	err := runService(t.Context(), "analytics", []string{
		"--nats-url", "nats://chat:natsSECRET1@127.0.0.1:1,nats://tokenSECRET2@127.0.0.1:1",
		"--clickhouse", "clickhouse://parley:chSECRET3@127.0.0.1:1/parley",
		"--health-addr", "127.0.0.1:0",
	}, io.Discard, &stderr)
	if err == nil {
		t.Fatal("runService() = nil, want a connection error")
	}
	logs := stderr.String()
	for _, flagName := range []string{"--nats-url", "--clickhouse"} {
		if n := strings.Count(logs, `"flag":"`+flagName+`"`); n != 1 {
			t.Errorf("%d warnings naming %s, want 1; logs:\n%s", n, flagName, logs)
		}
	}
	for _, secret := range []string{"SECRET1", "SECRET2", "SECRET3"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs hold %s:\n%s", secret, logs)
		}
	}

	// Without a secret in them, no warning.
	stderr.Reset()
	_ = runService(t.Context(), "analytics", []string{
		"--nats-url", "nats://127.0.0.1:1", "--clickhouse", "clickhouse://parley@127.0.0.1:1/parley", "--health-addr", "127.0.0.1:0",
	}, io.Discard, &stderr)
	if strings.Contains(stderr.String(), "command-line argument") {
		t.Errorf("warned without a secret in the arguments:\n%s", stderr.String())
	}
}
