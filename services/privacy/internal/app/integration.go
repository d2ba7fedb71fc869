package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/egress"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
)

// ErrKindTaken means an id is registered already as the other kind: a bot
// and an integration never share one, since a bot's id is also its
// principal's and its assignee's.
var ErrKindTaken = errors.New("id taken by the other kind")

// IntegrationStore keeps the tenants' bots and integrations
// (privacyapi.Integration), one per tenant and id.
type IntegrationStore interface {
	// Get returns tenant's integration id and its revision, or ErrNotFound.
	Get(ctx context.Context, tenant, id string) (privacyapi.Integration, uint64, error)
	// Put stores rec when the revision of its tenant and id is still rev
	// (0: none stored), and returns ErrConflict otherwise.
	Put(ctx context.Context, rec privacyapi.Integration, rev uint64) error
	// Delete removes tenant's integration id; removing one that is gone
	// changes nothing.
	Delete(ctx context.Context, tenant, id string) error
	// List returns the integrations of tenant, of every tenant when tenant
	// is "", ordered by tenant and id.
	List(ctx context.Context, tenant string) ([]privacyapi.Integration, error)
}

// BotSessionTTL is how long a bot's session lasts from its last refresh: a
// bot that refreshes its access token every quarter of an hour keeps it for
// good, one switched off for a month needs an admin to start a new one.
const BotSessionTTL = 30 * 24 * time.Hour

// secretLen is the length of a signing secret: 256 random bits, given
// and used as their 43 characters of unpadded base64url.
const secretLen = 32

// maxWebhookURL bounds a webhook URL, in bytes.
const maxWebhookURL = 2048

// integrationAttempts bounds the writes a change of an integration may lose
// to other admins changing the same one.
const integrationAttempts = 5

// checkIntegration is every rule a bot or integration's registration
// follows; its errors name the fields, never their values.
func checkIntegration(args privacyapi.PutIntegrationArgs, private bool) error {
	errs := []error{checkIntegrationArgs(args.IntegrationArgs)}
	if n := utf8.RuneCountInString(args.Name); !utf8.ValidString(args.Name) || strings.TrimSpace(args.Name) == "" ||
		n > privacyapi.MaxIntegrationName || strings.ContainsFunc(args.Name, unicode.IsControl) {
		errs = append(errs, &ValidationError{Field: "name", Reason: fmt.Sprintf("must be 1 to %d characters, not all spaces, without control characters", privacyapi.MaxIntegrationName)})
	}
	switch {
	case (args.WebhookURL == "") == (args.NATSSubject == ""):
		errs = append(errs, &ValidationError{Field: "webhook_url", Reason: "or nats_subject: exactly one is required"})
	case args.WebhookURL != "":
		errs = append(errs, checkWebhookURL(args.WebhookURL, private))
	default:
		errs = append(errs, checkBotSubject(args.Tenant, args.NATSSubject))
	}
	return errors.Join(errs...)
}

func checkIntegrationArgs(args privacyapi.IntegrationArgs) error {
	var kind error
	if args.Kind != privacyapi.KindBot && args.Kind != privacyapi.KindIntegration {
		kind = &ValidationError{Field: "kind", Reason: "must be bot or integration"}
	}
	return errors.Join(validToken("tenant", args.Tenant), validToken("id", args.ID), kind)
}

// checkWebhookURL allows an absolute https URL, and, with private, plain
// http to this host (a bot running beside Parley): events leave the host
// encrypted. Without private it refuses a host that is this host or a
// private network's address by its very name (localhost, an address that
// is not egress.Public), so the registration fails with a reason rather
// than every delivery; a name that resolves to one is refused as each
// delivery connects (egress.PublicOnly). Userinfo is refused, as it would
// be a credential stored in clear.
func checkWebhookURL(raw string, private bool) error {
	want := "an absolute https URL"
	if private {
		want += ", or http to 127.0.0.1, ::1 or localhost,"
	}
	bad := &ValidationError{Field: "webhook_url", Reason: fmt.Sprintf("must be %s of at most %d bytes, without user info or fragment", want, maxWebhookURL)}
	u, err := url.Parse(raw)
	if err != nil || len(raw) > maxWebhookURL || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return bad
	}
	host := u.Hostname()
	switch {
	case u.Scheme == "http" && private && loopbackHost(host):
		return nil
	case u.Scheme != "https":
		return bad
	case !private && !publicHost(host):
		return &ValidationError{Field: "webhook_url", Reason: "must be at a public address: this Parley sends no webhook to its own host or a private network"}
	}
	return nil
}

