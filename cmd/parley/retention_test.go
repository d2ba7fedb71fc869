package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// adminConn connects to the embedded NATS of a running `parley all` as its
// admin user, as operator tools do.
func adminConn(t testing.TB, a *allInOne) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	pw, err := os.ReadFile(filepath.Join(a.cfg.DataDir, natsAdminPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(a.NATSURL(), nats.UserInfo("admin", strings.TrimSpace(string(pw))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// putSettings stores a tenant's settings through the privacy service, as
// an admin of the tenant. The seconds fields are the test unit: the public
// API takes days and hours only.
func putSettings(t *testing.T, nc *nats.Conn, tenant string, s privacyapi.Settings) {
	t.Helper()
	req := rpc.Request[privacyapi.PutSettingsArgs]{
		Principal: auth.Principal{Tenant: tenant, ID: "ada", Role: auth.RoleAdmin},
		Args:      privacyapi.PutSettingsArgs{Tenant: tenant, Settings: s},
	}
	if err := rpc.Call(t.Context(), nc, privacyapi.PutSettingsSubject, req, nil); err != nil {
		t.Fatalf("PutSettings(%+v) error = %v", s, err)
	}
}

// TestRetentionRemovesConversations sets a retention of seconds and shows
// the whole conversation gone, from the CHAT stream and from the API, by
// the store's per-message TTL alone, also after a restart.
func TestRetentionRemovesConversations(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	nc, js := adminConn(t, a)
	chatStream, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	putSettings(t, nc, "demo", privacyapi.Settings{RetentionDays: 1, RetentionSeconds: 3})
	_, visitor := newVisitor(t, a.URL(), "demo")
	agent := staffToken(t, dir, "demo", "agent", "alice")

	// Chat follows the settings bucket: wait until an append carries the
	// tenant's retention as its TTL.
	var conv string
	natstest.Until(t, 10*time.Second, "chat appending with a 3s TTL", func() bool {
		conv = mustCall(t, a.URL(), "POST", "/v1/conversations", visitor, map[string]any{"text": "is my data kept?"}, http.StatusCreated)["id"].(string)
		m, err := chatStream.GetLastMsgForSubject(t.Context(), stream.ChatSubject("demo", conv))
		return err == nil && m.Header.Get(jetstream.MsgTTLHeader) == "3s"
	})
	mustCall(t, a.URL(), "POST", "/v1/conversations/"+conv+"/messages", agent, map[string]any{"text": "three seconds"}, http.StatusCreated)
	if status, texts := messageTexts(t, a.URL(), visitor, conv); status != http.StatusOK || len(texts) != 2 {
		t.Fatalf("before expiry the conversation reads %d %v, want 200 and 2 messages", status, texts)
	}

	gone := func(base string) error {
		if _, err := chatStream.GetLastMsgForSubject(t.Context(), stream.ChatSubject("demo", conv)); !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("CHAT still holds the conversation: err = %v", err)
		}
		if status, _ := call(t, base, "GET", "/v1/conversations/"+conv+"/messages", visitor, nil); status != http.StatusNotFound {
			return fmt.Errorf("GET messages = %d, want 404", status)
		}
		return nil
	}
	natstest.Eventually(t, 15*time.Second, "the expired conversation gone", func() error { return gone(a.URL()) })
	// Conversations opened while the retention was on its way keep the old
	// one; only the expired conversation must be gone from the list.
	list := mustCall(t, a.URL(), "GET", "/v1/conversations", visitor, nil, http.StatusOK)
	for _, c := range list["conversations"].([]any) {
		if c.(map[string]any)["id"] == conv {
			t.Errorf("GET /v1/conversations after expiry still lists %s", conv)
		}
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a, _ = testAll(t, dir)
	_, js = adminConn(t, a)
	if chatStream, err = js.Stream(t.Context(), stream.Chat); err != nil {
		t.Fatal(err)
	}
	if err := gone(a.URL()); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

// TestRetentionExpiresKeys sets a retention of seconds and shows the keys
// of a visitor whose conversation expired erased by a schedule in the
// store: the key service answers gone, the export 410, and the audit trail
// names the system's retention; while a visitor who keeps posting keeps
// their keys, their conversation and their export.
func TestRetentionExpiresKeys(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	checkBus(t, logs)
	base := a.URL()
	nc, js := adminConn(t, a)
	chatStream, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	auditor := staffToken(t, dir, "demo", "auditor", "otto")
	ephemeralTenant(t, a, nc, chatStream, privacyapi.Settings{RetentionDays: 1, RetentionSeconds: 3})

	goneID, gone := newVisitor(t, base, "demo")
	keptID, kept := newVisitor(t, base, "demo")
	goneConv := mustCall(t, base, "POST", "/v1/conversations", gone, map[string]any{"text": "forget me"}, http.StatusCreated)["id"].(string)
	keptConv := mustCall(t, base, "POST", "/v1/conversations", kept, map[string]any{"text": "still talking"}, http.StatusCreated)["id"].(string)
	posted := time.Now()
	natstest.Until(t, 30*time.Second, "the idle visitor's keys expired", func() bool {
		if time.Since(posted) >= time.Second {
			mustCall(t, base, "POST", "/v1/conversations/"+keptConv+"/messages", kept, map[string]any{"text": "and more"}, http.StatusCreated)
			posted = time.Now()
		}
		status, _ := call(t, base, "GET", "/v1/me/export", gone, nil)
		return status == http.StatusGone
	})

	keysOf := func(id string) error {
		var keys personkey.Keys
		return rpc.Call(t.Context(), nc, personkey.GetSubject, personkey.Request{Tenant: "demo", Person: id}, &keys)
	}
	if err := keysOf(goneID); rpc.CodeOf(err) != rpc.CodeGone {
		t.Errorf("keys of the expired visitor: err = %v, want code %q", err, rpc.CodeGone)
	}
	if _, err := chatStream.GetLastMsgForSubject(t.Context(), stream.ChatSubject("demo", goneConv)); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("CHAT still holds the expired conversation: err = %v", err)
	}
	if err := keysOf(keptID); err != nil {
		t.Errorf("keys of the visitor who kept posting: %v", err)
	}
	mustCall(t, base, "GET", "/v1/me/export", kept, nil, http.StatusOK)
	if status, _ := messageTexts(t, base, kept, keptConv); status != http.StatusOK {
		t.Errorf("the kept conversation reads %d, want 200", status)
	}

	// Audited: an erasure by the system, for retention.
	audited := auditActs(t, base, auditor, "")
	want := "system/retention erase subject:" + goneID
	if !slices.Contains(audited, want) {
		t.Errorf("audit trail = %v, want %q", audited, want)
	}
	for _, got := range audited {
		if strings.Contains(got, keptID) {
			t.Errorf("audit trail holds %q about the visitor who kept posting", got)
		}
	}
}
