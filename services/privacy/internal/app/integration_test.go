package app_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

func botArgs(id, url string) privacyapi.PutIntegrationArgs {
	return privacyapi.PutIntegrationArgs{
		IntegrationArgs: privacyapi.IntegrationArgs{Tenant: "demo", Kind: privacyapi.KindBot, ID: id},
		Name:            "FAQ bot", WebhookURL: url,
	}
}

// TestPutIntegrationRefusesBadInput: every rule of a registration is
// checked in one place, before anything is audited or stored, and the
// error names the field.
func TestPutIntegrationRefusesBadInput(t *testing.T) {
	store := memory.NewIntegrationStore()
	a := newMemoryAppWith(t, &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}, new(memory.Bus), func(s *app.Stores) {
		s.Integrations, s.PrivateWebhooks = store, true
	})
	ctx := t.Context()
	admin := auth.Principal{Tenant: "demo", ID: "ada", Role: auth.RoleAdmin}
	with := func(f func(*privacyapi.PutIntegrationArgs)) privacyapi.PutIntegrationArgs {
		args := botArgs("faq", "https://bots.example/hook")
		f(&args)
		return args
	}
	tests := []struct {
		name      string
		give      privacyapi.PutIntegrationArgs
		wantField string
	}{
		{"plain http elsewhere", botArgs("faq", "http://bots.example/hook"), "webhook_url"},
		{"http to a private address", botArgs("faq", "http://10.0.0.1/hook"), "webhook_url"},
		{"no scheme", botArgs("faq", "bots.example/hook"), "webhook_url"},
		{"user info", botArgs("faq", "https://u:p@bots.example/hook"), "webhook_url"},
		{"ftp", botArgs("faq", "ftp://bots.example/hook"), "webhook_url"},
		{"both", with(func(a *privacyapi.PutIntegrationArgs) { a.NATSSubject = "parley.bots.demo.faq" }), "webhook_url"},
		{"neither", with(func(a *privacyapi.PutIntegrationArgs) { a.WebhookURL = "" }), "webhook_url"},
		{"another tenant's subject", with(func(a *privacyapi.PutIntegrationArgs) {
			a.WebhookURL, a.NATSSubject = "", "parley.bots.other.faq"
		}), "nats_subject"},
		{"wildcard subject", with(func(a *privacyapi.PutIntegrationArgs) { a.WebhookURL, a.NATSSubject = "", "parley.bots.demo.>" }), "nats_subject"},
		{"prefix only", with(func(a *privacyapi.PutIntegrationArgs) { a.WebhookURL, a.NATSSubject = "", "parley.bots.demo." }), "nats_subject"},
		{"empty name", with(func(a *privacyapi.PutIntegrationArgs) { a.Name = " " }), "name"},
		{"long name", with(func(a *privacyapi.PutIntegrationArgs) { a.Name = strings.Repeat("é", 101) }), "name"},
		{"control in name", with(func(a *privacyapi.PutIntegrationArgs) { a.Name = "FAQ\nbot" }), "name"},
		{"bad id", with(func(a *privacyapi.PutIntegrationArgs) { a.ID = "faq.bot" }), "id"},
		{"bad kind", with(func(a *privacyapi.PutIntegrationArgs) { a.Kind = "agent" }), "kind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.PutIntegration(ctx, admin, tt.give)
			var ve *app.ValidationError
			if !errors.As(err, &ve) || ve.Field != tt.wantField {
				t.Errorf("PutIntegration() = %v, want a ValidationError of %s", err, tt.wantField)
			}
		})
	}
	for _, ok := range []privacyapi.PutIntegrationArgs{
		botArgs("local", "http://127.0.0.1:8081/hook"),
		botArgs("local6", "http://[::1]:8081/hook"),
		botArgs("localhost", "http://localhost/hook"),
		with(func(a *privacyapi.PutIntegrationArgs) {
			a.ID, a.Name, a.WebhookURL, a.NATSSubject = "nats", strings.Repeat("é", 100), "", "parley.bots.demo.faq.in"
		}),
	} {
		if _, err := a.PutIntegration(ctx, admin, ok); err != nil {
			t.Errorf("PutIntegration(%s) = %v, want it stored", ok.ID, err)
		}
	}
	stored, err := store.List(ctx, "demo")
	if err != nil || len(stored) != 4 {
		t.Errorf("Integrations() = %d, %v; want the 4 valid ones only", len(stored), err)
	}
	res, err := a.ListAudit(ctx, admin, "demo", time.Time{})
	if err != nil || len(res.Entries) != 4 {
		t.Errorf("ListAudit() = %d entries, %v; want the 4 valid ones only", len(res.Entries), err)
	}
}

