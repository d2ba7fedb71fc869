package privacyapi

import (
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
