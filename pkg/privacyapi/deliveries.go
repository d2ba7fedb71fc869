package privacyapi

import "time"

// DeliveriesSubject lists the delivery log of a bot or an integration,
// oldest first: an entry per attempt to deliver an event or an erasure
// notice to it, with no content (see Delivery).
//
// Request: rpc.Request[DeliveriesArgs]. Result: DeliveriesResult. Who: an
// admin of the tenant.
//
// Errors: rpc.CodeInvalid for a malformed tenant, kind or id;
// rpc.CodeForbidden for any other role or another tenant;
// rpc.CodeNotFound when the tenant has no integration of that kind and id.
const DeliveriesSubject = "parley.privacy.deliveries"

// MaxDeliveries is the most entries one DeliveriesResult holds.
const MaxDeliveries = 500

// Outcomes of a delivery attempt.
const (
	// OutcomeDelivered: the receiver acknowledged it.
	OutcomeDelivered = "delivered"
	// OutcomeFailed: no acknowledgement; it is tried again later.
	OutcomeFailed = "failed"
	// OutcomeAbandoned: no acknowledgement at the last attempt allowed;
	// it is not tried again.
	OutcomeAbandoned = "abandoned"
	// OutcomeWithdrawn: not attempted, and not tried again: the visitor
	// withdrew their ai consent since the failed attempt before it.
	OutcomeWithdrawn = "withdrawn"
)

// DeliveriesArgs asks for the entries of tenant's integration ID, of Kind
// (KindBot or KindIntegration), stored at or after Since (all when zero).
type DeliveriesArgs struct {
	Tenant string    `json:"tenant"`
	Kind   string    `json:"kind"`
	ID     string    `json:"id"`
	Since  time.Time `json:"since"`
}

// Delivery is one attempt to deliver, as the delivery log keeps it: what
// was sent is named by its id and type only, never its content, visitor
// or conversation.
type Delivery struct {
	// EventID is the id of the event delivered, or of the erasure notice:
	// the Parley-Delivery header of the request.
	EventID string `json:"event_id"`
	// Type is the delivery's type, as in its body.
	Type string `json:"type"`
	// Attempt counts the attempts at this delivery, from 1.
	Attempt int `json:"attempt"`
	// Outcome is OutcomeDelivered, OutcomeFailed, OutcomeAbandoned or
	// OutcomeWithdrawn.
	Outcome string `json:"outcome"`
	// Status is the HTTP status the webhook answered; 0 when it gave none
	// (no connection, a timeout) or for a NATS subject.
	Status int `json:"status"`
	// DurationMS is how long the attempt took, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// At is when the attempt ended.
	At time.Time `json:"at"`
}

// DeliveriesResult holds up to MaxDeliveries entries, oldest first. More
// says there are later ones: ask again with Since set to the last entry's
// At, and skip the entries already seen.
type DeliveriesResult struct {
	Deliveries []Delivery `json:"deliveries"`
	More       bool       `json:"more"`
}

// ErasureIntegration is a bot or integration that had received events of
// an erased subject, and whether it acknowledged the "subject erased"
// notice before the erasure answered. One that did not keeps being sent
// the notice, with backoff, after the erasure completed.
type ErasureIntegration struct {
	ID           string `json:"id"`
	Kind         string `json:"kind"`
	Acknowledged bool   `json:"acknowledged"`
}