// TestPutIntegrationRefusesPrivateAddresses: without PrivateWebhooks, a
// webhook whose host is this host or a private network's address by its
// very name is refused, naming the field, and nothing is stored.
func TestPutIntegrationRefusesPrivateAddresses(t *testing.T) {
	store := memory.NewIntegrationStore()
	a := newMemoryAppWith(t, &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}, new(memory.Bus), func(s *app.Stores) { s.Integrations = store })
	ctx := t.Context()
	admin := auth.Principal{Tenant: "demo", ID: "ada", Role: auth.RoleAdmin}
	for _, url := range []string{
		"http://127.0.0.1:8123/?query=INSERT", "http://localhost/hook", "https://localhost/hook", "https://bots.localhost/hook",
		"https://127.0.0.1/hook", "https://[::1]/hook", "https://10.0.0.1/hook", "https://192.168.1.20:8443/hook",
		"https://100.64.0.1/hook", "https://169.254.169.254/latest", "https://[fd00::1]/hook", "https://[::ffff:10.0.0.1]/hook",
	} {
		_, err := a.PutIntegration(ctx, admin, botArgs("faq", url))
		if ve := (*app.ValidationError)(nil); !errors.As(err, &ve) || ve.Field != "webhook_url" {
			t.Errorf("PutIntegration(%s) = %v, want a ValidationError of webhook_url", url, err)
		}
	}
	if stored, err := store.List(ctx, "demo"); err != nil || len(stored) != 0 {
		t.Errorf("Integrations() = %d, %v; want none stored", len(stored), err)
	}
	for i, url := range []string{"https://bots.example/hook", "https://93.184.215.14:8443/hook"} {
		if _, err := a.PutIntegration(ctx, admin, botArgs(fmt.Sprintf("public%d", i), url)); err != nil {
			t.Errorf("PutIntegration(%s) = %v, want it stored", url, err)
		}
	}
}

