package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
)

// ErrSessionRefused means a refresh token opens no session: unknown,
// expired, spent, of a revoked session or of an erased visitor. Callers
// are not told which.
var ErrSessionRefused = errors.New("session refused")

// DefaultStaffSessionTTL is how long a member of staff's session lasts
// from sign-in when Stores.StaffSessionTTL is 0: a working day.
const DefaultStaffSessionTTL = 12 * time.Hour

// sessionAttempts bounds the writes a session change may lose to another
// instance changing the same session.
const sessionAttempts = 5

// SessionStore keeps sessions: refresh-token families and the hashes of
// their tokens, each entry expiring after the time it is stored for.
type SessionStore interface {
	// Token returns the family of the token whose hash is h, or ErrNotFound.
	Token(ctx context.Context, h string) (string, error)
	// PutToken records that the token whose hash is h is of family.
	PutToken(ctx context.Context, h, family string, ttl time.Duration) error
	// Family returns the family and its revision, or ErrNotFound.
	Family(ctx context.Context, id string) (Family, uint64, error)
	// PutFamily stores f when its revision is still rev (0: new), and
	// returns ErrConflict otherwise.
	PutFamily(ctx context.Context, f Family, rev uint64, ttl time.Duration) error
	// Families returns the ids of the person's families.
	Families(ctx context.Context, tenant, person string) ([]string, error)
	// DeleteFamily deletes the family id of person of tenant and every
	// entry of its tokens; a token of it then opens nothing.
	DeleteFamily(ctx context.Context, tenant, person, id string) error
}

// Family is a session: who it is for, the hash of its newest refresh
// token, the only one that refreshes, and until when it lasts.
type Family struct {
	ID        string         `json:"id"`
	Principal auth.Principal `json:"principal"`
	Current   string         `json:"current"`
	Expires   time.Time      `json:"expires"`
	Revoked   bool           `json:"revoked"`
}

// tokenLen is the length of a refresh token: 256 bits in unpadded base64url.
const tokenLen = 43

// newToken returns a new refresh token and its hash.
func newToken() (string, string) {
	b := make([]byte, 32)
	rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	return tok, hashToken(tok)
}

func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func validRefreshToken(tok string) error {
	if b, err := base64.RawURLEncoding.DecodeString(tok); err != nil || len(b) != 32 || len(tok) != tokenLen {
		return &ValidationError{Field: "refresh_token", Reason: fmt.Sprintf("must be %d base64url characters", tokenLen)}
	}
	return nil
}

// StartSession starts a session for p, a member of staff of tenant the
// gateway has signed in, after writing the sign-in to the audit trail.
func (a *App) StartSession(ctx context.Context, p auth.Principal, tenant string) (privacyapi.Session, error) {
	if err := errors.Join(validToken("tenant", tenant), validToken("id", p.ID)); err != nil {
		return privacyapi.Session{}, err
	}
	if p.Tenant != tenant || !p.Role.Staff() {
		return privacyapi.Session{}, ErrForbidden
	}
	id := event.NewID()
	if _, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{
		Tenant: tenant, Actor: actor(p), Action: audit.ActionSignIn, Target: "session:" + id,
	}); err != nil {
		return privacyapi.Session{}, fmt.Errorf("audit sign-in: %w", err)
	}
	return a.newSession(ctx, id, p, a.now().Add(a.staffSessionTTL))
}

// visitorSessionTTL is how long a visitor's session lasts from its last
// refresh: as long as the tenant retains the visitor's data.
func (a *App) visitorSessionTTL(ctx context.Context, tenant string) (time.Duration, error) {
	s, err := a.tenantSettings(ctx, tenant)
	if err != nil {
		return 0, err
	}
	return s.Retention(), nil
}

