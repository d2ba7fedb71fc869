package privacyapi

import (
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
)

// ExportSubject starts a data subject's export and answers what the
// privacy service holds about them: every consent they gave, the network
// data collected about them (decrypted), and every export and erasure
// request. The call itself is recorded in the PRIVACY stream
// (ExportRequestedType), and a staff export is written to the audit trail
// (action "export", target "subject:<id>") before anything is answered: an
// export that could not be audited does not happen. The subject's
// conversations follow, page after page, from ExportPageSubject under the
// ExportID answered here.
//
// Request: rpc.Request[PersonArgs]. Result: ExportResult. Who: a visitor
// for themself, an admin for any subject of their tenant.
//
// Errors: rpc.CodeInvalid for a malformed tenant or subject;
// rpc.CodeForbidden for any other principal or another tenant;
// rpc.CodeNotFound when the subject never existed (no keys and no privacy
// record); rpc.CodeGone when the subject is erased; rpc.CodeUnavailable
// when the store or the audit trail cannot be reached.
const ExportSubject = "parley.privacy.export"

// ExportPageSubject answers one page of the conversations of an export
// started with ExportSubject: the privacy service reads it from the chat
// service (chatapi.ExportSubject), the only one that decrypts chat
// content, on behalf of whoever started the export, so no conversation is
// exported but under an export recorded, and audited when staff asked. A
// caller asks again with After = the previous page's Next until Next is
// nil (chatapi.ReadPages), holding one page at a time.
//
// Request: rpc.Request[ExportPageArgs]. Result: chatapi.ExportResult.
// Who: the principal who started the export, within ExportPagesWithin of
// its start.
//
// Errors: those of ExportSubject, and rpc.CodeNotFound when the principal
// started no export ExportID of the subject in that time; the chat
// service's errors as it answers them (rpc.CodeGone once the subject is
// erased).
const ExportPageSubject = "parley.privacy.export.page"

// ExportPagesWithin bounds how long after its start the pages of an export
// are answered: long enough for any history, short enough that an export
// id is no lasting pass to a subject's conversations.
const ExportPagesWithin = time.Hour

// ExportPageArgs asks for the page after After (nil: the first) of the
// export ExportID of a data subject.
type ExportPageArgs struct {
	Tenant   string                `json:"tenant"`
	Person   string                `json:"subject"`
	ExportID string                `json:"export_id"`
	After    *chatapi.ExportCursor `json:"after,omitempty"`
}

// Events of network data and export in the PRIVACY stream, on the data
// subject's privacy subject.
const (
	// NetworkDataRecordedType holds a visitor's NetworkData. Unlike the
	// other PRIVACY events it is personal data, so it is sealed under the
	// visitor's data key (event.New): erasing the visitor makes it
	// unreadable with everything else of theirs.
	NetworkDataRecordedType event.Type = "privacy.network_data_recorded.v1"
	// ExportRequestedType records an export; a clear envelope
	// (event.NewClear) whose event id is the export id. Payload:
	// ExportRequested.
	ExportRequestedType event.Type = "privacy.export_requested.v1"
)

// Browser families, the only trace of a user agent that is ever kept.
const (
	BrowserChrome  = "Chrome"
	BrowserFirefox = "Firefox"
	BrowserSafari  = "Safari"
	BrowserEdge    = "Edge"
	BrowserOther   = "Other"
)

// NetworkData is the coarse network data of a visitor: never a whole
// address, never a user agent.
type NetworkData struct {
	// IPPrefix is the client address truncated to its network, in CIDR
	// notation: a /24 for IPv4 ("203.0.113.0/24"), a /48 for IPv6
	// ("2001:db8:1::/48").
	IPPrefix string `json:"ip_prefix"`
	// Browser is one of the Browser* families.
	Browser string `json:"browser"`
}

// NetworkDataEntry is network data as exported: what was recorded, and when.
type NetworkDataEntry struct {
	NetworkData
	At time.Time `json:"at"`
}

// ExportRequested is the body of an ExportRequestedType event.
type ExportRequested struct {
	ExportID string `json:"export_id"`
	// By is who asked: the subject themself or a member of staff.
	By audit.Actor `json:"by"`
}

// Request kinds of a RequestEntry.
const (
	RequestExport  = "export"
	RequestErasure = "erasure"
)

// RequestEntry is one request a subject's data was the object of.
type RequestEntry struct {
	// Kind is RequestExport or RequestErasure.
	Kind string      `json:"kind"`
	ID   string      `json:"id"`
	At   time.Time   `json:"at"`
	By   audit.Actor `json:"by"`
}

// ExportResult is what the privacy service holds about a subject, under
// the export ExportID started At. Lists are oldest first and never nil.
// NetworkData is empty when none was collected, and also when the
// subject's keys expired, as it is then unreadable. Requests include the
// export that produced this result.
type ExportResult struct {
	ExportID    string             `json:"export_id"`
	At          time.Time          `json:"at"`
	Consents    []ConsentEntry     `json:"consents"`
	NetworkData []NetworkDataEntry `json:"network_data"`
	Requests    []RequestEntry     `json:"requests"`
}