// TestBotLifecycle: an admin registers a bot, which gets a secret and a
// session once; the secret is stored sealed and opens for the deliveries;
// an update keeps it; supervisors list, agents may not; the bot refreshes
// its session while registered; a new session revokes the old; signing
// out everywhere and deleting the bot revoke a bot's sessions, never a
// member of staff's of the same id, nor the reverse.
func TestBotLifecycle(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	store := memory.NewIntegrationStore()
	a := newMemoryAppWith(t, c, new(memory.Bus), func(s *app.Stores) { s.Integrations = store })
	ctx := t.Context()
	admin := auth.Principal{Tenant: "demo", ID: "ada", Role: auth.RoleAdmin}
	supervisor := auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor}
	agent := auth.Principal{Tenant: "demo", ID: "faq", Role: auth.RoleAgent}

	if _, err := a.PutIntegration(ctx, agent, botArgs("faq", "https://bots.example/hook")); !errors.Is(err, app.ErrForbidden) {
		t.Fatalf("PutIntegration(agent) = %v, want ErrForbidden", err)
	}
	created, err := a.PutIntegration(ctx, admin, botArgs("faq", "https://bots.example/hook?token=receiver-secret"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(created.Secret)
	if !created.Created || err != nil || len(raw) != 32 || created.Session == nil {
		t.Fatalf("PutIntegration(new) = %+v; want created with a 32-byte secret and a session", created)
	}
	if want := (auth.Principal{Tenant: "demo", ID: "faq", Role: auth.RoleBot}); created.Session.Principal != want {
		t.Errorf("the bot's session is for %+v, want %+v", created.Session.Principal, want)
	}

	recs, err := store.List(ctx, "demo")
	if err != nil || len(recs) != 1 {
		t.Fatalf("Integrations() = %v, %v", recs, err)
	}
	secret := []byte(created.Secret)
	stored, _ := json.Marshal(recs[0])
	if bytes.Contains(stored, secret) || bytes.Contains(stored, raw) || strings.Contains(string(stored), base64.StdEncoding.EncodeToString(raw)) {
		t.Error("the stored record holds the secret in clear")
	}
	if got, err := a.IntegrationSecret(recs[0]); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("IntegrationSecret() = %x, %v; want the secret given", got, err)
	}
	moved := recs[0]
	moved.ID = "other"
	if _, err := a.IntegrationSecret(moved); err == nil {
		t.Error("IntegrationSecret() of a record copied to another id = nil error, want it refused")
	}

	c.advance(time.Hour)
	updated, err := a.PutIntegration(ctx, admin, privacyapi.PutIntegrationArgs{
		IntegrationArgs: privacyapi.IntegrationArgs{Tenant: "demo", Kind: privacyapi.KindBot, ID: "faq"},
		Name:            "FAQ", NATSSubject: "parley.bots.demo.faq",
	})
	if err != nil || updated.Created || updated.Secret != "" || updated.Session != nil {
		t.Fatalf("PutIntegration(update) = %+v, %v; want no secret, no session", updated, err)
	}
	if v := updated.Integration; v.NATSSubject != "parley.bots.demo.faq" || v.WebhookURL != "" || !v.CreatedAt.Equal(created.Integration.CreatedAt) || !v.UpdatedAt.Equal(c.now()) {
		t.Errorf("updated view = %+v", v)
	}
	recs, _ = store.List(ctx, "demo")
	if got, err := a.IntegrationSecret(recs[0]); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("IntegrationSecret() after the update = %v; want the secret kept", err)
	}
	if _, err := a.PutIntegration(ctx, admin, privacyapi.PutIntegrationArgs{
		IntegrationArgs: privacyapi.IntegrationArgs{Tenant: "demo", Kind: privacyapi.KindIntegration, ID: "faq"},
		Name:            "CRM", WebhookURL: "https://crm.example/hook",
	}); !errors.Is(err, app.ErrKindTaken) {
		t.Errorf("PutIntegration(an integration with a bot's id) = %v, want ErrKindTaken", err)
	}
	if _, err := a.GetIntegration(ctx, admin, privacyapi.IntegrationArgs{Tenant: "demo", Kind: privacyapi.KindIntegration, ID: "faq"}); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("GetIntegration(kind integration) of a bot = %v, want ErrNotFound", err)
	}

	// A supervisor sees what assigning needs; an admin, where it goes.
	list, err := a.ListIntegrations(ctx, supervisor, "demo", privacyapi.KindBot)
	if want := []privacyapi.IntegrationView{{ID: "faq", Kind: privacyapi.KindBot, Name: "FAQ"}}; err != nil || !slices.Equal(list, want) {
		t.Errorf("ListIntegrations(supervisor) = %+v, %v; want %+v", list, err, want)
	}
	list, err = a.ListIntegrations(ctx, admin, "demo", privacyapi.KindBot)
	if err != nil || len(list) != 1 || list[0].NATSSubject != "parley.bots.demo.faq" || list[0].CreatedAt.IsZero() {
		t.Errorf("ListIntegrations(admin) = %+v, %v; want faq with its subject and dates", list, err)
	}
	if _, err := a.ListIntegrations(ctx, agent, "demo", privacyapi.KindBot); !errors.Is(err, app.ErrForbidden) {
		t.Errorf("ListIntegrations(agent) = %v, want ErrForbidden", err)
	}
	if _, err := a.GetIntegration(ctx, supervisor, privacyapi.IntegrationArgs{Tenant: "demo", Kind: privacyapi.KindBot, ID: "faq"}); !errors.Is(err, app.ErrForbidden) {
		t.Errorf("GetIntegration(supervisor) = %v, want ErrForbidden", err)
	}

	// A month passes, refreshed every day: the bot keeps its session.
	tok := created.Session.RefreshToken
	for range 40 {
		c.advance(24 * time.Hour)
		s, err := a.RefreshSession(ctx, tok)
		if err != nil {
			t.Fatalf("RefreshSession(bot) on %v = %v", c.now(), err)
		}
		tok = s.RefreshToken
	}
	fresh, err := a.StartBotSession(ctx, admin, "demo", "faq")
	if err != nil || fresh.Principal.Role != auth.RoleBot {
		t.Fatalf("StartBotSession() = %+v, %v", fresh, err)
	}
	if _, err := a.RefreshSession(ctx, tok); !errors.Is(err, app.ErrSessionRefused) {
		t.Errorf("RefreshSession(the old session) after a new one = %v, want ErrSessionRefused", err)
	}
	staff, err := a.StartSession(ctx, agent, "demo")
	if err != nil {
		t.Fatal(err)
	}
	// The agent faq signing out everywhere leaves the bot faq signed in,
	// and the reverse.
	other, err := a.StartSession(ctx, agent, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := a.RevokeSessions(ctx, agent, "demo", "faq"); err != nil || n != 2 {
		t.Errorf("RevokeSessions(agent faq) = %d, %v; want their own 2", n, err)
	}
	if _, err := a.RefreshSession(ctx, other.RefreshToken); !errors.Is(err, app.ErrSessionRefused) {
		t.Errorf("RefreshSession(agent's, signed out everywhere) = %v, want ErrSessionRefused", err)
	}
	next, err := a.RefreshSession(ctx, fresh.RefreshToken)
	if err != nil {
		t.Fatalf("RefreshSession(bot) after the agent faq signed out everywhere = %v", err)
	}
	// A bot's sessions are the admin's to end (delete, or a new session).
	if _, err := a.RevokeSessions(ctx, next.Principal, "demo", "faq"); !errors.Is(err, app.ErrForbidden) {
		t.Errorf("RevokeSessions(by the bot) = %v, want ErrForbidden", err)
	}
	if _, err := a.RefreshSession(ctx, next.RefreshToken); err != nil {
		t.Errorf("RefreshSession(bot, after its refused sign-out) = %v", err)
	}
	fresh, err = a.StartBotSession(ctx, admin, "demo", "faq")
	if err != nil {
		t.Fatal(err)
	}
	staff, err = a.StartSession(ctx, agent, "demo")
	if err != nil {
		t.Fatal(err)
	}

	if err := a.DeleteIntegration(ctx, supervisor, privacyapi.IntegrationArgs{Tenant: "demo", Kind: privacyapi.KindBot, ID: "faq"}); !errors.Is(err, app.ErrForbidden) {
		t.Errorf("DeleteIntegration(supervisor) = %v, want ErrForbidden", err)
	}
	if err := a.DeleteIntegration(ctx, admin, privacyapi.IntegrationArgs{Tenant: "demo", Kind: privacyapi.KindBot, ID: "faq"}); err != nil {
		t.Fatalf("DeleteIntegration() = %v", err)
	}
	if _, err := a.RefreshSession(ctx, fresh.RefreshToken); !errors.Is(err, app.ErrSessionRefused) {
		t.Errorf("RefreshSession(bot) after the delete = %v, want ErrSessionRefused", err)
	}
	if _, err := a.RefreshSession(ctx, staff.RefreshToken); err != nil {
		t.Errorf("RefreshSession(agent faq) after the bot faq was deleted = %v, want it kept", err)
	}
	if _, err := a.StartBotSession(ctx, admin, "demo", "faq"); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("StartBotSession(deleted) = %v, want ErrNotFound", err)
	}

	res, err := a.ListAudit(ctx, admin, "demo", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range res.Entries {
		if strings.Contains(e.Target, "receiver-secret") || strings.Contains(e.Target, created.Secret) {
			t.Errorf("audit entry %q holds a secret", e.Target)
		}
		actions = append(actions, e.Action+" "+e.Target)
	}
	want := []string{
		audit.ActionIntegrationPut + " bot:faq webhook https://bots.example",
		audit.ActionIntegrationPut + " bot:faq nats_subject parley.bots.demo.faq",
		audit.ActionIntegrationSession + " bot:faq",
		audit.ActionSignIn, audit.ActionSignIn,
		audit.ActionSignOutEverywhere,
		audit.ActionIntegrationSession + " bot:faq",
		audit.ActionSignIn,
		audit.ActionIntegrationDelete + " bot:faq",
	}
	if len(actions) != len(want) {
		t.Fatalf("audit = %q, want %q", actions, want)
	}
	for i := range want {
		if !strings.HasPrefix(actions[i], want[i]) {
			t.Errorf("audit[%d] = %q, want %q", i, actions[i], want[i])
		}
	}
}
