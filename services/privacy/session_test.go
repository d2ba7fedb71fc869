package privacy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/privacy"
)

func withClock(c *natstest.Clock) func(*privacy.Deps) { return func(d *privacy.Deps) { d.Now = c.Now } }

func registerSession(t *testing.T, nc *nats.Conn) privacyapi.RegisterVisitorResult {
	t.Helper()
	var res privacyapi.RegisterVisitorResult
	err := rpc.Call(t.Context(), nc, privacyapi.RegisterVisitorSubject, rpc.Request[privacyapi.RegisterVisitorArgs]{
		Args: privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: event.Consent{NoticeVersion: "n1"}},
	}, &res)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func refresh(t *testing.T, nc *nats.Conn, tok string) (privacyapi.Session, error) {
	t.Helper()
	return call[privacyapi.Session](t, nc, privacyapi.RefreshSessionSubject, auth.Principal{}, privacyapi.RefreshArgs{RefreshToken: tok})
}

func mustRefresh(t *testing.T, nc *nats.Conn, tok string) privacyapi.Session {
	t.Helper()
	s, err := refresh(t, nc, tok)
	if err != nil {
		t.Fatalf("refresh = %v, want the next token", err)
	}
	return s
}

func refused(t *testing.T, nc *nats.Conn, tok, why string) {
	t.Helper()
	if _, err := refresh(t, nc, tok); rpc.CodeOf(err) != rpc.CodeForbidden {
		t.Errorf("refresh %s = %v, want %s", why, err, rpc.CodeForbidden)
	}
}

func startSession(t *testing.T, nc *nats.Conn, p auth.Principal) (privacyapi.Session, error) {
	t.Helper()
	return call[privacyapi.Session](t, nc, privacyapi.StartSessionSubject, p, privacyapi.StartSessionArgs{Tenant: p.Tenant})
}

