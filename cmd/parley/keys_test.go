package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/privacy"
)

// keyRecord is a KEYS message as the privacy service stores it.
type keyRecord struct {
	KEKID     string `json:"kek_id"`
	Data      []byte `json:"data"`
	Pseudonym []byte `json:"pseudonym"`
	// Erased is set for a tombstone.
	Erased bool `json:"-"`
}

// readKeys opens the store of a stopped `parley all` under dir and returns
// the record of every subject in the KEYS stream, by KEYS subject.
func readKeys(t *testing.T, dir string) map[string]keyRecord {
	t.Helper()
	js, closeStore := openStore(t, dir)
	defer closeStore()
	s, err := js.Stream(t.Context(), stream.Keys)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]keyRecord{}
	for seq := uint64(1); ; {
		m, err := s.GetMsg(t.Context(), seq, jetstream.WithGetMsgSubject("keys.>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var rec keyRecord
		if m.Header.Get("Parley-Erased") != "" {
			rec.Erased = true
		} else if err := json.Unmarshal(m.Data, &rec); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[m.Subject]; dup {
			t.Errorf("KEYS holds two messages on %s", m.Subject)
		}
		out[m.Subject] = rec
		seq = m.Sequence + 1
	}
}

// copyDir copies the files under src to dst, as a backup would.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		return errors.Join(err, out.Close())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// messageTexts returns the texts of a conversation's messages as token reads
// them, and the status of the read.
func messageTexts(t *testing.T, base, token, conv string) (int, []string) {
	t.Helper()
	status, body := call(t, base, "GET", "/v1/conversations/"+conv+"/messages", token, nil)
	var texts []string
	if msgs, ok := body["messages"].([]any); ok {
		for _, m := range msgs {
			if text, ok := m.(map[string]any)["text"].(string); ok {
				texts = append(texts, text)
			}
		}
	}
	return status, texts
}

// TestKeysRotate rotates the KEK of a store in which one subject was erased
// after a backup was made, and attacks the result: the live subject's keys
// must work under the new KEK only, no record or wrapped key under the old
// KEK may remain in the store, the old KEK must be gone, and the backup
// with the new KEK must not give up the erased subject's messages.
func TestKeysRotate(t *testing.T) {
	dir, backup := t.TempDir(), filepath.Join(t.TempDir(), "backup")
	a, _ := testAll(t, dir)
	erasedID, erasedToken := newVisitor(t, a.URL(), "demo")
	keptID, keptToken := newVisitor(t, a.URL(), "demo")
	erasedText, keptText := marker(t), marker(t)
	mustCall(t, a.URL(), "POST", "/v1/conversations", erasedToken, map[string]any{"text": erasedText}, http.StatusCreated)
	keptConv := mustCall(t, a.URL(), "POST", "/v1/conversations", keptToken, map[string]any{"text": keptText}, http.StatusCreated)["id"].(string)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	copyDir(t, dir, backup)

	a, _ = testAll(t, dir)
	mustCall(t, a.URL(), "DELETE", "/v1/me", erasedToken, nil, http.StatusAccepted)
	mustCall(t, a.URL(), "PUT", "/v1/integrations/crm", staffToken(t, dir, "demo", "admin", "ada"),
		map[string]any{"name": "CRM", "webhook_url": "https://crm.example/parley"}, http.StatusCreated)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	oldKEK, err := privacy.LoadKEK(filepath.Join(dir, "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	oldID := privacy.KEKID(oldKEK)
	erasedSubj, keptSubj := stream.KeysSubject("demo", erasedID), stream.KeysSubject("demo", keptID)
	before := readKeys(t, dir)
	if !before[erasedSubj].Erased || before[keptSubj].KEKID != oldID {
		t.Fatalf("KEYS before rotation = %+v, want a tombstone for %s and a record under %s for %s", before, erasedSubj, oldID, keptSubj)
	}
	// The wrapped keys as they appear in the stored JSON.
	oldWraps := []string{
		base64.StdEncoding.EncodeToString(before[keptSubj].Data),
		base64.StdEncoding.EncodeToString(before[keptSubj].Pseudonym),
	}
	if hits := storeContains(t, filepath.Join(dir, "nats"), oldWraps...); len(hits) != 2 {
		t.Fatalf("store before rotation holds the old wraps in %v, want both found", hits)
	}

	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"keys", "rotate", "--data-dir", dir}, &out, &errOut); err != nil {
		t.Fatalf("parley keys rotate: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"re-wrapping keys: ", "re-wrapped 1 subjects' keys", "skipped 1 erased subjects", "resealed 1 bots' and integrations' secrets", "the old KEK is destroyed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("parley keys rotate printed %q, want it to contain %q", out.String(), want)
		}
	}

	// The old KEK is gone from its file, which holds the new one; no second
	// copy of the new one is left behind.
	newKEK, err := privacy.LoadKEK(filepath.Join(dir, "kek.key"))
	if err != nil {
		t.Fatal(err)
	}
	newID := privacy.KEKID(newKEK)
	if newID == oldID {
		t.Fatal("kek.key still holds the old KEK after rotation")
	}
	if _, err := os.Stat(filepath.Join(dir, "kek.key"+nextKEKSuffix)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("kek.key%s after rotation: err = %v, want it removed", nextKEKSuffix, err)
	}
	if hits := storeContains(t, dir, hex.EncodeToString(oldKEK[:])); len(hits) != 0 {
		t.Errorf("the old KEK is still in %v", hits)
	}

	// The store holds nothing under the old KEK, not even the old wraps'
	// bytes: they were secure-deleted, not just removed.
	after := readKeys(t, dir)
	for subj, rec := range after {
		if !rec.Erased && rec.KEKID != newID {
			t.Errorf("%s after rotation is wrapped under %s, want %s", subj, rec.KEKID, newID)
		}
	}
	if !after[erasedSubj].Erased {
		t.Errorf("%s after rotation = %+v, want its tombstone", erasedSubj, after[erasedSubj])
	}
	if hits := storeContains(t, filepath.Join(dir, "nats"), oldWraps...); len(hits) != 0 {
		t.Errorf("old wrapped keys still in the store files: %v", hits)
	}

	// The live subject's keys are the ones they had: their message still
	// reads under the new KEK.
	a, _ = testAll(t, dir)
	if status, texts := messageTexts(t, a.URL(), keptToken, keptConv); status != http.StatusOK || len(texts) != 1 || texts[0] != keptText {
		t.Errorf("after rotation the kept visitor's conversation reads %d %v, want 200 and their text", status, texts)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// The backup made before the erasure, with the new KEK, cannot give the
	// erased visitor's record back: it is wrapped under the old KEK, which
	// no longer exists, and the backup names the old KEK as the one in
	// force, so parley does not even start on it with the new one.
	bak := readKeys(t, backup)
	if rec := bak[erasedSubj]; rec.Erased || rec.KEKID != oldID || rec.KEKID == newID {
		t.Fatalf("backup's %s = %+v, want a record under the old KEK %s", erasedSubj, rec, oldID)
	}
	if err := privacy.OverwriteKEK(filepath.Join(backup, "kek.key"), newKEK); err != nil {
		t.Fatal(err)
	}
	b, err := startAll(context.Background(), allConfig{HTTPAddr: "127.0.0.1:0", DataDir: backup, ClickHouse: "off"}, slog.New(slog.DiscardHandler))
	if err == nil {
		b.Close()
		t.Fatal("parley all started on the backup with the new KEK, whose KEK in force is the old one")
	}
	if !strings.Contains(err.Error(), "not the one in force") {
		t.Errorf("parley all on the backup with the new KEK: %v, want it refused as a KEK not in force", err)
	}
}

// openStore opens the JetStream store of a stopped parley under dir, as
// the tools do; closing it releases the data dir.
func openStore(t *testing.T, dir string) (jetstream.JetStream, func()) {
	t.Helper()
	nc, closeStore, err := (&storeFlags{dataDir: dir}).open("test")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		closeStore()
		t.Fatal(err)
	}
	return js, closeStore
}

// TestKeysRotateRefusedWhileServing runs keys rotate --nats-url against a
// running parley all: it is refused before it prints a rotation or writes
// a new KEK, and says why.
func TestKeysRotateRefusedWhileServing(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	kekFile := filepath.Join(dir, "kek.key")
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"keys", "rotate", "--nats-url", a.NATSURL(), "--nats-user", "admin",
		"--nats-password-file", filepath.Join(dir, natsAdminPasswordFile), "--kek-file", kekFile}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "refused: an instance is serving") || strings.Contains(err.Error(), "resume") {
		t.Errorf("keys rotate while privacy serves = %v, want refused because an instance is serving", err)
	}
	if out.Len() != 0 {
		t.Errorf("keys rotate while privacy serves printed %q, want nothing", out.String())
	}
	if _, err := os.Stat(kekFile + nextKEKSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("keys rotate while privacy serves left %s (stat: %v), want none", kekFile+nextKEKSuffix, err)
	}
}
