package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestRefreshTokensStoredOnlyAsHashes attacks guarantee 10 with every
// refresh token a visitor's and a member of staff's sessions were given,
// spent or not: neither the SESSIONS bucket nor any file of the data dir
// holds one, in any encoding of its bytes, while the bucket and the store
// files hold the SHA-256 hash of each, which is what makes the refusal of
// the raw token meaningful.
func TestRefreshTokensStoredOnlyAsHashes(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	base := a.URL()
	nc, js := adminConn(t, a)

	tokens := []string{visitorWith(t, base, false)["refresh_token"].(string)}
	for range 2 {
		_, next := refreshed(t, base, tokens[len(tokens)-1])
		tokens = append(tokens, next)
	}
	// A member of staff's session, started as the gateway starts one once
	// their identity provider signed them in.
	var staff privacyapi.Session
	err := rpc.Call(t.Context(), nc, privacyapi.StartSessionSubject, rpc.Request[privacyapi.StartSessionArgs]{
		Principal: auth.Principal{Tenant: "demo", ID: "ada", Role: auth.RoleAdmin},
		Args:      privacyapi.StartSessionArgs{Tenant: "demo"},
	}, &staff)
	if err != nil {
		t.Fatalf("StartSession(admin ada) error = %v", err)
	}
	_, next := refreshed(t, base, staff.RefreshToken)
	tokens = append(tokens, staff.RefreshToken, next)

	var raw, hashes []string
	for _, tok := range tokens {
		raw = append(raw, tokenForms(t, tok)...)
		h := sha256.Sum256([]byte(tok))
		hashes = append(hashes, hex.EncodeToString(h[:]))
	}
	entries := sessionsBucket(t, js)
	for _, r := range raw {
		if strings.Contains(entries, r) {
			t.Errorf("the SESSIONS bucket holds refresh token form %q", r)
		}
	}
	for _, h := range hashes {
		if !strings.Contains(entries, h) {
			t.Errorf("the SESSIONS bucket holds no hash %s: the search for tokens proves nothing", h)
		}
	}

	logsHoldNone(t, a, logs, map[string]string{"visitor's first refresh token": tokens[0], "staff refresh token": staff.RefreshToken})
	if hits := storeContains(t, dir, raw...); len(hits) > 0 {
		t.Errorf("store files hold refresh tokens: %v", hits)
	}
	// One walk of the store for every hash: each hit reads "<file>: <hash>".
	found := map[string]bool{}
	for _, hit := range storeContains(t, filepath.Join(dir, "nats"), hashes...) {
		found[hit[strings.LastIndex(hit, ": ")+2:]] = true
	}
	for _, h := range hashes {
		if !found[h] {
			t.Errorf("no store file holds the hash %s: the search for tokens proves nothing", h)
		}
	}
}

// tokenForms returns a refresh token as it was answered and its bytes as
// they could be stored: raw, hex, and standard base64.
func tokenForms(t *testing.T, tok string) []string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 32 {
		t.Fatalf("refresh token %q is not 32 bytes of base64url: %v", tok, err)
	}
	return []string{tok, string(b), hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b)}
}

// sessionsBucket returns the subjects and values of every message of the
// SESSIONS bucket, markers included, one per line.
func sessionsBucket(t *testing.T, js jetstream.JetStream) string {
	t.Helper()
	var all strings.Builder
	for _, m := range streamMsgs(t, js, stream.BucketStream(stream.SessionsBucket)) {
		all.WriteString(m.Subject + " " + string(m.Data) + "\n")
	}
	return all.String()
}
