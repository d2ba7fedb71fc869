package main

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/buspolicy"
)

// TestServicesNeedNothingOutsideTheirBusPermissions runs every service as
// its own NATS user through a scenario that touches each of them, and
// fails when the server refused any of them anything: the embedded server
// reports each refusal, which busOptions logs.
func TestServicesNeedNothingOutsideTheirBusPermissions(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	checkBus(t, logs)
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	admin := staffToken(t, dir, "demo", "admin", "ada")
	auditor := staffToken(t, dir, "demo", "auditor", "aude")

	live := openStream(t, base, agent)
	hello := marker(t)
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": hello}, http.StatusCreated)["id"].(string)
	live.waitMessage(t, hello, liveWithin)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", agent, map[string]any{"text": marker(t)}, http.StatusCreated)
	// The privacy calls answer as their owners decide; what matters here
	// is that no service was refused on the bus along the way.
	for _, c := range []struct{ method, path, token string }{
		{"GET", "/v1/conversations/" + conv + "/messages", admin},
		{"PUT", "/v1/me/consent", visitor},
		{"GET", "/v1/settings", admin},
		{"PUT", "/v1/settings", admin},
		{"GET", "/v1/me/export", visitor},
		{"GET", "/v1/audit", auditor},
		{"DELETE", "/v1/me", visitor},
	} {
		var body any
		switch c.path {
		case "/v1/me/consent":
			body = map[string]any{"analytics": true, "network_data": false, "ai": false}
		case "/v1/settings":
			if c.method == "PUT" {
				body = map[string]any{"retention_days": 30, "collect_network_data": false}
			}
		}
		status, _ := call(t, base, c.method, c.path, c.token, body)
		t.Logf("%s %s: %d", c.method, c.path, status)
	}
}

// checkBus fails t, when it ends, if the embedded server refused any
// service anything on the bus: registered as a cleanup so that it runs
// also when a step fails, a refusal being its likely cause.
func checkBus(t *testing.T, logs *syncBuffer) {
	t.Helper()
	t.Cleanup(func() {
		if v := violations(logs.String()); len(v) > 0 {
			t.Errorf("services were refused on the bus:\n%s", strings.Join(v, "\n"))
		}
	})
}

func violations(logs string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(strings.ToLower(line), "permissions violation") {
			out = append(out, line)
		}
	}
	return out
}

// TestEmbeddedNATSRequiresAUser checks that `parley all` leaves no door
// open on its NATS port: no anonymous client, and the admin password in
// the data dir for tools, readable by its owner only.
func TestEmbeddedNATSRequiresAUser(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	if nc, err := nats.Connect(a.NATSURL()); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("anonymous connect error = %v, want %v", err, nats.ErrAuthorization)
	}
	path := filepath.Join(dir, natsAdminPasswordFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode = %v, want 0600", natsAdminPasswordFile, fi.Mode().Perm())
	}
	pw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(a.NATSURL(), nats.UserInfo(buspolicy.Admin, strings.TrimSpace(string(pw))))
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	nc.Close()
}
