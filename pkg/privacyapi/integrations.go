package privacyapi

import (
	"log/slog"
	"time"

	"github.com/parley-chat/parley/pkg/stream"
)

// IntegrationsBucket is the key-value bucket of the bots and integrations
// admins register, owned and written by the privacy service, which alone
// delivers to them. The key is IntegrationKey, the value the JSON of
// Integration. The chat service reads it to check that a bot a
// conversation is assigned to exists; the signing secret in it is sealed
// under the KEK, which only the privacy service holds.
const IntegrationsBucket = stream.IntegrationsBucket

// IntegrationKey is the key of tenant's integration id in
// IntegrationsBucket.
func IntegrationKey(tenant, id string) string { return tenant + "." + id }

// Kinds of Integration.
const (
	// KindBot is a participant: it is assigned conversations like an
	// agent, receives the events of those, and answers through the API
	// with a bot token.
	KindBot = "bot"
	// KindIntegration is a tool (a CRM, a ticketing system): it receives
	// the events of every conversation of its tenant and answers nothing.
	KindIntegration = "integration"
)

// Integration is a bot or an integration as stored. Exactly one of
// WebhookURL and NATSSubject is set: where its events are delivered.
type Integration struct {
	Tenant      string `json:"tenant"`
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Name        string `json:"name"`
	WebhookURL  string `json:"webhook_url,omitempty"`
	NATSSubject string `json:"nats_subject,omitempty"`
	// SealedSecret is the secret its deliveries are signed with (see
	// pkg/webhook), sealed under the KEK; never sent to anyone but the
	// admin who registered it, once.
	SealedSecret []byte `json:"sealed_secret"`
	// KEKID names the KEK SealedSecret is sealed under, as a subject's
	// key record does, so that a KEK rotation finds what to seal again.
	KEKID     string    `json:"kek_id"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Integration subjects, served by the privacy service in queue group
// Queue. Every call is an admin's of the tenant, but for ListIntegrations,
// which supervisors may make too (they assign conversations to bots). No
// answer ever holds a stored secret: the signing secret is given once,
// when it is made.
const (
	// PutIntegrationSubject registers a bot or integration, or changes
	// where one is delivered to and its name, keeping its secret, and
	// writes that to the audit trail (action "integration.put") first. A
	// new one gets a new signing secret (Secret) and, when a bot, a session
	// for the principal {tenant, id, bot} (Session), both given once.
	//
	// Request: rpc.Request[PutIntegrationArgs]. Result: PutIntegrationResult.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant, id, kind, name,
	// webhook URL or NATS subject, or not exactly one of the two;
	// rpc.CodeConflict when the id is of the other kind; rpc.CodeForbidden
	// for any other role or another tenant.
	PutIntegrationSubject = "parley.privacy.integration.put"

	// GetIntegrationSubject answers a bot or integration.
	//
	// Request: rpc.Request[IntegrationArgs]. Result: IntegrationView.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant, id or kind;
	// rpc.CodeNotFound when the tenant has none of that kind and id;
	// rpc.CodeForbidden for any other role or another tenant.
	GetIntegrationSubject = "parley.privacy.integration.get"

	// ListIntegrationsSubject answers the tenant's bots or integrations
	// (IntegrationArgs.ID unused), ordered by id. Who: an admin or a
	// supervisor of the tenant; a supervisor gets each one's id, kind and
	// name only.
	//
	// Request: rpc.Request[IntegrationArgs]. Result: ListIntegrationsResult.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant or kind;
	// rpc.CodeForbidden for any other role or another tenant.
	ListIntegrationsSubject = "parley.privacy.integration.list"

	// DeleteIntegrationSubject removes a bot or integration, and a bot's
	// sessions, after writing that to the audit trail (action
	// "integration.delete").
	//
	// Request: rpc.Request[IntegrationArgs]. Result: none.
	//
	// Errors: as GetIntegrationSubject's.
	DeleteIntegrationSubject = "parley.privacy.integration.delete"

	// StartBotSessionSubject revokes every session of a bot and starts a
	// new one, after writing that to the audit trail (action
	// "integration.session"): for a bot that lost its refresh token.
	//
	// Request: rpc.Request[IntegrationArgs], Kind KindBot. Result: Session.
	//
	// Errors: as GetIntegrationSubject's.
	StartBotSessionSubject = "parley.privacy.integration.session"
)

// Bounds of Integration.
const (
	// MaxIntegrationName is the longest Name, in characters.
	MaxIntegrationName = 100
	// BotSubjectPrefix begins every NATSSubject: parley.bots.<tenant>.…
	// is a tenant's own, so that no integration is delivered on a subject
	// another service or tenant listens to.
	BotSubjectPrefix = "parley.bots."
)

// IntegrationArgs names a tenant's bot or integration.
type IntegrationArgs struct {
	Tenant string `json:"tenant"`
	Kind   string `json:"kind"`
	ID     string `json:"id"`
}

// PutIntegrationArgs is what an admin registers: exactly one of
// WebhookURL and NATSSubject.
type PutIntegrationArgs struct {
	IntegrationArgs
	Name        string `json:"name"`
	WebhookURL  string `json:"webhook_url,omitempty"`
	NATSSubject string `json:"nats_subject,omitempty"`
}

// IntegrationView is an Integration without its secret: what the API shows.
// A supervisor's list holds ID, Kind and Name only (the rest zero, left
// out of the JSON).
type IntegrationView struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	Name        string    `json:"name"`
	WebhookURL  string    `json:"webhook_url,omitempty"`
	NATSSubject string    `json:"nats_subject,omitempty"`
	CreatedAt   time.Time `json:"created_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
}

// View is i without its secret.
func (i Integration) View() IntegrationView {
	return IntegrationView{ID: i.ID, Kind: i.Kind, Name: i.Name, WebhookURL: i.WebhookURL, NATSSubject: i.NATSSubject,
		CreatedAt: i.CreatedAt, UpdatedAt: i.UpdatedAt}
}

// PutIntegrationResult is the integration as stored; Created says whether
// it is new, and only then are Secret (its signing secret: 32 random bytes
// in unpadded base64url, whose 43 characters are the HMAC key of
// pkg/webhook) and, for a bot, Session set.
type PutIntegrationResult struct {
	Integration IntegrationView `json:"integration"`
	Created     bool            `json:"created"`
	Secret      string          `json:"secret,omitempty"`
	Session     *Session        `json:"session,omitempty"`
}

// LogValue logs r without its secret and session token.
func (r PutIntegrationResult) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.Integration.ID), slog.String("kind", r.Integration.Kind), slog.Bool("created", r.Created))
}

// ListIntegrationsResult is a tenant's bots or integrations.
type ListIntegrationsResult struct {
	Integrations []IntegrationView `json:"integrations"`
}
