package privacyapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/seal"
)

// TrainingExportSubject starts a training export of the principal's
// tenant: the redacted, pseudonymized messages of the visitors who gave
// their `ai` consent, for training models. The privacy service audits it
// (audit action "training.export", target "training_export:<id>") and
// records it in the PRIVACY stream (TrainingExportRequestedType, on the
// admin's subject) before it answers: an export that could not be audited
// does not happen. Its lines follow from TrainingPageSubject.
//
// Request: rpc.Request[TenantArgs]. Result: TrainingExport. Who: an admin
// of the tenant.
//
// Errors: rpc.CodeInvalid for a malformed tenant; rpc.CodeForbidden for
// any other principal or another tenant; rpc.CodeUnavailable when the
// store or the audit trail cannot be reached.
const TrainingExportSubject = "parley.privacy.training.export"

// TrainingPageSubject answers one page of a training export started with
// TrainingExportSubject. The privacy service reads the tenant's events
// from CHAT itself, in stream order up to the last one stored when the
// export started, and opens each with its visitor's keys: a message is
// exported only when its visitor's `ai` consent held when it was written
// and still holds at the export's start, and the visitor is not erased.
// Its text is redacted (pkg/redact) and every id is a TrainingPseudonym.
//
// The messages come first, then the manifest: a caller asks again with
// After = the previous page's Next until Next is nil (chatapi.ReadPages).
// A page holds at most chatapi.PageBytes of JSON and may be empty while
// Next is not nil (a stretch of the stream with nothing to export).
//
// Request: rpc.Request[TrainingPageArgs]. Result: TrainingPage. Who: the
// admin who started the export, within ExportPagesWithin of its start.
//
// Errors: rpc.CodeInvalid for a malformed argument; rpc.CodeForbidden for
// any other principal; rpc.CodeNotFound when the principal started no
// such export in that time; rpc.CodeUnavailable when CHAT or the key
// store cannot be read.
const TrainingPageSubject = "parley.privacy.training.page"

// TrainingExportRequestedType records a training export in PRIVACY: a
// clear envelope (event.NewClear) on the subject of the admin who asked,
// whose event id is the export id. Payload: TrainingExportRequested.
const TrainingExportRequestedType event.Type = "privacy.training_export_requested.v1"

// TrainingExportRequested is the body of a TrainingExportRequestedType
// event: who asked, and the last CHAT sequence the export reads (0: CHAT
// held nothing).
type TrainingExportRequested struct {
	ExportID string      `json:"export_id"`
	By       audit.Actor `json:"by"`
	Through  uint64      `json:"through"`
}

// TrainingExport names a training export just started.
type TrainingExport struct {
	ExportID string `json:"export_id"`
}

// TrainingCursor is where the next page of a training export starts:
// after the CHAT event of sequence Seq while Manifest is false; after the
// PRIVACY event of sequence Seq once it is true.
type TrainingCursor struct {
	Seq      uint64 `json:"seq,omitempty"`
	Manifest bool   `json:"manifest,omitempty"`
	// Visitor is where versions before the manifest was read from PRIVACY
	// went on from; it is kept so that a gateway hands such a cursor back
	// whole during an upgrade.
	Visitor string `json:"visitor,omitempty"`
}

// TrainingPageArgs asks for the page after After (nil: the first) of the
// training export ExportID of Tenant.
type TrainingPageArgs struct {
	Tenant   string          `json:"tenant"`
	ExportID string          `json:"export_id"`
	After    *TrainingCursor `json:"after,omitempty"`
}

// TrainingPage is one page of a training export: lines of messages, then,
// on the pages after the last message, the visitors of the manifest. A
// page holds one kind or the other, never both.
type TrainingPage struct {
	Messages []TrainingMessage `json:"messages"`
	// Visitors are pseudonyms of the manifest. The pages take the
	// visitors in the order of their ids (UUIDv7: of their registration),
	// each page's pseudonyms sorted, so the order tells no more than which
	// page's worth of registrations a visitor was among.
	Visitors []string `json:"visitors"`
	// Next is the cursor of the next page; nil on the last one.
	Next *TrainingCursor `json:"next,omitempty"`
}

// TrainingMessage is one message of a training export: no raw id, no
// time (a time would join it to the analytics facts of the same event),
// the text redacted. A conversation's messages come in the order they
// were written, interleaved with other conversations'.
type TrainingMessage struct {
	// Conversation and Visitor are TrainingPseudonyms under the visitor's
	// pseudonym key.
	Conversation string `json:"conversation"`
	Visitor      string `json:"visitor"`
	// Role is the author's role: visitor, agent or bot (auth roles of
	// staff are all "agent" here: who on the staff wrote is not given).
	Role string `json:"role"`
	Text string `json:"text"`
}

// trainingLabel keeps training pseudonyms apart from analytics ones
// (analyticsapi.Pseudonym, HMAC of the bare id under the same key): the
// two are different functions of the id, so a training corpus and the
// analytics store share no value to join on.
const trainingLabel = "parley/training/v1\x00"

// TrainingPseudonym returns the pseudonym of id in a training export
// under a subject's pseudonym key: the hex of HMAC-SHA256(key,
// "parley/training/v1" NUL id). Like an analytics pseudonym it dies with
// the key on erasure; unlike it, it cannot be matched against analytics.
func TrainingPseudonym(key seal.Key, id string) string {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(trainingLabel))
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}