// loopbackHost reports whether host names this host: localhost or a
// loopback address.
func loopbackHost(host string) bool {
	ip, err := netip.ParseAddr(host)
	return host == "localhost" || err == nil && ip.IsLoopback()
}

// publicHost reports whether host may be public: a name (its addresses
// are checked as a delivery connects) other than localhost's, or an
// address that is egress.Public.
func publicHost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || egress.Public(ip)
}

// checkBotSubject allows parley.bots.<tenant>.<token>[.<token>…]: under
// the tenant's own prefix, without wildcards.
func checkBotSubject(tenant, subj string) error {
	prefix := privacyapi.BotSubjectPrefix + tenant + "."
	rest, ok := strings.CutPrefix(subj, prefix)
	if ok && rest != "" && !slices.ContainsFunc(strings.Split(rest, "."), func(t string) bool { return !stream.ValidToken(t) }) {
		return nil
	}
	return &ValidationError{Field: "nats_subject", Reason: "must be " + privacyapi.BotSubjectPrefix + "<tenant>.<token>, tokens of letters, digits, '-' or '_'"}
}

// auditTarget names an integration in the audit trail.
func auditTarget(kind, id string) string { return kind + ":" + id }

// PutIntegration registers a bot or integration for an admin of its tenant,
// or changes one's name and where it is delivered to, keeping its secret.
// The act is audited first. A new one gets a signing secret, sealed under
// the KEK and answered once, and a new bot a session.
func (a *App) PutIntegration(ctx context.Context, p auth.Principal, args privacyapi.PutIntegrationArgs) (privacyapi.PutIntegrationResult, error) {
	if err := checkIntegration(args, a.privateWebhooks); err != nil {
		return privacyapi.PutIntegrationResult{}, err
	}
	if err := allow(p, args.Tenant, auth.RoleAdmin); err != nil {
		return privacyapi.PutIntegrationResult{}, err
	}
	// A refusal is not audited as an act.
	if rec, _, err := a.integrations.Get(ctx, args.Tenant, args.ID); err == nil && rec.Kind != args.Kind {
		return privacyapi.PutIntegrationResult{}, ErrKindTaken
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return privacyapi.PutIntegrationResult{}, err
	}
	// Where, not the whole URL: its path or query may hold a token of
	// the receiver's.
	target := auditTarget(args.Kind, args.ID)
	if args.WebhookURL != "" {
		u, _ := url.Parse(args.WebhookURL)
		target += " webhook " + u.Scheme + "://" + u.Host
	} else {
		target += " nats_subject " + args.NATSSubject
	}
	if _, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{Tenant: args.Tenant, Actor: actor(p), Action: audit.ActionIntegrationPut, Target: target}); err != nil {
		return privacyapi.PutIntegrationResult{}, fmt.Errorf("audit integration put: %w", err)
	}
	for range integrationAttempts {
		rec, rev, err := a.integrations.Get(ctx, args.Tenant, args.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			res, err := a.createIntegration(ctx, args)
			if errors.Is(err, ErrConflict) {
				continue
			}
			return res, err
		case err != nil:
			return privacyapi.PutIntegrationResult{}, err
		case rec.Kind != args.Kind:
			return privacyapi.PutIntegrationResult{}, ErrKindTaken
		}
		rec.Name, rec.WebhookURL, rec.NATSSubject, rec.UpdatedAt = args.Name, args.WebhookURL, args.NATSSubject, a.now().UTC()
		err = a.integrations.Put(ctx, rec, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return privacyapi.PutIntegrationResult{}, err
		}
		return privacyapi.PutIntegrationResult{Integration: rec.View()}, nil
	}
	return privacyapi.PutIntegrationResult{}, fmt.Errorf("put integration %s: other writers won %d times", args.ID, integrationAttempts)
}

