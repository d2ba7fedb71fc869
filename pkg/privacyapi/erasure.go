package privacyapi

import (
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/event"
)

// Erasure subjects, served by the privacy service in queue group Queue.
const (
	// EraseSubject erases a data subject: it destroys their keys (their
	// events in every stream become unreadable), broadcasts
	// personkey.Erased on personkey.ErasedSubject so every service evicts
	// what it holds, and records the erasure in the PRIVACY stream. It
	// answers once the erasure is completed; its time does not depend on
	// how much the subject has written.
	//
	// Request: rpc.Request[EraseArgs]. Result: Erasure, with Status
	// StatusCompleted. Who: a visitor erasing themself (Subject equal to
	// the principal's id), or an admin erasing any subject of their own
	// tenant; an admin's erasure is written to the audit trail (action
	// "erase"). Erasing a subject already erased answers that erasure (same
	// ErasureID) and changes nothing.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant or subject;
	// rpc.CodeForbidden for any other principal or another tenant;
	// rpc.CodeNotFound when the subject never existed (no keys and no
	// privacy record; nothing is written); rpc.CodeUnavailable when the
	// store cannot be reached.
	EraseSubject = "parley.privacy.erase"

	// ErasureStatusSubject tells where an erasure stands.
	//
	// Request: rpc.Request[ErasureStatusArgs]. Result: Erasure. Who: an admin
	// of the tenant, or the erased visitor themself (principal id equal to
	// the erasure's subject): the gateway lets an erased visitor's old token
	// through for this one call.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant or erasure id;
	// rpc.CodeForbidden for any other role or another tenant;
	// rpc.CodeNotFound for an unknown erasure, and for a visitor asking
	// about another subject's erasure.
	ErasureStatusSubject = "parley.privacy.erasure.status"
)

// Events of erasure in the PRIVACY stream, on the erased subject's privacy
// subject. They are clear envelopes (event.NewClear): they hold no personal
// data and stay readable as evidence after the keys are gone.
const (
	// ErasureRequestedType opens an erasure; its event id is the
	// ErasureID. Payload: ErasureRequested.
	ErasureRequestedType event.Type = "privacy.erasure_requested.v1"
	// ErasureCompletedType closes it. Payload: ErasureCompleted.
	ErasureCompletedType event.Type = "privacy.erasure_completed.v1"
)

// Erasure statuses.
const (
	StatusPending   = "pending"
	StatusCompleted = "completed"
)

// EraseArgs names the person to erase.
type EraseArgs struct {
	Tenant string `json:"tenant"`
	Person string `json:"subject"`
}

// ErasureStatusArgs names an erasure.
type ErasureStatusArgs struct {
	Tenant    string `json:"tenant"`
	ErasureID string `json:"erasure_id"`
}

// Erasure is where an erasure stands. CompletedAt and Report are nil while
// it is pending.
type Erasure struct {
	ErasureID   string         `json:"erasure_id"`
	Tenant      string         `json:"tenant"`
	Person      string         `json:"subject"`
	Status      string         `json:"status"`
	RequestedAt time.Time      `json:"requested_at"`
	CompletedAt *time.Time     `json:"completed_at"`
	Report      *ErasureReport `json:"report"`
}

// ErasureReport says what an erasure destroyed.
type ErasureReport struct {
	// KeysDestroyed is true when the subject's data and pseudonym keys were
	// secure-deleted by this erasure; false when there were none left (they
	// had expired).
	KeysDestroyed bool `json:"keys_destroyed"`
	// At is when the erasure completed.
	At time.Time `json:"at"`
	// DurationMS is the time from request to completion, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// Counts holds what else was erased, by name, such as
	// "analytics_rows" or "sessions_closed". Services report their own
	// counts under names of their own, so the report grows without a new
	// version.
	Counts map[string]int64 `json:"counts,omitempty"`
	// Integrations lists the bots and integrations that had received the
	// subject's events, each sent a signed "subject erased" notice; absent
	// when there were none.
	Integrations []ErasureIntegration `json:"integrations,omitempty"`
}

// ErasureRequested is the body of an ErasureRequestedType event.
type ErasureRequested struct {
	ErasureID string `json:"erasure_id"`
	// By is who asked: the subject themself or a member of staff.
	By audit.Actor `json:"by"`
}

// ErasureCompleted is the body of an ErasureCompletedType event.
type ErasureCompleted struct {
	ErasureID string        `json:"erasure_id"`
	Report    ErasureReport `json:"report"`
}
