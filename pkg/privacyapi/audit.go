package privacyapi

import (
	"crypto/ed25519"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
)

// Audit subjects, served by the privacy service in queue group Queue. The
// privacy service is the only writer of the AUDIT stream, so each tenant's
// hash chain stays whole however many services report acts at once.
const (
	// AppendAuditSubject appends an act to the tenant's audit trail. The
	// service stamps the time, links the entry into the chain and stores it
	// on audit.Subject(tenant) before answering.
	//
	// An internal endpoint: Request: rpc.Request[AppendAuditArgs] with
	// the calling service's system principal (auth.System), the only one
	// accepted; only the services that serve acts may publish here, by
	// their bus permissions. The actor is the principal that service
	// served. Result: audit.Entry as stored.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant, an unknown role, a
	// malformed actor id, an action that is not 1 to 64 of [a-z0-9._], or a
	// target that is empty, longer than 256 bytes or not printable ASCII;
	// rpc.CodeUnavailable when the store cannot be reached.
	AppendAuditSubject = "parley.internal.privacy.audit.append"

	// ListAuditSubject lists a tenant's audit entries, oldest first.
	//
	// Request: rpc.Request[ListAuditArgs]. Result: ListAuditResult. Who: an
	// auditor or an admin of the tenant.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant; rpc.CodeForbidden for
	// any other role or another tenant.
	ListAuditSubject = "parley.privacy.audit.list"

	// AuditCheckpointSubject answers the tenant's latest signed checkpoint
	// of its audit chain, and the public key that verifies it, for the
	// auditor to keep apart from Parley: `parley audit verify
	// --checkpoint` then shows whether entries were removed since.
	//
	// Request: rpc.Request[TenantArgs]. Result: AuditCheckpointResult.
	// Who: an auditor or an admin of the tenant.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant; rpc.CodeForbidden for
	// any other role or another tenant; rpc.CodeInternal when the stored
	// checkpoint does not verify.
	AuditCheckpointSubject = "parley.privacy.audit.checkpoint"

	// AuditStreamSubject writes the caller's opening of the live stream to
	// the audit trail (audit.ActionStreamOpen): the gateway asks it before
	// it sends a member of staff's stream anything, and refuses the stream
	// when it fails. The actor is the caller, the target what their role
	// is shown live, so the gateway names no actor and no act but this.
	//
	// Request: rpc.Request[AuditStreamArgs]. Result: audit.Entry as
	// stored. Who: an agent, a supervisor or an admin of the tenant.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant; rpc.CodeForbidden
	// for any other role or another tenant; rpc.CodeUnavailable when the
	// store cannot be reached.
	AuditStreamSubject = "parley.privacy.audit.stream"
)

// AuditStreamArgs is a live stream being opened: Since is the sequence it
// replays from, nil when it replays nothing.
type AuditStreamArgs struct {
	Tenant string  `json:"tenant"`
	Since  *uint64 `json:"since,omitempty"`
}

// AuditCheckpointResult is the tenant's latest audit checkpoint, nil when
// nothing of the tenant was audited yet, and the Ed25519 public key of the
// privacy service's audit key (base64 in JSON), which verifies it.
type AuditCheckpointResult struct {
	Checkpoint *audit.Checkpoint `json:"checkpoint"`
	PublicKey  ed25519.PublicKey `json:"public_key"`
}

// MaxAuditEntries is the most entries one ListAudit answer holds.
const MaxAuditEntries = 1000

// AppendAuditArgs is one act to record: who did what to which target.
type AppendAuditArgs struct {
	Tenant string      `json:"tenant"`
	Actor  audit.Actor `json:"actor"`
	Action string      `json:"action"`
	Target string      `json:"target"`
}

// ListAuditArgs asks for the entries stored at or after Since (all of them
// when zero).
type ListAuditArgs struct {
	Tenant string    `json:"tenant"`
	Since  time.Time `json:"since"`
}

// ListAuditResult holds up to MaxAuditEntries entries, oldest first. More
// says there are later ones: ask again with Since set to the last entry's
// At, and skip the entries already seen (same Hash).
type ListAuditResult struct {
	Entries []audit.Entry `json:"entries"`
	More    bool          `json:"more"`
}
