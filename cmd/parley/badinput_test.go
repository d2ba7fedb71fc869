package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
)

func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	base := a.URL()
	operator := staffToken(t, dir, "*", "operator", "ops")
	mustCall(t, base, "PUT", "/v1/tenants/acme", operator, map[string]any{"name": "Acme"}, http.StatusCreated)

	_, visitor := newVisitor(t, base, "demo")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	acmeAgent := staffToken(t, dir, "acme", "agent", "mallory")
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)

	key, err := auth.ReadKey(filepath.Join(dir, auth.SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	expired, err := auth.NewSigner(key).Issue(auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}, -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := auth.NewSigner(otherKey).Issue(auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleSupervisor}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ghostTenant, err := auth.NewSigner(key).Issue(auth.Principal{Tenant: "ghost", ID: "x", Role: auth.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	admin := staffToken(t, dir, "demo", "admin", "ada")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	auditor := staffToken(t, dir, "demo", "auditor", "aud")
	msgs := "/v1/conversations/" + conv + "/messages"
	// detail, when set, is the field the service names in its refusal: the
	// rule is the service's, and its message reaches the client.
	tests := []struct {
		name   string
		method string
		path   string
		token  string
		body   []byte
		want   int
		detail string
	}{
		{name: "malformed JSON", method: "POST", path: msgs, token: visitor, body: []byte(`{"text":`), want: http.StatusBadRequest},
		{name: "JSON of the wrong shape", method: "POST", path: msgs, token: visitor, body: []byte(`{"text":42}`), want: http.StatusBadRequest},
		{name: "invalid UTF-8", method: "POST", path: msgs, token: visitor, body: []byte("{\"text\":\"caf\xe9\"}"), want: http.StatusBadRequest},
		{name: "text over 64 KiB", method: "POST", path: msgs, token: visitor, body: jsonBody(t, map[string]string{"text": strings.Repeat("a", 64<<10+1)}), want: http.StatusRequestEntityTooLarge},
		{name: "body of a megabyte", method: "POST", path: msgs, token: visitor, body: jsonBody(t, map[string]string{"text": strings.Repeat("a", 1<<20)}), want: http.StatusRequestEntityTooLarge},
		{name: "empty text", method: "POST", path: msgs, token: visitor, body: []byte(`{"text":""}`), want: http.StatusUnprocessableEntity},
		{name: "missing token", method: "POST", path: msgs, body: []byte(`{"text":"x"}`), want: http.StatusUnauthorized},
		{name: "forged token", method: "POST", path: msgs, token: forged, body: []byte(`{"text":"x"}`), want: http.StatusUnauthorized},
		{name: "expired token", method: "POST", path: msgs, token: expired, body: []byte(`{"text":"x"}`), want: http.StatusUnauthorized},
		{name: "garbage token", method: "GET", path: msgs, token: "abc.def.ghi", want: http.StatusUnauthorized},
		{name: "another tenant's agent reads", method: "GET", path: msgs, token: acmeAgent, want: http.StatusNotFound},
		{name: "another tenant's agent posts", method: "POST", path: msgs, token: acmeAgent, body: []byte(`{"text":"x"}`), want: http.StatusNotFound},
		{name: "token of an unknown tenant", method: "GET", path: "/v1/conversations", token: ghostTenant, want: http.StatusNotFound},
		{name: "unknown conversation", method: "POST", path: "/v1/conversations/nope/messages", token: visitor, body: []byte(`{"text":"x"}`), want: http.StatusNotFound},
		{name: "operator reads conversations", method: "GET", path: "/v1/conversations", token: operator, want: http.StatusForbidden},
		{name: "visitor manages tenants", method: "PUT", path: "/v1/tenants/evil", token: visitor, body: []byte(`{"name":"Evil"}`), want: http.StatusForbidden},
		{name: "bad tenant id", method: "PUT", path: "/v1/tenants/Bad_Id", token: operator, body: []byte(`{"name":"x"}`), want: http.StatusUnprocessableEntity},
		{name: "rating out of range", method: "POST", path: "/v1/conversations/" + conv + "/rating", token: visitor, body: []byte(`{"score":9}`), want: http.StatusUnprocessableEntity},
		{name: "visitors of an unknown tenant", method: "POST", path: "/v1/tenants/ghost/visitors", body: []byte(`{"consent":{"analytics":true,"network_data":false,"ai":false},"notice_version":"1"}`), want: http.StatusNotFound},
		{name: "blank text", method: "POST", path: msgs, token: visitor, body: []byte(`{"text":" \n"}`), want: http.StatusUnprocessableEntity, detail: "text"},
		{name: "erasure after close beyond ten years", method: "POST", path: "/v1/conversations", token: visitor, body: []byte(`{"text":"hi","erase_after_close_hours":87601}`), want: http.StatusUnprocessableEntity, detail: "erase_after_close_hours"},
		{name: "assign a malformed agent id", method: "POST", path: "/v1/conversations/" + conv + "/assign", token: supervisor, body: []byte(`{"agent_id":"a.b"}`), want: http.StatusUnprocessableEntity, detail: "agent_id"},
		{name: "rating without a score", method: "POST", path: "/v1/conversations/" + conv + "/rating", token: visitor, body: []byte(`{}`), want: http.StatusUnprocessableEntity, detail: "score"},
		{name: "notice version too long", method: "PUT", path: "/v1/me/consent", token: visitor, body: []byte(`{"analytics":true,"network_data":false,"ai":false,"notice_version":"` + strings.Repeat("v", 65) + `"}`), want: http.StatusUnprocessableEntity, detail: "notice_version"},
		{name: "empty notice version", method: "PUT", path: "/v1/me/consent", token: visitor, body: []byte(`{"analytics":true,"network_data":false,"ai":false,"notice_version":""}`), want: http.StatusUnprocessableEntity, detail: "notice_version"},
		{name: "visitor without a notice version", method: "POST", path: "/v1/tenants/demo/visitors", body: []byte(`{"consent":{"analytics":true,"network_data":false,"ai":false}}`), want: http.StatusUnprocessableEntity, detail: "notice_version"},
		{name: "retention of 0 days", method: "PUT", path: "/v1/settings", token: admin, body: []byte(`{"retention_days":0,"collect_network_data":false}`), want: http.StatusUnprocessableEntity, detail: "retention_days"},
		{name: "erasure after close beyond a year", method: "PUT", path: "/v1/settings", token: admin, body: []byte(`{"retention_days":30,"collect_network_data":false,"erase_after_close_hours":8761}`), want: http.StatusUnprocessableEntity, detail: "erase_after_close_hours"},
		{name: "agent reads the audit trail", method: "GET", path: "/v1/audit", token: agent, want: http.StatusForbidden},
		{name: "visitor reads the audit checkpoint", method: "GET", path: "/v1/audit/checkpoint", token: visitor, want: http.StatusForbidden},
		{name: "auditor reads settings", method: "GET", path: "/v1/settings", token: auditor, want: http.StatusForbidden},
		{name: "visitor changes settings", method: "PUT", path: "/v1/settings", token: visitor, body: []byte(`{"retention_days":1,"collect_network_data":true}`), want: http.StatusForbidden},
		{name: "agent reads an erasure", method: "GET", path: "/v1/erasures/e1", token: agent, want: http.StatusForbidden},
		{name: "profile name too long", method: "PUT", path: "/v1/me/profile", token: visitor, body: []byte(`{"name":"` + strings.Repeat("n", 101) + `"}`), want: http.StatusUnprocessableEntity, detail: "name"},
		{name: "profile e-mail with a display name", method: "PUT", path: "/v1/me/profile", token: visitor, body: []byte(`{"email":"Ada <ada@example.com>"}`), want: http.StatusUnprocessableEntity, detail: "email"},
		{name: "agent sets a profile", method: "PUT", path: "/v1/me/profile", token: agent, body: []byte(`{"name":"Alice"}`), want: http.StatusForbidden},
		{name: "supervisor withdraws a visitor's message", method: "DELETE", path: msgs + "/m1", token: supervisor, want: http.StatusForbidden},
		{name: "notice text too long", method: "PUT", path: "/v1/settings", token: admin, body: jsonBody(t, map[string]any{"retention_days": 30, "collect_network_data": false, "notice_text": strings.Repeat("é", 4001)}), want: http.StatusUnprocessableEntity, detail: "notice_text"},
		{name: "settings' notice version too long", method: "PUT", path: "/v1/settings", token: admin, body: jsonBody(t, map[string]any{"retention_days": 30, "collect_network_data": false, "notice_version": strings.Repeat("v", 65)}), want: http.StatusUnprocessableEntity, detail: "notice_version"},
		{name: "notice of an unknown tenant", method: "GET", path: "/v1/tenants/ghost/notice", want: http.StatusNotFound},
		{name: "settings without collect_network_data", method: "PUT", path: "/v1/settings", token: admin, body: []byte(`{"retention_days":30}`), want: http.StatusUnprocessableEntity, detail: "collect_network_data"},
	}
	settings := mustCall(t, base, "GET", "/v1/settings", admin, nil, http.StatusOK)
	before := snapshot(t, base, supervisor)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != nil {
				body = bytes.NewReader(tt.body)
			}
			resp := send(t, base, tt.method, tt.path, tt.token, body)
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("Content-Type = %q, want application/problem+json", ct)
			}
			var problem struct {
				Type   string `json:"type"`
				Title  string `json:"title"`
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&problem); err != nil {
				t.Fatalf("problem body: %v", err)
			}
			if problem.Status != tt.want || problem.Title == "" || problem.Type == "" {
				t.Errorf("problem = %+v, want status %d with type and title", problem, tt.want)
			}
			if !strings.Contains(problem.Detail, tt.detail) {
				t.Errorf("problem detail = %q, want it to name %q", problem.Detail, tt.detail)
			}
		})
	}
	if diff := cmp.Diff(before, snapshot(t, base, supervisor)); diff != "" {
		t.Errorf("bad requests changed state (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(settings, mustCall(t, base, "GET", "/v1/settings", admin, nil, http.StatusOK)); diff != "" {
		t.Errorf("bad requests changed the settings (-before +after):\n%s", diff)
	}
	mustCall(t, base, "GET", "/v1/me/profile", visitor, nil, http.StatusNotFound)
	// 0 hours is the chat service's "never": accepted, as the domain says.
	mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "keep", "erase_after_close_hours": 0}, http.StatusCreated)
	tenants := mustCall(t, base, "GET", "/v1/tenants", operator, nil, http.StatusOK)["tenants"].([]any)
	if len(tenants) != 2 {
		t.Errorf("tenants = %v, want demo and acme only", tenants)
	}
}