// auditLines lists the tenant's audit entries as "role/id action target",
// and fails the test if any holds one of secrets.
func auditLines(t *testing.T, nc *nats.Conn, secrets ...string) []string {
	t.Helper()
	res, err := call[privacyapi.ListAuditResult](t, nc, privacyapi.ListAuditSubject, auditor, privacyapi.ListAuditArgs{Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range res.Entries {
		line := string(e.Actor.Role) + "/" + e.Actor.ID + " " + e.Action + " " + e.Target
		for _, s := range secrets {
			if strings.Contains(line, s) || strings.Contains(line, strings.TrimRight(s, "=")) {
				t.Errorf("audit entry %q holds a refresh token", line)
			}
		}
		got = append(got, line)
	}
	return got
}

// TestRefreshTokenRotates: each refresh spends the token presented; a
// spent token presented again revokes the whole session, the newest token
// included, and the reuse is audited. Two instances serve the calls, so
// the session's state is the bucket's, not one instance's memory.
func TestRefreshTokenRotates(t *testing.T) {
	s := natstest.Start(t, "")
	kek := newKEK(t)
	start(t, s, kek)
	start(t, s, kek)
	nc, _ := natstest.Connect(t, s)

	reg := registerSession(t, nc)
	first := reg.Session
	if first.Principal != visitorOf(reg.VisitorID) || first.RefreshToken == "" {
		t.Fatalf("registration session = %+v, want one for visitor %s", first, reg.VisitorID)
	}
	second := mustRefresh(t, nc, first.RefreshToken)
	third := mustRefresh(t, nc, second.RefreshToken)
	if second.RefreshToken == first.RefreshToken || third.RefreshToken == second.RefreshToken || third.ID != first.ID {
		t.Fatalf("tokens %q %q %q of sessions %s %s: want new tokens of one session", first.RefreshToken, second.RefreshToken, third.RefreshToken, first.ID, third.ID)
	}
	refused(t, nc, first.RefreshToken, "of a spent token")
	refused(t, nc, third.RefreshToken, "of the newest token after a reuse")
	refused(t, nc, strings.Repeat("A", 43), "of an unknown token")
	if _, err := refresh(t, nc, "short"); rpc.CodeOf(err) != rpc.CodeInvalid {
		t.Errorf("refresh of a malformed token = %v, want %s", err, rpc.CodeInvalid)
	}

	got := auditLines(t, nc, first.RefreshToken, second.RefreshToken, third.RefreshToken)
	want := []string{"visitor/" + reg.VisitorID + " " + audit.ActionRefreshReuse + " session:" + first.ID}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit entries mismatch (-want +got):\n%s", diff)
	}
}

// TestSignOut: a signed-out session refreshes no more, with any of its
// tokens; sign-in and sign-out are audited, without a token.
func TestSignOut(t *testing.T) {
	nc, _ := startOne(t)

	sess, err := startSession(t, nc, agent)
	if err != nil {
		t.Fatal(err)
	}
	next := mustRefresh(t, nc, sess.RefreshToken)
	if next.Principal != agent {
		t.Errorf("refreshed principal = %+v, want %+v", next.Principal, agent)
	}
	if _, err := call[struct{}](t, nc, privacyapi.EndSessionSubject, auth.Principal{}, privacyapi.RefreshArgs{RefreshToken: next.RefreshToken}); err != nil {
		t.Fatalf("sign out = %v", err)
	}
	refused(t, nc, next.RefreshToken, "after sign-out")
	// Signing out twice changes nothing, and is audited once.
	if _, err := call[struct{}](t, nc, privacyapi.EndSessionSubject, auth.Principal{}, privacyapi.RefreshArgs{RefreshToken: next.RefreshToken}); err != nil {
		t.Fatalf("sign out again = %v", err)
	}
	got := auditLines(t, nc, sess.RefreshToken, next.RefreshToken)
	want := []string{
		"agent/agent-1 " + audit.ActionSignIn + " session:" + sess.ID,
		"agent/agent-1 " + audit.ActionSignOut + " session:" + sess.ID,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit entries mismatch (-want +got):\n%s", diff)
	}
}

// TestSignOutEverywhere: an admin revokes every session of one person,
// and no other's; nobody else may, and only staff sessions start outside
// registration.
func TestSignOutEverywhere(t *testing.T) {
	nc, _ := startOne(t)
	other := auth.Principal{Tenant: tenant, ID: "agent-2", Role: auth.RoleAgent}

	var mine []privacyapi.Session
	for range 2 {
		sess, err := startSession(t, nc, agent)
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, sess)
	}
	theirs, err := startSession(t, nc, other)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []auth.Principal{other, visitorOf("v1"), {Tenant: "other", ID: "admin-1", Role: auth.RoleAdmin}} {
		if _, err := call[privacyapi.RevokeSessionsResult](t, nc, privacyapi.RevokeSessionsSubject, p, privacyapi.PersonArgs{Tenant: tenant, Person: agent.ID}); rpc.CodeOf(err) != rpc.CodeForbidden {
			t.Errorf("sign-out everywhere by %+v = %v, want %s", p, err, rpc.CodeForbidden)
		}
	}
	for _, p := range []auth.Principal{visitorOf("v1"), {Tenant: "other", ID: "agent-1", Role: auth.RoleAgent}} {
		if _, err := call[privacyapi.Session](t, nc, privacyapi.StartSessionSubject, p, privacyapi.StartSessionArgs{Tenant: tenant}); rpc.CodeOf(err) != rpc.CodeForbidden {
			t.Errorf("start session of %+v = %v, want %s", p, err, rpc.CodeForbidden)
		}
	}
	res, err := call[privacyapi.RevokeSessionsResult](t, nc, privacyapi.RevokeSessionsSubject, admin, privacyapi.PersonArgs{Tenant: tenant, Person: agent.ID})
	if err != nil || res.Revoked != 2 {
		t.Fatalf("sign-out everywhere = %+v, %v; want 2 revoked", res, err)
	}
	for _, sess := range mine {
		refused(t, nc, sess.RefreshToken, "after sign-out everywhere")
	}
	mustRefresh(t, nc, theirs.RefreshToken)
	got := auditLines(t, nc)
	if want := "admin/admin-1 " + audit.ActionSignOutEverywhere + " subject:" + agent.ID; got[len(got)-1] != want {
		t.Errorf("last audit entry = %q, want %q", got[len(got)-1], want)
	}
}

