package main

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/privacy"
)

// upgradeManifest is what testdata/make-upgrade-store.sh read back from
// parley d7778ed after writing the store in upgrade-d7778ed.tar.gz.
type upgradeManifest struct {
	Visitors struct {
		Consenting string `json:"consenting"`
		Rating     string `json:"rating"`
		Erased     string `json:"erased"`
	} `json:"visitors"`
	Conversations []map[string]any            `json:"conversations"`
	Transcripts   map[string][]map[string]any `json:"transcripts"`
	Export        struct {
		Subject       map[string]any   `json:"subject"`
		Consents      []map[string]any `json:"consents"`
		Conversations []map[string]any `json:"conversations"`
	} `json:"export"`
	Erasure struct {
		ID     string         `json:"id"`
		Status string         `json:"status"`
		Report map[string]any `json:"report"`
	} `json:"erasure"`
	Audit []map[string]any `json:"audit"`
}

// TestUpgradeFromD7778ed takes over a data dir written by parley d7778ed,
// the release before CHAT_VIEW, the KEK state in KEYS, audit checkpoints
// and the data dir's lock, and finds everything it held: conversations,
// transcripts (sealed under keys in the old KEYS stream), the erasure,
// consent history and the audit trail — on the first start, which builds
// the new state, and on a second one, which reads it.
func TestUpgradeFromD7778ed(t *testing.T) {
	var m upgradeManifest
	data, err := os.ReadFile(filepath.Join("testdata", "upgrade-d7778ed.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	extractTarGz(t, filepath.Join("testdata", "upgrade-d7778ed.tar.gz"), dir)
	if _, err := os.Stat(filepath.Join(dir, privacy.AuditKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old store already holds %s (%v); it is not d7778ed's", privacy.AuditKeyFile, err)
	}

	trail := len(m.Audit)
	for start := 1; start <= 2; start++ {
		t.Logf("start %d", start)
		a, _ := testAll(t, dir)
		checkUpgraded(t, a, dir, m)
		if start == 1 {
			checkNewShape(t, a, dir)
		}
		// Each start's transcript reads and export are audited after the
		// old entries, in a chain that still verifies.
		trail += len(m.Transcripts) + 1
		checkAuditTrail(t, a.URL(), staffToken(t, dir, "demo", "auditor", "aud"), m.Audit, trail)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("audit trail of demo: %d entries, chain intact", trail)
		if out, err := auditVerify("--tenant", "demo", "--data-dir", dir); err != nil || !strings.Contains(out, want) {
			t.Errorf("start %d: audit verify = %v, %q; want nil, %q", start, err, out, want)
		}
	}
}

// checkUpgraded compares what the running a shows of tenant demo with the
// manifest.
func checkUpgraded(t *testing.T, a *allInOne, dir string, m upgradeManifest) {
	t.Helper()
	base := a.URL()
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")
	admin := staffToken(t, dir, "demo", "admin", "ada")

	var convs []map[string]any
	for _, c := range mustCall(t, base, "GET", "/v1/conversations", supervisor, nil, http.StatusOK)["conversations"].([]any) {
		c := c.(map[string]any)
		convs = append(convs, map[string]any{"id": c["id"], "visitor": c["visitor"], "status": c["status"], "assignee": c["assignee"]})
	}
	if diff := cmp.Diff(m.Conversations, convs); diff != "" {
		t.Errorf("conversations mismatch (-d7778ed +now):\n%s", diff)
	}
	for id, want := range m.Transcripts {
		var got []map[string]any
		for _, msg := range mustCall(t, base, "GET", "/v1/conversations/"+id+"/messages", supervisor, nil, http.StatusOK)["messages"].([]any) {
			msg := msg.(map[string]any)
			got = append(got, map[string]any{"author": msg["author"], "text": msg["text"], "erased": msg["erased"]})
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("transcript of %s mismatch (-d7778ed +now):\n%s", id, diff)
		}
	}

	// The rating is shown by nothing but a second one being refused.
	rater := visitorToken(t, dir, m.Visitors.Rating)
	for _, c := range m.Conversations {
		if c["visitor"] == m.Visitors.Rating {
			mustCall(t, base, "POST", "/v1/conversations/"+c["id"].(string)+"/rating", rater, map[string]any{"score": 5}, http.StatusConflict)
		}
	}

	doc := mustCall(t, base, "GET", "/v1/subjects/"+m.Visitors.Consenting+"/export", admin, nil, http.StatusOK)
	var exported []map[string]any
	for _, c := range doc["conversations"].([]any) {
		c := c.(map[string]any)
		var msgs []any
		for _, msg := range c["messages"].([]any) {
			msg := msg.(map[string]any)
			msgs = append(msgs, map[string]any{"author": msg["author"], "text": msg["text"]})
		}
		exported = append(exported, map[string]any{"id": c["id"], "messages": msgs})
	}
	got := map[string]any{"subject": doc["subject"], "consents": doc["consents"], "conversations": exported}
	want := map[string]any{"subject": m.Export.Subject, "consents": anySlice(m.Export.Consents), "conversations": m.Export.Conversations}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("export of %s mismatch (-d7778ed +now):\n%s", m.Visitors.Consenting, diff)
	}

	erased := visitorToken(t, dir, m.Visitors.Erased)
	mustCall(t, base, "GET", "/v1/me/export", erased, nil, http.StatusGone)
	mustCall(t, base, "GET", "/v1/subjects/"+m.Visitors.Erased+"/export", admin, nil, http.StatusGone)
	status := mustCall(t, base, "GET", "/v1/erasures/"+m.Erasure.ID, admin, nil, http.StatusOK)
	if status["status"] != m.Erasure.Status || !cmp.Equal(status["report"], m.Erasure.Report) {
		t.Errorf("erasure %s = %v, want status %s and report %v", m.Erasure.ID, status, m.Erasure.Status, m.Erasure.Report)
	}
}

// checkNewShape checks that the first start built what d7778ed lacked.
func checkNewShape(t *testing.T, a *allInOne, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, privacy.AuditKeyFile)); err != nil {
		t.Errorf("after the first start: %v", err)
	}
	_, js := adminConn(t, a)
	ctx := t.Context()
	keys, err := js.Stream(ctx, stream.Keys)
	if err != nil {
		t.Fatal(err)
	}
	if !keys.CachedInfo().Config.DiscardNewPerSubject {
		t.Error("KEYS after the first start: DiscardNewPerSubject not set")
	}
	if _, err := keys.GetLastMsgForSubject(ctx, stream.KEKStateSubjects); err != nil {
		t.Errorf("KEYS after the first start: no KEK state: %v", err)
	}
	if _, err := js.Stream(ctx, stream.AuditCheckpoints); err != nil {
		t.Errorf("after the first start: %v", err)
	}
	view, err := js.KeyValue(ctx, stream.ChatViewBucket)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 15*time.Second, "the chat view rebuilt", func() bool {
		st, err := view.Status(ctx)
		return err == nil && st.Values() > 0
	})
}

