package chatapi

// ExportSubject answers every conversation of a visitor with its messages,
// decrypted, for the visitor's export. Only the chat service decrypts chat
// content; the privacy service, which owns the export, records and audits
// it, then asks here page by page on behalf of whoever asked for it
// (privacyapi.ExportPageSubject).
//
// Request: rpc.Request[ExportArgs]. Result: ExportResult. Who: the visitor
// themself, or an admin of the visitor's tenant.
//
// A history can be far larger than one bus message, so the answer comes in
// pages of at most PageBytes: a caller asks again with After = the
// previous page's Next until Next is nil. A conversation split between
// pages appears in each, with the next part of its messages.
//
// Errors: rpc.CodeInvalid for a malformed visitor id; rpc.CodeForbidden
// for any other principal; rpc.CodeGone when the visitor has conversations
// but no keys any more (erased).
const ExportSubject = "parley.chat.export"

// ExportArgs names the visitor to export, and where the page starts.
type ExportArgs struct {
	Visitor string        `json:"visitor"`
	After   *ExportCursor `json:"after,omitempty"`
}

// ExportCursor is where the next export page starts: after the message of
// stream sequence Seq in conversation Conversation (Seq 0: at its start).
type ExportCursor struct {
	Conversation string `json:"conversation"`
	Seq          uint64 `json:"seq"`
}

// ExportedConversation is one conversation with its transcript.
type ExportedConversation struct {
	Summary
	Messages []Message `json:"messages"`
}

// ExportResult is a visitor's conversations, oldest first; empty, never
// nil, for a visitor who never opened one.
type ExportResult struct {
	// Profile, on the first page only, is the profile the visitor gave
	// themself; nil when none.
	Profile       *Profile               `json:"profile,omitempty"`
	Conversations []ExportedConversation `json:"conversations"`
	// Next is the cursor of the next page; nil on the last one.
	Next *ExportCursor `json:"next,omitempty"`
}
