// Package privacyapi is the bus contract of the privacy service's
// request/reply calls (the key service has its own, in personkey).
package privacyapi

import "github.com/parley-chat/parley/pkg/event"

// Request/reply subjects, served by the privacy service in queue group Queue.
const (
	// RegisterVisitorSubject creates a visitor: a new data subject with its
	// keys, and its consent choices recorded in the PRIVACY stream.
	// RegisterVisitorArgs → RegisterVisitorResult.
	RegisterVisitorSubject = "parley.privacy.visitor.register"

	Queue = "privacy"
	// Service names the privacy service, the key service included, for
	// discovery (`nats micro ls`).
	Service = "parley-privacy"
)

// RegisterVisitorArgs registers a visitor of Tenant with their consent.
type RegisterVisitorArgs struct {
	Tenant  string        `json:"tenant"`
	Consent event.Consent `json:"consent"`
	// NetworkData is what the gateway saw of the visitor's network and
	// browser, already coarsened. The gateway sends it only when the
	// tenant's Settings.CollectNetworkData and the visitor's
	// Consent.NetworkData are both on; the privacy service checks both
	// again and otherwise drops it unseen. It is stored sealed under the
	// visitor's key (NetworkDataRecordedType).
	NetworkData *NetworkData `json:"network_data,omitempty"`
}

// RegisterVisitorResult names the new visitor and holds their session
// (see RefreshSessionSubject), which lasts as long as the tenant retains
// their data.
type RegisterVisitorResult struct {
	VisitorID string  `json:"visitor_id"`
	Session   Session `json:"session"`
}