func (a *App) newSession(ctx context.Context, id string, p auth.Principal, expires time.Time) (privacyapi.Session, error) {
	tok, h := newToken()
	ttl := expires.Sub(a.now())
	if err := a.sessions.PutToken(ctx, h, id, ttl); err != nil {
		return privacyapi.Session{}, err
	}
	f := Family{ID: id, Principal: p, Current: h, Expires: expires.UTC()}
	if err := a.sessions.PutFamily(ctx, f, 0, ttl); err != nil {
		return privacyapi.Session{}, err
	}
	return f.session(tok), nil
}

func (f Family) session(tok string) privacyapi.Session {
	return privacyapi.Session{ID: f.ID, Principal: f.Principal, RefreshToken: tok, ExpiresAt: f.Expires}
}

// RefreshSession spends the refresh token tok and returns the next one of
// its session. A spent token revokes its session, after the reuse is
// written to the audit trail; every refusal is ErrSessionRefused.
func (a *App) RefreshSession(ctx context.Context, tok string) (privacyapi.Session, error) {
	if err := validRefreshToken(tok); err != nil {
		return privacyapi.Session{}, err
	}
	h := hashToken(tok)
	id, err := a.sessions.Token(ctx, h)
	if errors.Is(err, ErrNotFound) {
		return privacyapi.Session{}, ErrSessionRefused
	}
	if err != nil {
		return privacyapi.Session{}, err
	}
	for range sessionAttempts {
		f, rev, err := a.sessions.Family(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			return privacyapi.Session{}, ErrSessionRefused
		case err != nil:
			return privacyapi.Session{}, err
		case f.Revoked || !a.now().Before(f.Expires):
			return privacyapi.Session{}, ErrSessionRefused
		case f.Current != h:
			// Spent already: whoever holds the newest token of the family,
			// the client or a thief, loses it too.
			if _, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{
				Tenant: f.Principal.Tenant, Actor: actor(f.Principal), Action: audit.ActionRefreshReuse, Target: "session:" + f.ID,
			}); err != nil {
				return privacyapi.Session{}, fmt.Errorf("audit refresh-token reuse: %w", err)
			}
			if _, err := a.revoke(ctx, id); err != nil {
				return privacyapi.Session{}, err
			}
			return privacyapi.Session{}, ErrSessionRefused
		}
		if f.Principal.Role == auth.RoleVisitor {
			if err := a.stillHeld(ctx, f); err != nil {
				return privacyapi.Session{}, err
			}
			life, err := a.visitorSessionTTL(ctx, f.Principal.Tenant)
			if err != nil {
				return privacyapi.Session{}, err
			}
			f.Expires = a.now().Add(life).UTC()
		}
		if f.Principal.Role == auth.RoleBot {
			if err := a.stillRegistered(ctx, f); err != nil {
				return privacyapi.Session{}, err
			}
			f.Expires = a.now().Add(BotSessionTTL).UTC()
		}
		next, nh := newToken()
		ttl := f.Expires.Sub(a.now())
		if err := a.sessions.PutToken(ctx, nh, id, ttl); err != nil {
			return privacyapi.Session{}, err
		}
		f.Current = nh
		// Of two refreshes with the same token, one stores its successor;
		// the other, next time round, finds the token spent.
		err = a.sessions.PutFamily(ctx, f, rev, ttl)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return privacyapi.Session{}, err
		}
		return f.session(next), nil
	}
	return privacyapi.Session{}, fmt.Errorf("refresh session %s: other writers won %d times", id, sessionAttempts)
}

// stillHeld refuses, and deletes, the session of a visitor whose keys are
// gone: erased by request or by retention, whichever instance did it (one
// whose erasure failed to delete it).
func (a *App) stillHeld(ctx context.Context, f Family) error {
	_, held, err := a.HeldKeys(ctx, f.Principal.Tenant, f.Principal.ID)
	if err != nil || held {
		return err
	}
	if err := a.sessions.DeleteFamily(ctx, f.Principal.Tenant, f.Principal.ID, f.ID); err != nil {
		return err
	}
	return ErrSessionRefused
}