// checkAuditTrail checks that tenant demo's trail begins with the old
// entries, unchanged, and holds n in all.
func checkAuditTrail(t *testing.T, base, auditor string, old []map[string]any, n int) {
	t.Helper()
	var entries []any
	natstest.Until(t, 15*time.Second, fmt.Sprintf("%d audit entries", n), func() bool {
		entries = mustCall(t, base, "GET", "/v1/audit", auditor, nil, http.StatusOK)["entries"].([]any)
		return len(entries) >= n
	})
	if len(entries) != n {
		t.Fatalf("audit trail holds %d entries, want %d", len(entries), n)
	}
	var got []map[string]any
	for _, e := range entries[:len(old)] {
		e := e.(map[string]any)
		got = append(got, map[string]any{"actor": e["actor"], "action": e["action"], "target": e["target"], "hash": e["hash"]})
	}
	if diff := cmp.Diff(old, got); diff != "" {
		t.Errorf("old audit entries mismatch (-d7778ed +now):\n%s", diff)
	}
}

// visitorToken issues a token of tenant demo's visitor id with the store's
// signing key, as the gateway would have on registration.
func visitorToken(t *testing.T, dir, id string) string {
	t.Helper()
	key, err := auth.ReadKey(filepath.Join(dir, "signing-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.NewSigner(key).Issue(auth.Principal{Tenant: "demo", ID: id, Role: auth.RoleVisitor}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func anySlice[T any](s []T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// extractTarGz unpacks the regular files and directories of a tar.gz
// archive into dir.
func extractTarGz(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o700)
		case tar.TypeReg:
			var data []byte
			if data, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(path, data, h.FileInfo().Mode().Perm())
			}
		default:
			t.Fatalf("%s: %s is neither a file nor a directory", archive, h.Name)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