func jsonBody(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parley runs a command line as main does: its exit status and output.
func parley(t *testing.T, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), args, &out, &errOut)
	return exitStatus(err, &errOut), out.String(), errOut.String()
}

func TestHelpGoesToStdout(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "Usage: parley <command>"},
		{[]string{"help"}, "Usage: parley <command>"},
		{[]string{"-h"}, "Usage: parley <command>"},
		{[]string{"audit", "--help"}, "Usage: parley audit verify"},
		{[]string{"audit", "-h"}, "Usage: parley audit verify"},
		{[]string{"audit", "help"}, "Usage: parley audit verify"},
		{[]string{"audit", "verify", "--help"}, "Usage: parley audit verify"},
		{[]string{"keys", "--help"}, "Usage: parley keys rotate"},
		{[]string{"keys", "rotate", "-h"}, "Usage: parley keys rotate"},
		{[]string{"streams", "--help"}, "Usage: parley streams apply"},
		{[]string{"streams", "apply", "-help"}, "Usage: parley streams apply"},
		{[]string{"nats-config", "--help"}, "Usage: parley nats-config"},
		{[]string{"token", "--help"}, "-tenant"},
		{[]string{"demo", "--help"}, "-visitors"},
		{[]string{"all", "--help"}, "-data-dir"},
		{[]string{"gateway", "--help"}, "-signing-key-file"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			status, stdout, stderr := parley(t, tt.args...)
			if status != 0 || !strings.Contains(stdout, tt.want) || stderr != "" {
				t.Errorf("parley %s = %d, stdout %q, stderr %q; want 0, the usage (%q) on stdout, nothing on stderr",
					strings.Join(tt.args, " "), status, stdout, stderr, tt.want)
			}
		})
	}
}

