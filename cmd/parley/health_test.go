package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/buspolicy"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/services/privacy"
)

// splitProc is one `parley <service>` run as its own command, in the
// test's process.
type splitProc struct {
	name   string
	cancel context.CancelFunc
	done   chan error
}

// startSplit runs `parley args...` until stop or the test's end.
func startSplit(t *testing.T, logs io.Writer, args ...string) *splitProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &splitProc{name: args[0], cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- run(ctx, args, io.Discard, logs) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends the command and checks it ended cleanly; once is enough.
func (p *splitProc) stop(t *testing.T) {
	t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	if err := natstest.Returns(t, 30*time.Second, "parley "+p.name+" should stop", p.done); err != nil {
		t.Errorf("parley %s: %v", p.name, err)
	}
}

// get answers GET url's status and body; status 0 while nothing listens.
func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus polls GET url until it answers want.
func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, fmt.Sprintf("GET %s = %d", url, want), func() error {
		if status, body := get(url); status != want {
			return fmt.Errorf("%d %s", status, body)
		}
		return nil
	})
}

// In split mode the gateway's /readyz tells whether chat and privacy
// answer: 503 while either is stopped, 200 once it is back. Chat, privacy
// and analytics each answer /healthz, /readyz and /metrics on a port of
// their own, every service connecting as its bus user with the password in
// a file, none in its arguments.
func TestSplitModeHealth(t *testing.T) {
	dir := t.TempDir()
	bus := startSplitBus(t, dir)
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	as := bus.as
	if err := run(t.Context(), append([]string{"streams", "apply", "--replicas", "1"}, as(buspolicy.Admin)...), io.Discard, &logs); err != nil {
		t.Fatalf("parley streams apply: %v", err)
	}
	keyFile, auditKeyFile := splitKeys(t, dir)
	kekFile := filepath.Join(dir, "kek")
	if _, err := privacy.LoadOrCreateKEK(kekFile); err != nil {
		t.Fatal(err)
	}

	health := map[string]string{"chat": freeAddr(t), "privacy": freeAddr(t), "analytics": freeAddr(t)}
	args := map[string][]string{
		"privacy":   slices.Concat([]string{"privacy", "--replicas", "1", "--kek-file", kekFile, "--audit-key-file", auditKeyFile}, as(buspolicy.Privacy)),
		"chat":      slices.Concat([]string{"chat", "--replicas", "1"}, as(buspolicy.Chat)),
		"analytics": slices.Concat([]string{"analytics"}, as(buspolicy.Analytics)),
	}
	procs := map[string]*splitProc{}
	start := func(name string) {
		procs[name] = startSplit(t, &logs, append(args[name], "--health-addr", health[name])...)
	}
	for _, name := range []string{"privacy", "chat", "analytics"} {
		start(name)
	}
	httpAddr := freeAddr(t)
	startSplit(t, &logs, slices.Concat([]string{"gateway", "--replicas", "1", "--http-addr", httpAddr, "--signing-key-file", keyFile}, as(buspolicy.Gateway))...)
	gatewayReady := "http://" + httpAddr + "/readyz"
	waitStatus(t, gatewayReady, http.StatusOK)

	for name, addr := range health {
		base := "http://" + addr
		if status, body := get(base + "/healthz"); status != http.StatusOK {
			t.Errorf("%s: GET /healthz = %d %s, want 200", name, status, body)
		}
		status, body := get(base + "/metrics")
		if status != http.StatusOK || !strings.Contains(body, "go_goroutines") {
			t.Errorf("%s: GET /metrics = %d, want 200 with go_goroutines:\n%.300s", name, status, body)
		}
		if name == "chat" && !strings.Contains(body, "parley_chat_append_conflicts_total") {
			t.Errorf("chat: GET /metrics lacks its own parley_chat_append_conflicts_total")
		}
	}
	waitStatus(t, "http://"+health["chat"]+"/readyz", http.StatusOK)
	waitStatus(t, "http://"+health["privacy"]+"/readyz", http.StatusOK)
	// Analytics is ready only when its ClickHouse answers, and it was given
	// none.
	status, body := get("http://" + health["analytics"] + "/readyz")
	var problem struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal([]byte(body), &problem); err != nil || status != http.StatusServiceUnavailable ||
		problem.Status != status || !strings.Contains(problem.Detail, "clickhouse") {
		t.Errorf("analytics without ClickHouse: GET /readyz = %d %s, want a 503 problem naming clickhouse", status, body)
	}

	for _, name := range []string{"chat", "privacy"} {
		procs[name].stop(t)
		waitStatus(t, gatewayReady, http.StatusServiceUnavailable)
		start(name)
		waitStatus(t, "http://"+health[name]+"/readyz", http.StatusOK)
		waitStatus(t, gatewayReady, http.StatusOK)
	}
}
