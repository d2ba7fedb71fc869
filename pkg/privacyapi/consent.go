package privacyapi

import (
	"time"

	"github.com/parley-chat/parley/pkg/event"
)

// Consent subjects. The calls are served by the privacy service in queue
// group Queue; ConsentChangedSubject is a broadcast.
const (
	// SetConsentSubject records a visitor's new consent choices: an
	// event.ConsentRecorded in the PRIVACY stream, then a ConsentChanged
	// broadcast. They apply to everything after the call returns.
	//
	// Request: rpc.Request[SetConsentArgs]. Result: ConsentResult, the
	// consent now in force. Who: a visitor, for themself only.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant, a missing or longer
	// than 64 characters notice version, or one given with SameNotice;
	// rpc.CodeForbidden for any other
	// role or another tenant; rpc.CodeNotFound when the visitor has no
	// consent record (was never registered); rpc.CodeGone when the visitor
	// is erased.
	SetConsentSubject = "parley.privacy.consent.set"

	// GetConsentSubject answers the consent in force for a data subject
	// (PersonArgs.Person).
	//
	// Request: PersonArgs (no principal: only services may publish here,
	// by their bus permissions). Result: ConsentResult.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant or subject;
	// rpc.CodeNotFound when the subject has no consent record;
	// rpc.CodeGone when the subject is erased. A caller gating a purpose
	// treats every error as "not consented".
	GetConsentSubject = "parley.privacy.consent.get"

	// ConsentHistorySubject lists every consent a subject gave, oldest
	// first, for their export. The call is not audited: the export that
	// uses it is, once, by whoever assembles it.
	//
	// Request: rpc.Request[PersonArgs]. Result: ConsentHistoryResult. Who:
	// a visitor for themself, an admin for any subject of their tenant.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant or subject;
	// rpc.CodeForbidden for any other principal or another tenant;
	// rpc.CodeNotFound when the subject has no consent record;
	// rpc.CodeGone when the subject is erased.
	ConsentHistorySubject = "parley.privacy.consent.history"

	// ConsentChangedSubject carries a ConsentChanged broadcast after every
	// consent recorded, so caches update at once.
	ConsentChangedSubject = "parley.consent.changed"
)

// SetConsentArgs are a visitor's new choices. The subject is the principal.
// With SameNotice the choices are recorded under the notice version of the
// consent in force, which Consent.NoticeVersion leaves empty: the service
// reads it and records the new consent as one step, so a notice version
// recorded meanwhile is never overwritten by an older one.
type SetConsentArgs struct {
	Tenant     string        `json:"tenant"`
	Consent    event.Consent `json:"consent"`
	SameNotice bool          `json:"same_notice,omitempty"`
}

// PersonArgs names a data subject.
type PersonArgs struct {
	Tenant string `json:"tenant"`
	Person string `json:"subject"`
}

// ConsentResult is the consent in force for a subject: recorded At, by the
// event at stream sequence Seq of PRIVACY (later consents have higher Seq).
type ConsentResult struct {
	Consent event.Consent `json:"consent"`
	At      time.Time     `json:"at"`
	Seq     uint64        `json:"seq"`
}

// ConsentHistoryResult lists a subject's consents, oldest first.
type ConsentHistoryResult struct {
	Entries []ConsentEntry `json:"entries"`
}

// ConsentEntry is one consent a subject gave, and when.
type ConsentEntry struct {
	Consent event.Consent `json:"consent"`
	At      time.Time     `json:"at"`
}

// ConsentChanged is the broadcast of a newly recorded consent.
type ConsentChanged struct {
	Tenant string        `json:"tenant"`
	Person string        `json:"subject"`
	Result ConsentResult `json:"result"`
}