func TestBadFlagIsReportedOnce(t *testing.T) {
	tests := [][]string{
		{"all", "--nosuch"},
		{"token", "--nosuch"},
		{"demo", "--nosuch"},
		{"gateway", "--nosuch"},
		{"nats-config", "--nosuch"},
		{"audit", "verify", "--nosuch"},
		{"keys", "rotate", "--nosuch"},
		{"streams", "apply", "--nosuch"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			status, stdout, stderr := parley(t, args...)
			const msg = "flag provided but not defined: -nosuch"
			if status != 2 || stdout != "" || strings.Count(stderr, msg) != 1 || !strings.Contains(stderr, "-h' for usage") {
				t.Errorf("parley %s = %d, stdout %q, stderr %q; want 2 and %q once on stderr, with a hint to -h",
					strings.Join(args, " "), status, stdout, stderr, msg)
			}
		})
	}
}

func TestTokenRejectsPrincipalsNoTenantCanHave(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), auth.SigningKeyFile)
	if _, err := auth.LoadOrCreateKey(keyFile); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tenant string
		role   string
		id     string
		flag   string // named in the error; "" for a valid principal
	}{
		{"agent", "demo", "agent", "alice", ""},
		{"operator", "*", "operator", "ops", ""},
		{"longest tenant id", strings.Repeat("t", 63), "admin", "ada", ""},
		{"uppercase and underscore tenant", "Demo_X", "admin", "ada", "--tenant"},
		{"tenant of 64", strings.Repeat("t", 64), "admin", "ada", "--tenant"},
		{"no tenant", "", "admin", "ada", "--tenant"},
		{"operator's tenant for an admin", "*", "admin", "ada", "--tenant"},
		{"operator of a tenant", "demo", "operator", "ops", "--tenant"},
		{"no role", "demo", "", "ada", "--role"},
		{"unknown role", "demo", "boss", "ada", "--role"},
		{"visitor", "demo", "visitor", "v1", "visitor"},
		{"no id", "demo", "admin", "", "--id"},
		{"id with a dot", "demo", "admin", "a.b", "--id"},
		{"id of 65", "demo", "admin", strings.Repeat("i", 65), "--id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, stdout, stderr := parley(t, "token", "--signing-key-file", keyFile, "--tenant", tt.tenant, "--role", tt.role, "--id", tt.id)
			if tt.flag == "" {
				if status != 0 || strings.Count(stdout, ".") != 2 {
					t.Errorf("parley token = %d, stdout %q, stderr %q; want 0 and a token", status, stdout, stderr)
				}
				return
			}
			if status != 2 || stdout != "" || !strings.Contains(stderr, tt.flag) {
				t.Errorf("parley token = %d, stdout %q, stderr %q; want 2, nothing on stdout, an error naming %s",
					status, stdout, stderr, tt.flag)
			}
		})
	}
}
