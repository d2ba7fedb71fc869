package main

import (
	"bytes"
	"crypto/ed25519"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// TestBotsAndIntegrations registers a bot and an integration through
// `parley all` as an admin and attacks the registry: bad input is refused
// with nothing stored; the bot's secret and session are given once, the
// session refreshes into access tokens of role bot; an update keeps the
// secret; supervisors list, agents and visitors may not; the stored record
// holds no secret in clear; a new session ends the old one, and deleting
// the bot ends its session, and its access token, though it verifies
// still, is refused its post, transcript read and hand-off alike; every act
// is audited, and no log holds a secret or token.
func TestBotsAndIntegrations(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAllWith(t, dir, localWebhooks)
	base := a.URL()
	admin := staffToken(t, dir, "demo", "admin", "ada")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	auditor := staffToken(t, dir, "demo", "auditor", "aud")
	_, visitor := newVisitor(t, base, "demo")
	good := map[string]any{"name": "FAQ", "webhook_url": "http://127.0.0.1:8081/parley"}

	bad := []struct {
		name string
		body map[string]any
	}{
		{"plain http elsewhere", map[string]any{"name": "FAQ", "webhook_url": "http://bots.example/parley"}},
		{"another tenant's subject", map[string]any{"name": "FAQ", "nats_subject": "parley.bots.acme.faq"}},
		{"a wildcard subject", map[string]any{"name": "FAQ", "nats_subject": "parley.bots.demo.*"}},
		{"a name too long", map[string]any{"name": strings.Repeat("x", 101), "webhook_url": "https://bots.example/parley"}},
		{"no name", map[string]any{"webhook_url": "https://bots.example/parley"}},
		{"both", map[string]any{"name": "FAQ", "webhook_url": "https://bots.example/parley", "nats_subject": "parley.bots.demo.faq"}},
		{"neither", map[string]any{"name": "FAQ"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			mustCall(t, base, "PUT", "/v1/bots/faq", admin, tt.body, http.StatusUnprocessableEntity)
		})
	}
	mustCall(t, base, "PUT", "/v1/bots/faq.x", admin, good, http.StatusUnprocessableEntity)
	mustCall(t, base, "GET", "/v1/bots/faq", admin, nil, http.StatusNotFound)
	if got := mustCall(t, base, "GET", "/v1/bots", admin, nil, http.StatusOK)["bots"].([]any); len(got) != 0 {
		t.Fatalf("bots after refused registrations = %v, want none", got)
	}
	for _, who := range []string{agent, visitor, supervisor} {
		mustCall(t, base, "PUT", "/v1/bots/faq", who, good, http.StatusForbidden)
	}
	for _, who := range []string{agent, visitor} {
		mustCall(t, base, "GET", "/v1/bots", who, nil, http.StatusForbidden)
	}

	created := mustCall(t, base, "PUT", "/v1/bots/faq", admin, good, http.StatusCreated)
	secret, _ := created["secret"].(string)
	session, _ := created["session"].(map[string]any)
	if len(secret) != 43 || session == nil || created["kind"] != "bot" || created["webhook_url"] != good["webhook_url"] {
		t.Fatalf("registration = %v, want a bot with a 43-character secret and a session", created)
	}
	if p := session["principal"].(map[string]any); p["role"] != "bot" || p["id"] != "faq" || p["tenant"] != "demo" {
		t.Errorf("the bot's session is for %v, want demo's bot faq", p)
	}

	// The bot refreshes its session: its access tokens carry role bot.
	access, refresh := refreshed(t, base, session["refresh_token"].(string))
	key, err := auth.ReadKey(filepath.Join(dir, auth.SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.NewVerifier(key.Public().(ed25519.PublicKey)).Verify(access)
	if want := (auth.Principal{Tenant: "demo", ID: "faq", Role: auth.RoleBot}); err != nil || p != want {
		t.Errorf("the bot's access token = %+v, %v; want %+v", p, err, want)
	}
	// A bot reads nothing of the registry.
	mustCall(t, base, "GET", "/v1/bots", access, nil, http.StatusForbidden)

	updated := mustCall(t, base, "PUT", "/v1/bots/faq", admin, map[string]any{"name": "FAQ bot", "nats_subject": "parley.bots.demo.faq"}, http.StatusOK)
	if _, ok := updated["secret"]; ok || updated["session"] != nil || updated["webhook_url"] != nil || updated["nats_subject"] != "parley.bots.demo.faq" {
		t.Errorf("update = %v, want the view on its NATS subject, without secret or session", updated)
	}
	bots := mustCall(t, base, "GET", "/v1/bots", supervisor, nil, http.StatusOK)["bots"].([]any)
	if len(bots) != 1 || bots[0].(map[string]any)["name"] != "FAQ bot" {
		t.Errorf("bots listed to a supervisor = %v, want FAQ bot", bots)
	}
	mustCall(t, base, "GET", "/v1/bots/faq", supervisor, nil, http.StatusForbidden)

	crm := mustCall(t, base, "PUT", "/v1/integrations/crm", admin, map[string]any{"name": "CRM", "webhook_url": "https://crm.example/parley"}, http.StatusCreated)
	if _, ok := crm["session"]; ok || len(crm["secret"].(string)) != 43 || crm["kind"] != "integration" {
		t.Errorf("integration registration = %v, want a secret and no session", crm)
	}
	mustCall(t, base, "PUT", "/v1/integrations/faq", admin, map[string]any{"name": "CRM", "webhook_url": "https://crm.example/parley"}, http.StatusConflict)
	if got := mustCall(t, base, "GET", "/v1/bots/crm", admin, nil, http.StatusNotFound); got["detail"] != "no such bot" {
		t.Errorf("GET a bot by an integration's id = %v, want no such bot", got)
	}
	if got := mustCall(t, base, "GET", "/v1/integrations", supervisor, nil, http.StatusOK)["integrations"].([]any); len(got) != 1 {
		t.Errorf("integrations = %v, want crm", got)
	}

	// What is stored holds no secret in clear, in the bucket or anywhere
	// in the store's files.
	_, js := adminConn(t, a)
	kv, err := js.KeyValue(t.Context(), privacyapi.IntegrationsBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), privacyapi.IntegrationKey("demo", "faq"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(e.Value(), []byte(secret)) || !bytes.Contains(e.Value(), []byte(`"sealed_secret"`)) {
		t.Errorf("the stored bot holds its secret in clear, or no sealed one: %s", e.Value())
	}
	if hits := storeContains(t, filepath.Join(dir, "nats"), secret, crm["secret"].(string)); len(hits) != 0 {
		t.Errorf("the store's files hold a secret in clear: %v", hits)
	}

	// A bot that lost its refresh token gets a new session, which ends the
	// old one; deleting the bot ends the new one.
	fresh := mustCall(t, base, "POST", "/v1/bots/faq/session", admin, nil, http.StatusCreated)
	mustCall(t, base, "POST", "/v1/sessions/refresh", "", map[string]string{"refresh_token": refresh}, http.StatusUnauthorized)
	botAccess, next := refreshed(t, base, fresh["refresh_token"].(string))
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)
	path := "/v1/conversations/" + conv
	mustCall(t, base, "POST", path+"/assign", supervisor, map[string]any{"bot_id": "faq"}, http.StatusOK)
	mustCall(t, base, "POST", path+"/messages", botAccess, map[string]any{"text": "how may I help?"}, http.StatusCreated)
	mustCall(t, base, "DELETE", "/v1/bots/faq", supervisor, nil, http.StatusForbidden)
	mustCall(t, base, "DELETE", "/v1/bots/faq", admin, nil, http.StatusNoContent)
	mustCall(t, base, "POST", "/v1/sessions/refresh", "", map[string]string{"refresh_token": next}, http.StatusUnauthorized)
	deletedBotRefused(t, base, botAccess, path)
	if got := mustCall(t, base, "GET", path, supervisor, nil, http.StatusOK); got["assignee"] != "bot:faq" {
		t.Errorf("after the deleted bot's hand-off: assignee %v, want still bot:faq", got["assignee"])
	}
	mustCall(t, base, "GET", "/v1/bots/faq", admin, nil, http.StatusNotFound)
	mustCall(t, base, "POST", "/v1/bots/faq/session", admin, nil, http.StatusNotFound)
	mustCall(t, base, "DELETE", "/v1/integrations/crm", admin, nil, http.StatusNoContent)
	mustCall(t, base, "DELETE", "/v1/integrations/crm", admin, nil, http.StatusNotFound)

	got := auditActions(t, base, auditor)
	for _, want := range []string{"integration.put bot:faq webhook http://127.0.0.1:8081", "integration.put bot:faq nats_subject parley.bots.demo.faq",
		"integration.put integration:crm webhook https://crm.example", "integration.session bot:faq", "integration.delete bot:faq", "integration.delete integration:crm"} {
		if !slices.Contains(got, want) {
			t.Errorf("audit entries %v, want %q", got, want)
		}
	}
	logsHoldNone(t, a, logs, map[string]string{"bot's secret": secret, "integration's secret": crm["secret"].(string),
		"bot's refresh token": refresh, "bot's new refresh token": next, "bot's access token": access, "bot's new access token": botAccess})
}

// deletedBotRefused asserts that the access token of a deleted bot, still
// valid, is refused at once and alike wherever a bot reaches the
// conversation at path assigned to it: posting, reading its transcript and
// handing it off.
func deletedBotRefused(t *testing.T, base, token, path string) {
	t.Helper()
	post := mustCall(t, base, "POST", path+"/messages", token, map[string]any{"text": "still here?"}, http.StatusForbidden)
	for _, c := range []struct{ method, path string }{
		{"GET", path + "/messages"},
		{"POST", path + "/handoff"},
	} {
		if got := mustCall(t, base, c.method, c.path, token, nil, http.StatusForbidden); got["type"] != post["type"] || got["detail"] != post["detail"] {
			t.Errorf("the deleted bot's %s %s = %v, want the refusal of its post, %v", c.method, c.path, got, post)
		}
	}
}

// TestWebhooksAtPrivateAddressesRefused attacks what a tenant's admin could
// make `parley all` post to: unless the operator allows private webhooks,
// a bot or integration at this host (ClickHouse's HTTP port, the bus's
// monitoring) or a private network's address is refused with 422 naming
// webhook_url, and nothing is registered.
func TestWebhooksAtPrivateAddressesRefused(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	admin := staffToken(t, dir, "demo", "admin", "ada")
	for _, u := range []string{"http://127.0.0.1:8123/?query=INSERT%20INTO%20facts", "https://localhost:8222/varz", "https://10.0.0.7/hook", "https://169.254.169.254/latest/meta-data"} {
		out := mustCall(t, base, "PUT", "/v1/integrations/crm", admin, map[string]any{"name": "CRM", "webhook_url": u}, http.StatusUnprocessableEntity)
		if detail, _ := out["detail"].(string); !strings.Contains(detail, "webhook_url") {
			t.Errorf("PUT with webhook_url %s: detail %q, want it to name webhook_url", u, detail)
		}
		mustCall(t, base, "PUT", "/v1/bots/faq", admin, map[string]any{"name": "FAQ", "webhook_url": u}, http.StatusUnprocessableEntity)
	}
	if got := mustCall(t, base, "GET", "/v1/integrations", admin, nil, http.StatusOK)["integrations"].([]any); len(got) != 0 {
		t.Errorf("integrations after refused registrations = %v, want none", got)
	}
	mustCall(t, base, "PUT", "/v1/integrations/crm", admin, map[string]any{"name": "CRM", "webhook_url": "https://crm.example/parley"}, http.StatusCreated)
}
