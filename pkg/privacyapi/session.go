package privacyapi

import (
	"log/slog"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
)

// Session subjects, served by the privacy service in queue group Queue.
//
// A session is a family of refresh tokens: each is 256 random bits, given
// to the client once and stored only as its SHA-256 hash, in the SESSIONS
// bucket. Every refresh spends the token presented and answers the next one
// of the family; presenting a spent token again revokes the whole family
// (a copy of it was stolen, or the client is broken) and is audited. The
// gateway turns each answer into a short-lived access token (pkg/auth),
// which it issues for Session.Principal.
const (
	// StartSessionSubject starts a session for the member of staff the
	// gateway has just signed in through their tenant's identity
	// provider, and writes the sign-in to the audit trail (action
	// "session.sign_in") first.
	//
	// Request: rpc.Request[StartSessionArgs], the principal being who
	// signed in. Result: Session. Who: a member of staff (agent,
	// supervisor, admin, analyst, auditor) of Args.Tenant. A visitor's
	// session starts when they register (RegisterVisitorResult).
	//
	// Errors: rpc.CodeInvalid for a malformed tenant or id;
	// rpc.CodeForbidden for any other role or another tenant;
	// rpc.CodeUnavailable when the store or the audit trail cannot be
	// reached.
	StartSessionSubject = "parley.privacy.session.start"

	// RefreshSessionSubject spends a refresh token and answers the next
	// one of its session.
	//
	// Request: rpc.Request[RefreshArgs]; the principal is not used (the
	// token is the credential). Result: Session.
	//
	// Errors: rpc.CodeInvalid for a token that is not 43 base64url
	// characters; rpc.CodeForbidden for a token that is unknown, expired,
	// of a revoked session, of an erased visitor, or spent (which revokes
	// its session and is audited, action "session.refresh_reuse").
	RefreshSessionSubject = "parley.privacy.session.refresh"

	// EndSessionSubject signs out: it revokes the session of a refresh
	// token and writes that to the audit trail (action
	// "session.sign_out"). Ending a session already revoked changes
	// nothing.
	//
	// Request: rpc.Request[RefreshArgs]. Result: none.
	//
	// Errors: rpc.CodeInvalid for a malformed token; rpc.CodeForbidden for
	// an unknown or expired one.
	EndSessionSubject = "parley.privacy.session.end"

	// RevokeSessionsSubject signs a person out everywhere: it revokes
	// every session of the person (a bot asking for itself: every session
	// of the bot; a bot's sessions are never a person's, though their ids
	// may be the same) and writes that to the audit trail
	// (action "session.sign_out_everywhere") first. Access tokens already
	// issued stay valid until they expire (see the gateway's access token
	// lifetime).
	//
	// Request: rpc.Request[PersonArgs]. Result: RevokeSessionsResult.
	// Who: the person themself, or an admin of their tenant.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant or person;
	// rpc.CodeForbidden for anyone else.
	RevokeSessionsSubject = "parley.privacy.session.revoke"
)

// StartSessionArgs names the tenant the session is of.
type StartSessionArgs struct {
	Tenant string `json:"tenant"`
}

// RefreshArgs carries a refresh token.
type RefreshArgs struct {
	RefreshToken string `json:"refresh_token"`
}

// Session is a session's newest refresh token, given once, and who the
// session is for.
type Session struct {
	ID           string         `json:"id"`
	Principal    auth.Principal `json:"principal"`
	RefreshToken string         `json:"refresh_token"`
	// ExpiresAt is when the session ends unless refreshed: a visitor's
	// session lasts the tenant's retention from its last refresh, a member
	// of staff's a fixed time from sign-in.
	ExpiresAt time.Time `json:"expires_at"`
}

// LogValue logs s without its refresh token.
func (s Session) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", s.ID), slog.String("tenant", s.Principal.Tenant),
		slog.String("role", string(s.Principal.Role)), slog.Time("expires_at", s.ExpiresAt))
}

// RevokeSessionsResult counts the sessions revoked.
type RevokeSessionsResult struct {
	Revoked int `json:"revoked"`
}
