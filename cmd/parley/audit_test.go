package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/privacy"
)

func auditVerify(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"audit", "verify"}, args...), &out, &errOut)
	return out.String() + errOut.String(), err
}

// TestAuditVerify checks a real trail, written by settings changes through
// the API, with `parley audit verify` against the running server and
// against the stopped store; then copies of it with an entry changed or
// removed, which it must refuse.
func TestAuditVerify(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	admin := staffToken(t, dir, "demo", "admin", "ada")
	natsFlags := []string{"--nats-url", a.NATSURL(), "--nats-user", "admin", "--nats-password-file", filepath.Join(dir, natsAdminPasswordFile),
		"--audit-key-file", filepath.Join(dir, privacy.AuditKeyFile)}
	// Tenant demo exists, but nothing of it is audited yet.
	const empty = "audit trail of demo: no entries, nothing to verify\n"
	if out, err := auditVerify(append([]string{"--tenant", "demo"}, natsFlags...)...); err != nil || out != empty {
		t.Errorf("audit verify of a tenant without entries = %v, %q; want nil, %q", err, out, empty)
	}
	for _, days := range []int{30, 60, 90} {
		mustCall(t, a.URL(), "PUT", "/v1/settings", admin, map[string]any{"retention_days": days, "collect_network_data": false}, http.StatusOK)
	}
	const intact = "audit trail of demo: 3 entries, chain intact"
	out, err := auditVerify(append([]string{"--tenant", "demo"}, natsFlags...)...)
	if err != nil || !strings.Contains(out, intact) {
		t.Errorf("audit verify --nats-url = %v, %q; want nil, %q", err, out, intact)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	out, err = auditVerify("--tenant", "demo", "--data-dir", dir)
	if err != nil || !strings.Contains(out, intact) {
		t.Fatalf("audit verify --data-dir = %v, %q; want nil, %q", err, out, intact)
	}
	const missing = "audit trail of acme: no entries, nothing to verify; there is no tenant acme\n"
	if out, err := auditVerify("--tenant", "acme", "--data-dir", dir); err != nil || out != missing {
		t.Errorf("audit verify of a tenant that does not exist = %v, %q; want nil, %q", err, out, missing)
	}
	if _, err := auditVerify("--tenant", "Demo_X", "--data-dir", dir); !errors.As(err, new(usageError)) {
		t.Errorf("audit verify of an invalid tenant id = %v, want a usage error", err)
	}
	trail := readTrail(t, dir)

	tests := []struct {
		name    string
		give    func([]audit.Entry) []audit.Entry
		wantErr error
		want    string
	}{
		{"copy", func(es []audit.Entry) []audit.Entry { return es }, nil, intact},
		{"entry changed", func(es []audit.Entry) []audit.Entry {
			es[1].Target = strings.Replace(es[1].Target, "retention_days=60", "retention_days=3650", 1)
			return es
		}, errChainBroken, "BROKEN at entry 2 of 3"},
		{"entry changed and rehashed", func(es []audit.Entry) []audit.Entry {
			es[1].Actor.ID = "mallory"
			es[1] = es[1].Link(es[1].PrevHash)
			return es
		}, errChainBroken, "BROKEN at entry 3 of 3"},
		{"entry removed", func(es []audit.Entry) []audit.Entry {
			return append(es[:1], es[2:]...)
		}, errChainBroken, "BROKEN at entry 2 of 2"},
		{"first entry removed", func(es []audit.Entry) []audit.Entry { return es[1:] }, errChainBroken, "BROKEN at entry 1 of 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tampered := t.TempDir()
			writeTrail(t, tampered, tt.give(append([]audit.Entry(nil), trail...)))
			out, err := auditVerify("--tenant", "demo", "--data-dir", tampered)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(out, tt.want) {
				t.Errorf("audit verify = %v, %q; want %v, %q", err, out, tt.wantErr, tt.want)
			}
		})
	}
}

// readTrail reads tenant demo's audit chain from the stopped store under dir.
func readTrail(t *testing.T, dir string) []audit.Entry {
	t.Helper()
	nc, closeStore, err := (&storeFlags{dataDir: dir}).open("test")
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := privacy.AuditTrail(t.Context(), js, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("AuditTrail() holds %d entries, want 3", len(entries))
	}
	return entries
}

// writeTrail stores entries, as they are, as tenant demo's trail in a new
// store under dir: a store whose AUDIT stream someone with access to the
// files has rewritten.
func writeTrail(t *testing.T, dir string, entries []audit.Entry) {
	t.Helper()
	s, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Audit); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(t.Context(), audit.Subject(e.Tenant), data); err != nil {
			t.Fatal(err)
		}
	}
}