// createIntegration stores a new integration with a new secret, and starts
// a bot's session once it is stored.
func (a *App) createIntegration(ctx context.Context, args privacyapi.PutIntegrationArgs) (privacyapi.PutIntegrationResult, error) {
	raw := make([]byte, secretLen)
	rand.Read(raw)
	// The text is the secret: receivers key their HMAC with the
	// characters they were given, as pkg/webhook's verifier does.
	secret := base64.RawURLEncoding.EncodeToString(raw)
	sealed, err := a.ring.SealSecret(args.Tenant, args.ID, []byte(secret))
	if err != nil {
		return privacyapi.PutIntegrationResult{}, err
	}
	now := a.now().UTC()
	rec := privacyapi.Integration{
		Tenant: args.Tenant, ID: args.ID, Kind: args.Kind, Name: args.Name,
		WebhookURL: args.WebhookURL, NATSSubject: args.NATSSubject,
		SealedSecret: sealed, KEKID: a.ring.KEKID(), CreatedAt: now, UpdatedAt: now,
	}
	if err := a.integrations.Put(ctx, rec, 0); err != nil {
		return privacyapi.PutIntegrationResult{}, err
	}
	res := privacyapi.PutIntegrationResult{Integration: rec.View(), Created: true, Secret: secret}
	if rec.Kind == privacyapi.KindBot {
		s, err := a.newBotSession(ctx, rec.Tenant, rec.ID)
		if err != nil {
			return privacyapi.PutIntegrationResult{}, fmt.Errorf("start the session of bot %s: %w", rec.ID, err)
		}
		res.Session = &s
	}
	return res, nil
}

// integration returns tenant's integration of args, ErrNotFound when it
// has none of that kind.
func (a *App) integration(ctx context.Context, args privacyapi.IntegrationArgs) (privacyapi.Integration, error) {
	rec, _, err := a.integrations.Get(ctx, args.Tenant, args.ID)
	if err != nil {
		return privacyapi.Integration{}, err
	}
	if rec.Kind != args.Kind {
		return privacyapi.Integration{}, ErrNotFound
	}
	return rec, nil
}

// GetIntegration returns a bot or integration, without its secret, to an
// admin of its tenant.
func (a *App) GetIntegration(ctx context.Context, p auth.Principal, args privacyapi.IntegrationArgs) (privacyapi.IntegrationView, error) {
	if err := checkIntegrationArgs(args); err != nil {
		return privacyapi.IntegrationView{}, err
	}
	if err := allow(p, args.Tenant, auth.RoleAdmin); err != nil {
		return privacyapi.IntegrationView{}, err
	}
	rec, err := a.integration(ctx, args)
	return rec.View(), err
}

// ListIntegrations returns tenant's bots or integrations, without their
// secrets, to an admin or a supervisor of the tenant. A supervisor, who
// only assigns conversations to bots, gets each one's id, kind and name:
// a webhook URL's path or query may hold the receiver's token, which the
// audit trail leaves out too.
func (a *App) ListIntegrations(ctx context.Context, p auth.Principal, tenant, kind string) ([]privacyapi.IntegrationView, error) {
	// The id is not listed; any valid one passes its check.
	if err := checkIntegrationArgs(privacyapi.IntegrationArgs{Tenant: tenant, Kind: kind, ID: "list"}); err != nil {
		return nil, err
	}
	if err := allow(p, tenant, auth.RoleAdmin, auth.RoleSupervisor); err != nil {
		return nil, err
	}
	recs, err := a.integrations.List(ctx, tenant)
	if err != nil {
		return nil, err
	}
	views := []privacyapi.IntegrationView{}
	for _, rec := range recs {
		switch {
		case rec.Kind != kind:
		case p.Role == auth.RoleAdmin:
			views = append(views, rec.View())
		default:
			views = append(views, privacyapi.IntegrationView{ID: rec.ID, Kind: rec.Kind, Name: rec.Name})
		}
	}
	return views, nil
}

