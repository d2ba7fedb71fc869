package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/privacyapi"
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
	// Tenant demo exists, but nothing of it is audited yet. Without a
	// checkpoint the answer warns that a deleted trail would look the same.
	const empty = "audit trail of demo: no entries, nothing to verify\n" + noCheckpointWarning + "\n"
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
	const missing = "audit trail of acme: no entries, nothing to verify; there is no tenant acme\n" + noCheckpointWarning + "\n"
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
	js, closeStore := openStore(t, dir)
	defer closeStore()
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
	inStore(t, dir, func(js jetstream.JetStream) { publishTrail(t, js, entries) })
}

// inStore runs fn with a JetStream of a server storing under dir as
// `parley all` does, stopped once fn returns: a store prepared before
// Parley starts on it.
func inStore(t *testing.T, dir string, fn func(js jetstream.JetStream)) {
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
	fn(js)
}

// TestAuditCheckpointsEndToEnd saves the checkpoint an auditor would, then
// removes the trail's newest entries, and the whole trail, as someone
// holding the store files or the bus's admin password could: `parley
// audit verify` must fail against the saved checkpoint and against the one
// Parley keeps, and refuse a checkpoint that was altered. The key that
// signs them is nowhere in the store.
func TestAuditCheckpointsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	admin := staffToken(t, dir, "demo", "admin", "ada")
	auditor := staffToken(t, dir, "demo", "auditor", "aud")
	for _, days := range []int{30, 60, 90} {
		mustCall(t, a.URL(), "PUT", "/v1/settings", admin, map[string]any{"retention_days": days, "collect_network_data": false}, http.StatusOK)
	}
	if status, _ := call(t, a.URL(), "GET", "/v1/audit/checkpoint", staffToken(t, dir, "demo", "agent", "al"), nil); status != http.StatusForbidden {
		t.Errorf("GET /v1/audit/checkpoint as an agent = %d, want %d", status, http.StatusForbidden)
	}
	// The auditor keeps the answer as it came.
	resp := send(t, a.URL(), "GET", "/v1/audit/checkpoint", auditor, nil)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/audit/checkpoint = %d, %v", resp.StatusCode, err)
	}
	var answer privacyapi.AuditCheckpointResult
	if err := json.Unmarshal(body, &answer); err != nil || answer.Checkpoint == nil || answer.Checkpoint.Count != 3 {
		t.Fatalf("GET /v1/audit/checkpoint = %s, want a checkpoint of 3 entries", body)
	}
	saved := filepath.Join(t.TempDir(), "checkpoint.json")
	if err := os.WriteFile(saved, body, 0o600); err != nil {
		t.Fatal(err)
	}
	natsFlags := []string{"--nats-url", a.NATSURL(), "--nats-user", "admin", "--nats-password-file", filepath.Join(dir, natsAdminPasswordFile)}
	out, err := auditVerify(append([]string{"--tenant", "demo", "--checkpoint", saved}, natsFlags...)...)
	if err != nil || !strings.Contains(out, "3 entries, chain intact\n") || strings.Count(out, ": held") != 2 {
		t.Errorf("audit verify of an intact trail = %v, %q; want both checkpoints held", err, out)
	}

	// A checkpoint altered to count fewer entries no longer verifies.
	altered := *answer.Checkpoint
	altered.Count = 2
	alteredFile := filepath.Join(t.TempDir(), "altered.json")
	writeJSONFile(t, alteredFile, privacyapi.AuditCheckpointResult{Checkpoint: &altered, PublicKey: answer.PublicKey})
	out, err = auditVerify(append([]string{"--tenant", "demo", "--checkpoint", alteredFile}, natsFlags...)...)
	if !errors.Is(err, errBadCheckpoint) || !strings.Contains(out, "REFUSED") {
		t.Errorf("audit verify with an altered checkpoint = %v, %q; want %v", err, out, errBadCheckpoint)
	}

	// The audit key is not on the bus: not in any form in the store.
	key, err := privacy.ReadAuditKey(filepath.Join(dir, privacy.AuditKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(dir, privacy.AuditKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	seed := key.Seed()
	if hits := storeContains(t, filepath.Join(dir, "nats"), string(seed), hex.EncodeToString(seed),
		base64.StdEncoding.EncodeToString(seed), base64.StdEncoding.EncodeToString(key), string(pem)); len(hits) > 0 {
		t.Errorf("the audit key is in the store: %v", hits)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// The newest entry cut off in a copy of the stopped store: verify fails
	// against the saved checkpoint, and against Parley's own with the key
	// under the data dir.
	cut := t.TempDir()
	copyDir(t, dir, cut)
	rebuildTrail(t, cut, 2)
	for _, args := range [][]string{{"--checkpoint", saved}, nil} {
		out, err := auditVerify(append([]string{"--tenant", "demo", "--data-dir", cut}, args...)...)
		if !errors.Is(err, errChainBroken) || !strings.Contains(out, "2 entries") || !strings.Contains(out, "ENTRIES MISSING") {
			t.Errorf("audit verify %v of a trail cut to 2 entries = %v, %q; want %v", args, err, out, errChainBroken)
		}
	}

	// The AUDIT stream deleted by the bus's admin while Parley runs; then
	// AUDIT_CHECKPOINTS too: the auditor's copy still shows the loss.
	b, _ := testAll(t, dir)
	_, js := adminConn(t, b)
	if err := js.DeleteStream(t.Context(), stream.Audit); err != nil {
		t.Fatal(err)
	}
	natsFlags[1] = b.NATSURL()
	for _, args := range [][]string{{"--checkpoint", saved}, {"--public-key", base64.StdEncoding.EncodeToString(answer.PublicKey)}} {
		out, err := auditVerify(append(append([]string{"--tenant", "demo"}, args...), natsFlags...)...)
		if !errors.Is(err, errChainBroken) || !strings.Contains(out, "0 entries") || !strings.Contains(out, "it was deleted") {
			t.Errorf("audit verify %v of a deleted trail = %v, %q; want %v", args[0], err, out, errChainBroken)
		}
	}
	if err := js.DeleteStream(t.Context(), stream.AuditCheckpoints); err != nil {
		t.Fatal(err)
	}
	out, err = auditVerify(append([]string{"--tenant", "demo", "--checkpoint", saved}, natsFlags...)...)
	if !errors.Is(err, errChainBroken) || !strings.Contains(out, "it was deleted") {
		t.Errorf("audit verify of a deleted trail and checkpoints = %v, %q; want %v", err, out, errChainBroken)
	}
}

// rebuildTrail keeps only the first n entries of tenant demo's trail in the
// stopped store under dir, as someone with access to its files could.
func rebuildTrail(t *testing.T, dir string, n int) {
	t.Helper()
	entries := readTrail(t, dir)
	js, closeStore := openStore(t, dir)
	defer closeStore()
	if err := js.DeleteStream(t.Context(), stream.Audit); err != nil {
		t.Fatal(err)
	}
	publishTrail(t, js, entries[:n])
}

// publishTrail stores entries, as they are, in the AUDIT stream of js,
// creating it if need be: a trail written by hand, not by the privacy
// service, which would chain and check them.
func publishTrail(t *testing.T, js jetstream.JetStream, entries []audit.Entry) {
	t.Helper()
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

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAuditTrailRefusalLoggedOnce deletes the AUDIT stream under a running
// parley all: audited acts are refused, and the privacy service says why
// once, at error level, not at every request.
func TestAuditTrailRefusalLoggedOnce(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	admin := staffToken(t, dir, "demo", "admin", "ada")
	settings := map[string]any{"retention_days": 30, "collect_network_data": false}
	mustCall(t, a.URL(), "PUT", "/v1/settings", admin, settings, http.StatusOK)
	_, js := adminConn(t, a)
	if err := js.DeleteStream(t.Context(), stream.Audit); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if status, body := call(t, a.URL(), "PUT", "/v1/settings", admin, settings); status != http.StatusServiceUnavailable {
			t.Fatalf("PUT /v1/settings without an audit trail = %d %v, want 503", status, body)
		}
	}
	var refusals []string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, "audit trail") {
			refusals = append(refusals, line)
		}
	}
	if len(refusals) != 1 || !strings.Contains(refusals[0], "refus") {
		t.Errorf("the logs say %d times that the audit trail is refused: %q; want once", len(refusals), refusals)
	}
}
