package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// testAllAt runs `parley all` as testAll does, its sessions and tokens on
// clock c.
func testAllAt(t *testing.T, dir string, c *natstest.Clock) (*allInOne, *syncBuffer) {
	t.Helper()
	return testAllWith(t, dir, func(cfg *allConfig) { cfg.now = c.Now })
}

// logsHoldNone stops a and fails the test for each secret its logs hold.
func logsHoldNone(t *testing.T, a *allInOne, logs *syncBuffer, secrets map[string]string) {
	t.Helper()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	text := logs.String()
	for what, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("the logs hold the %s", what)
		}
	}
}

// refreshed spends refresh and returns the session's next access and
// refresh tokens.
func refreshed(t *testing.T, base, refresh string) (access, next string) {
	t.Helper()
	out := mustCall(t, base, "POST", "/v1/sessions/refresh", "", map[string]string{"refresh_token": refresh}, http.StatusOK)
	return out["access_token"].(string), out["refresh_token"].(string)
}

// auditActs lists the tenant's audit entries stored at or after since (all
// of them when since is empty) as "role/id action target".
func auditActs(t *testing.T, base, token, since string) []string {
	t.Helper()
	path := "/v1/audit"
	if since != "" {
		path += "?since=" + since
	}
	var got []string
	for _, e := range mustCall(t, base, "GET", path, token, nil, http.StatusOK)["entries"].([]any) {
		e := e.(map[string]any)
		actor := e["actor"].(map[string]any)
		got = append(got, fmt.Sprintf("%s/%s %s %s", actor["role"], actor["id"], e["action"], e["target"]))
	}
	return got
}

// auditActions lists the tenant's audit entries as "action target".
func auditActions(t *testing.T, base, auditor string) []string {
	t.Helper()
	var got []string
	for _, e := range mustCall(t, base, "GET", "/v1/audit", auditor, nil, http.StatusOK)["entries"].([]any) {
		m := e.(map[string]any)
		got = append(got, m["action"].(string)+" "+m["target"].(string))
	}
	return got
}

// TestVisitorComesBack: a visitor whose access token expired days ago
// refreshes their session and still reads their conversation, exports and
// erases themself; after the erasure their refresh token is refused.
func TestVisitorComesBack(t *testing.T) {
	dir := t.TempDir()
	c := natstest.NewClock()
	a, _ := testAllAt(t, dir, c)
	base := a.URL()

	out := visitorWith(t, base, false)
	access, refresh := out["access_token"].(string), out["refresh_token"].(string)
	if out["token"] != access || out["expires_in"].(float64) != 15*60 {
		t.Errorf("registration = token %v, expires_in %v; want token equal to access_token, 900 s", out["token"], out["expires_in"])
	}
	conv := mustCall(t, base, "POST", "/v1/conversations", access, map[string]any{"text": "are you there?"}, http.StatusCreated)["id"].(string)

	c.Advance(3 * 24 * time.Hour)
	mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", access, nil, http.StatusUnauthorized)
	access, refresh = refreshed(t, base, refresh)
	msgs := mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", access, nil, http.StatusOK)
	if got := texts(t, msgs["messages"]); !slices.Equal(got, []string{"are you there?"}) {
		t.Errorf("messages after coming back = %v", got)
	}

	c.Advance(40 * 24 * time.Hour)
	access, refresh = refreshed(t, base, refresh)
	mustCall(t, base, "GET", "/v1/me/export", access, nil, http.StatusOK)
	mustCall(t, base, "DELETE", "/v1/me", access, nil, http.StatusAccepted)
	mustCall(t, base, "POST", "/v1/sessions/refresh", "", map[string]string{"refresh_token": refresh}, http.StatusUnauthorized)
}

// TestRefreshReuseEndsTheSession: the old refresh token stops working once
// used; presenting it again ends the session, the newest token refused too,
// and the reuse is in the audit trail. Sign-out and sign-out everywhere end
// sessions and are audited, without a token in any entry.
func TestRefreshReuseEndsTheSession(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAllAt(t, dir, natstest.NewClock())
	base := a.URL()
	auditor := staffToken(t, dir, "demo", "auditor", "aud")
	admin := staffToken(t, dir, "demo", "admin", "ada")

	register := func() (id, access, refresh string) {
		out := visitorWith(t, base, false)
		return out["visitor_id"].(string), out["access_token"].(string), out["refresh_token"].(string)
	}
	_, _, spent := register()
	_, next := refreshed(t, base, spent)
	mustCall(t, base, "POST", "/v1/sessions/refresh", "", map[string]string{"refresh_token": spent}, http.StatusUnauthorized)
	mustCall(t, base, "POST", "/v1/sessions/refresh", "", map[string]string{"refresh_token": next}, http.StatusUnauthorized)

	_, _, out := register()
	mustCall(t, base, "POST", "/v1/sessions/sign-out", "", map[string]string{"refresh_token": out}, http.StatusNoContent)
	mustCall(t, base, "POST", "/v1/sessions/refresh", "", map[string]string{"refresh_token": out}, http.StatusUnauthorized)

	id, access, everywhere := register()
	if got := mustCall(t, base, "DELETE", "/v1/me/sessions", access, nil, http.StatusOK)["revoked"]; got != 1.0 {
		t.Errorf("sign out everywhere revoked %v, want 1", got)
	}
	mustCall(t, base, "POST", "/v1/sessions/refresh", "", map[string]string{"refresh_token": everywhere}, http.StatusUnauthorized)
	mustCall(t, base, "DELETE", "/v1/people/"+id+"/sessions", access, nil, http.StatusOK)
	mustCall(t, base, "DELETE", "/v1/people/"+id+"/sessions", auditor, nil, http.StatusForbidden)
	mustCall(t, base, "DELETE", "/v1/people/"+id+"/sessions", admin, nil, http.StatusOK)

	got := auditActions(t, base, auditor)
	for _, want := range []string{"session.refresh_reuse", "session.sign_out", "session.sign_out_everywhere subject:" + id} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("audit entries %v, want one starting %q", got, want)
		}
	}
	for _, tok := range []string{spent, next, out, everywhere} {
		for _, e := range got {
			if strings.Contains(e, tok) {
				t.Errorf("audit entry %q holds a refresh token", e)
			}
		}
	}
	logsHoldNone(t, a, logs, map[string]string{"spent refresh token": spent, "rotated refresh token": next,
		"signed-out refresh token": out, "revoked refresh token": everywhere, "access token": access})
}