// DeleteIntegration removes a bot or integration for an admin of its
// tenant, after auditing it; a bot's sessions are revoked, so its refresh
// token opens nothing.
func (a *App) DeleteIntegration(ctx context.Context, p auth.Principal, args privacyapi.IntegrationArgs) error {
	if err := checkIntegrationArgs(args); err != nil {
		return err
	}
	if err := allow(p, args.Tenant, auth.RoleAdmin); err != nil {
		return err
	}
	if _, err := a.integration(ctx, args); err != nil {
		return err
	}
	if _, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{Tenant: args.Tenant, Actor: actor(p), Action: audit.ActionIntegrationDelete, Target: auditTarget(args.Kind, args.ID)}); err != nil {
		return fmt.Errorf("audit integration delete: %w", err)
	}
	// Gone first: a refresh of the bot's session checks it is still
	// registered, so no session outlives it even if revoking fails.
	if err := a.integrations.Delete(ctx, args.Tenant, args.ID); err != nil {
		return err
	}
	if args.Kind != privacyapi.KindBot {
		return nil
	}
	_, err := a.revokeBot(ctx, args.Tenant, args.ID)
	return err
}

// StartBotSession revokes every session of a bot and starts a new one, for
// an admin of its tenant, after auditing it.
func (a *App) StartBotSession(ctx context.Context, p auth.Principal, tenant, id string) (privacyapi.Session, error) {
	args := privacyapi.IntegrationArgs{Tenant: tenant, Kind: privacyapi.KindBot, ID: id}
	if err := checkIntegrationArgs(args); err != nil {
		return privacyapi.Session{}, err
	}
	if err := allow(p, tenant, auth.RoleAdmin); err != nil {
		return privacyapi.Session{}, err
	}
	if _, err := a.integration(ctx, args); err != nil {
		return privacyapi.Session{}, err
	}
	if _, err := a.appendAudit(ctx, privacyapi.AppendAuditArgs{Tenant: tenant, Actor: actor(p), Action: audit.ActionIntegrationSession, Target: auditTarget(args.Kind, id)}); err != nil {
		return privacyapi.Session{}, fmt.Errorf("audit bot session: %w", err)
	}
	if _, err := a.revokeBot(ctx, tenant, id); err != nil {
		return privacyapi.Session{}, err
	}
	return a.newBotSession(ctx, tenant, id)
}

// newBotSession starts a session for the bot: the bot never signs in, so
// privacy starts it itself, for the principal {tenant, id, bot}.
func (a *App) newBotSession(ctx context.Context, tenant, id string) (privacyapi.Session, error) {
	p := auth.Principal{Tenant: tenant, ID: id, Role: auth.RoleBot}
	return a.newSession(ctx, event.NewID(), p, a.now().Add(BotSessionTTL))
}

// revokeBot revokes the bot's sessions, and those only: a member of staff
// may have the same id.
func (a *App) revokeBot(ctx context.Context, tenant, id string) (int, error) {
	return a.revokeAllOf(ctx, tenant, id, true)
}

// stillRegistered refuses the session of a bot that is no longer
// registered (deleted while its session was being refreshed).
func (a *App) stillRegistered(ctx context.Context, f Family) error {
	_, err := a.integration(ctx, privacyapi.IntegrationArgs{Tenant: f.Principal.Tenant, Kind: privacyapi.KindBot, ID: f.Principal.ID})
	if errors.Is(err, ErrNotFound) {
		if _, err := a.revoke(ctx, f.ID); err != nil {
			return err
		}
		return ErrSessionRefused
	}
	return err
}

// IntegrationSecret opens rec's signing secret: the bytes of the text the
// admin was given, the key of pkg/webhook's Sign. It fails with
// keyring.ErrUnknownKEK when rec is sealed under another KEK than the
// ring's, and when rec was altered or copied to another tenant or id.
func (a *App) IntegrationSecret(rec privacyapi.Integration) ([]byte, error) {
	return a.ring.OpenSecret(rec.Tenant, rec.ID, rec.KEKID, rec.SealedSecret)
}