// TestVisitorSessionLastsTheRetention: a visitor's session refreshes
// months later, while the tenant keeps their data, ends when it is not
// refreshed for the retention, and ends with the visitor's erasure; a
// member of staff's ends a fixed time after sign-in.
func TestVisitorSessionLastsTheRetention(t *testing.T) {
	s := natstest.Start(t, "")
	c := natstest.NewClock()
	start(t, s, newKEK(t), withClock(c), func(d *privacy.Deps) { d.StaffSessionTTL = 8 * time.Hour })
	nc, js := natstest.Connect(t, s)

	reg := registerSession(t, nc)
	staff, err := startSession(t, nc, agent)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(7 * time.Hour)
	staff = mustRefresh(t, nc, staff.RefreshToken)
	c.Advance(2 * time.Hour)
	refused(t, nc, staff.RefreshToken, "of staff past their session's lifetime")

	c.Advance(200 * 24 * time.Hour)
	sess := mustRefresh(t, nc, reg.Session.RefreshToken)
	c.Advance(300 * 24 * time.Hour)
	sess = mustRefresh(t, nc, sess.RefreshToken)
	if want := c.Now().Add(privacyapi.DefaultRetentionDays * 24 * time.Hour); !sess.ExpiresAt.Equal(want.UTC().Truncate(0)) && sess.ExpiresAt.Sub(want).Abs() > time.Second {
		t.Errorf("session expires at %v, want the retention from the refresh, %v", sess.ExpiresAt, want)
	}
	unused := registerSession(t, nc)
	// What would name the visitor's session in the bucket: their id, the
	// session's, and the hashes of its three tokens, spent or not.
	traces := []string{reg.VisitorID, reg.Session.ID, tokenHash(reg.Session.RefreshToken), tokenHash(sess.RefreshToken)}
	if len(sessionEntries(t, js, traces...)) == 0 {
		t.Fatal("no entry of the visitor's session in the bucket before erasure")
	}

	er, err := erase(t, nc, visitorOf(reg.VisitorID), reg.VisitorID)
	if err != nil {
		t.Fatal(err)
	}
	if er.Report.Counts["sessions_revoked"] != 1 {
		t.Errorf("erasure report counts %v, want sessions_revoked 1", er.Report.Counts)
	}
	refused(t, nc, sess.RefreshToken, "after erasure")
	if left := sessionEntries(t, js, traces...); len(left) > 0 {
		t.Errorf("the bucket still holds entries of the erased visitor's session: %v", left)
	}

	c.Advance(privacyapi.DefaultRetentionDays*24*time.Hour + time.Minute)
	refused(t, nc, unused.Session.RefreshToken, "not refreshed for the retention")
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// sessionEntries returns the subjects of the messages of the SESSIONS
// bucket, markers included, whose subject or value holds one of traces.
func sessionEntries(t *testing.T, js jetstream.JetStream, traces ...string) []string {
	t.Helper()
	var found []string
	for _, m := range sessionMsgs(t, js) {
		if holdsAny(m, traces) {
			found = append(found, m.Subject)
		}
	}
	return found
}

// TestSessionEntriesLeaveWithTheirSession reads every message of the
// SESSIONS bucket written for a visitor's session and a member of staff's,
// each started and refreshed once: each carries a per-message TTL of its
// session's lifetime (the retention, the staff session's lifetime). The
// staff session lasting seconds, its entries leave the bucket, the
// visitor's stay; the markers of the expired entries leave
// stream.SessionsMarkerTTL later.
func TestSessionEntriesLeaveWithTheirSession(t *testing.T) {
	s := natstest.Start(t, "")
	const staffLife = 5 * time.Second
	// A clock that stands still makes each TTL its lifetime to the
	// nanosecond; the server expires the entries by its own clock.
	start(t, s, newKEK(t), withClock(natstest.NewClock()), func(d *privacy.Deps) { d.StaffSessionTTL = staffLife })
	nc, js := natstest.Connect(t, s)

	reg := registerSession(t, nc)
	visitor := mustRefresh(t, nc, reg.Session.RefreshToken)
	staff, err := startSession(t, nc, agent)
	if err != nil {
		t.Fatal(err)
	}
	staffNext := mustRefresh(t, nc, staff.RefreshToken)
	// What names each session in the bucket: the person, the session,
	// the hashes of its tokens, spent or not.
	visitorTraces := []string{reg.VisitorID, reg.Session.ID, tokenHash(reg.Session.RefreshToken), tokenHash(visitor.RefreshToken)}
	staffTraces := []string{agent.ID, staff.ID, tokenHash(staff.RefreshToken), tokenHash(staffNext.RefreshToken)}

	lives := map[string]time.Duration{}
	for _, m := range sessionMsgs(t, js) {
		want := privacyapi.DefaultRetentionDays * 24 * time.Hour
		if holdsAny(m, staffTraces) {
			want = staffLife
		} else if !holdsAny(m, visitorTraces) {
			t.Errorf("entry %s names neither session", m.Subject)
		}
		ttl, err := time.ParseDuration(m.Header.Get(jetstream.MsgTTLHeader))
		if err != nil || ttl != want {
			t.Errorf("entry %s has %s %q, want %v", m.Subject, jetstream.MsgTTLHeader, m.Header.Get(jetstream.MsgTTLHeader), want)
		}
		lives[m.Subject] = want
	}
	// A token, its listing under the session, the session and its listing
	// under the person: 2×2 + 2 entries a session, refreshed once.
	if len(lives) != 12 {
		t.Errorf("SESSIONS holds %d entries, want 12: %v", len(lives), lives)
	}

	natstest.Until(t, staffLife+10*time.Second, "the staff session's entries leave the bucket", func() bool {
		for _, m := range sessionMsgs(t, js) {
			if holdsAny(m, staffTraces) && m.Header.Get(jetstream.MarkerReasonHeader) == "" {
				return false
			}
		}
		return true
	})
	var kept int
	for _, m := range sessionMsgs(t, js) {
		if holdsAny(m, visitorTraces) && m.Header.Get(jetstream.MarkerReasonHeader) == "" {
			kept++
		}
	}
	if kept != 6 {
		t.Errorf("SESSIONS holds %d entries of the visitor's session after the staff's left, want 6", kept)
	}
	natstest.Until(t, stream.SessionsMarkerTTL+10*time.Second, "the markers of the staff session's entries leave the bucket", func() bool {
		return len(sessionEntries(t, js, staffTraces...)) == 0
	})
}

// sessionMsgs returns every message of the SESSIONS bucket, markers
// included.
func sessionMsgs(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	str, err := js.Stream(t.Context(), stream.BucketStream(stream.SessionsBucket))
	if err != nil {
		t.Fatal(err)
	}
	st := str.CachedInfo().State
	var msgs []*jetstream.RawStreamMsg
	for seq := st.FirstSeq; seq > 0 && seq <= st.LastSeq; seq++ {
		m, err := str.GetMsg(t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// holdsAny reports whether m's subject or value holds one of traces.
func holdsAny(m *jetstream.RawStreamMsg, traces []string) bool {
	for _, tr := range traces {
		if strings.Contains(m.Subject, tr) || strings.Contains(string(m.Data), tr) {
			return true
		}
	}
	return false
}
