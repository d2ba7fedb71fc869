package delivery

import (
	"time"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/redact"
)

// ErasedType is the type of the notice an integration receives when a
// visitor whose events it received is erased.
const ErasedType = "subject.erased.v1"

// Body is the JSON body of a delivery: a conversation event, or the
// erasure notice (Type ErasedType). Text is redacted (pkg/redact): no
// e-mail address, phone number, card number, IBAN or IP address leaves in
// clear.
type Body struct {
	// ID is the event's id (the notice's for an erasure), as in the
	// Parley-Delivery header.
	ID     string `json:"id"`
	Type   string `json:"type"`
	Tenant string `json:"tenant"`
	// ConversationID is absent from an erasure notice.
	ConversationID string `json:"conversation_id,omitempty"`
	VisitorID      string `json:"visitor_id"`
	// Seq is the event's position in the tenant's events, increasing.
	Seq uint64    `json:"seq,omitempty"`
	At  time.Time `json:"at"`
	// Author is who wrote the message or did the act, when there is one.
	Author *event.Author `json:"author,omitempty"`
	// Text is a message's text, redacted.
	Text *string `json:"text,omitempty"`
	// Assignee, on an assignment or a hand-off, is who the conversation
	// is assigned to after it ("" unassigned; "bot:<id>" a bot).
	Assignee *string `json:"assignee,omitempty"`
	// MessageID, on a withdrawal, is the message the visitor withdrew,
	// which the receiver deletes.
	MessageID string `json:"message_id,omitempty"`
	// ErasureID names the erasure of an erasure notice.
	ErasureID string `json:"erasure_id,omitempty"`
}

// bodyOf returns the body delivering e, stored at seq, whose payload is
// decoded and stamped with st (nil for none).
func bodyOf(e event.Envelope, seq uint64, payload any, st *event.Stamp) Body {
	b := Body{ID: e.ID, Type: string(e.Type), Tenant: e.Tenant, ConversationID: e.Aggregate,
		VisitorID: e.Person, Seq: seq, At: e.At.UTC()}
	text := func(t string) *string {
		r := redact.String(t)
		return &r
	}
	switch p := payload.(type) {
	case *event.Opened:
		b.Author, b.Text = &event.Author{Role: "visitor", ID: e.Person}, text(p.Text)
	case *event.Posted:
		b.Author, b.Text = &p.Author, text(p.Text)
	case *event.Assigned:
		b.Author = &p.By
	case *event.Closed:
		b.Author = &p.By
	case *event.HandedOff:
		b.Author = &p.By
	case *event.Withdrawn:
		b.Author, b.MessageID = &event.Author{Role: "visitor", ID: e.Person}, p.Message
	}
	if st != nil && (e.Type == event.ConversationAssigned || st.PreviousAssignee != "") {
		b.Assignee = &st.Assignee
	}
	return b
}