// EndSession signs out of the session of the refresh token tok, spent or
// not, after writing that to the audit trail. A session revoked already
// stays so.
func (a *App) EndSession(ctx context.Context, tok string) error {
	if err := validRefreshToken(tok); err != nil {
		return err
	}
	id, err := a.sessions.Token(ctx, hashToken(tok))
	if errors.Is(err, ErrNotFound) {
		return ErrSessionRefused
	}
	if err != nil {
		return err
	}
	f, _, err := a.sessions.Family(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return ErrSessionRefused
	case err != nil:
		return err
	case f.Revoked:
		return nil
	}
	if _, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{
		Tenant: f.Principal.Tenant, Actor: actor(f.Principal), Action: audit.ActionSignOut, Target: "session:" + id,
	}); err != nil {
		return fmt.Errorf("audit sign-out: %w", err)
	}
	_, err = a.revoke(ctx, id)
	return err
}

// RevokeSessions signs person of tenant out everywhere, on behalf of p:
// the person themself or an admin of the tenant; never a bot, whose
// sessions an admin manages (a bot's id is chosen by an admin, and could
// be a person's). The act is written to the audit trail first. It returns
// how many sessions it revoked.
func (a *App) RevokeSessions(ctx context.Context, p auth.Principal, tenant, person string) (int, error) {
	if err := errors.Join(validToken("tenant", tenant), validToken("subject", person)); err != nil {
		return 0, err
	}
	if p.Tenant != tenant || p.Role == auth.RoleBot || !(p.Role == auth.RoleAdmin || p.ID == person) {
		return 0, ErrForbidden
	}
	if _, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{
		Tenant: tenant, Actor: actor(p), Action: audit.ActionSignOutEverywhere, Target: "subject:" + person,
	}); err != nil {
		return 0, fmt.Errorf("audit sign-out everywhere: %w", err)
	}
	// A bot and a member of staff may share an id: a person signs out of
	// their own sessions only.
	return a.revokeAllOf(ctx, tenant, person, false)
}

// revokeAllOf revokes every session of the person that is a bot's when bot
// is set, and every other one when not, and counts those it revoked.
func (a *App) revokeAllOf(ctx context.Context, tenant, person string, bot bool) (int, error) {
	ids, err := a.sessions.Families(ctx, tenant, person)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		f, _, err := a.sessions.Family(ctx, id)
		if errors.Is(err, ErrNotFound) || err == nil && (f.Principal.Role == auth.RoleBot) != bot {
			continue
		}
		if err != nil {
			return n, err
		}
		revoked, err := a.revoke(ctx, id)
		if err != nil {
			return n, err
		}
		if revoked {
			n++
		}
	}
	return n, nil
}

// deleteAll deletes every session of the person, with its tokens, and
// counts them.
func (a *App) deleteAll(ctx context.Context, tenant, person string) (int, error) {
	ids, err := a.sessions.Families(ctx, tenant, person)
	if err != nil {
		return 0, err
	}
	for i, id := range ids {
		if err := a.sessions.DeleteFamily(ctx, tenant, person, id); err != nil {
			return i, err
		}
	}
	return len(ids), nil
}

// revoke revokes the session id unless it is revoked or gone already, and
// reports whether it did. The revoked family stays until it would have
// expired, so that none of its tokens opens it again.
func (a *App) revoke(ctx context.Context, id string) (bool, error) {
	for range sessionAttempts {
		f, rev, err := a.sessions.Family(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			return false, nil
		case err != nil:
			return false, err
		case f.Revoked:
			return false, nil
		}
		f.Revoked = true
		err = a.sessions.PutFamily(ctx, f, rev, f.Expires.Sub(a.now()))
		if errors.Is(err, ErrConflict) {
			continue
		}
		return err == nil, err
	}
	return false, fmt.Errorf("revoke session %s: other writers won %d times", id, sessionAttempts)
}
