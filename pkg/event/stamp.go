package event

// Stamp is what the chat service's fold of a conversation knows once an
// event is applied to it: how the event is routed and the facts derived
// from the conversation's history. Chat seals it into the payload of every
// chat event it appends (never into a header, which is in clear), so that
// the consumers of CHAT — the gateway's live hub, the privacy relay — read
// it off the event instead of folding the conversation again or asking
// chat.
//
// Events appended before stamps existed carry none: their payload's Stamp
// is nil, and each consumer says what it does with them.
type Stamp struct {
	// Assignee is the agent (or bot) the conversation is assigned to once the event
	// is applied; "" while it is unassigned.
	Assignee string `json:"assignee,omitempty"`
	// PreviousAssignee, on an assignment or a hand-off, is the agent (or
	// bot, BotAssignee) it was assigned to before; "" when it was
	// unassigned.
	PreviousAssignee string `json:"previous_assignee,omitempty"`
	// FirstResponseSeconds, on the conversation's first message by staff,
	// is the time from its opening to that message.
	FirstResponseSeconds *float64 `json:"first_response_seconds,omitempty"`
	// OpenSeconds, on its closing, is the time from its opening to its
	// closing.
	OpenSeconds *float64 `json:"open_seconds,omitempty"`
	// EraseAfterCloseSeconds, on its closing, is how long after it the
	// conversation is erased, as its opening recorded (see
	// Opened.EraseAfterClose); 0 means never.
	EraseAfterCloseSeconds int `json:"erase_after_close_seconds,omitempty"`
}

// Stamped holds the Stamp of a chat payload; every chat payload type
// embeds it.
type Stamped struct {
	Stamp *Stamp `json:"stamp,omitempty"`
}

func (s *Stamped) stamped() *Stamped { return s }

type stamper interface{ stamped() *Stamped }

// StampOf returns the stamp of payload, a pointer to a chat payload type;
// nil when it has none (stored before stamps, or not a chat payload).
func StampOf(payload any) *Stamp {
	if p, ok := payload.(stamper); ok {
		return p.stamped().Stamp
	}
	return nil
}

// SetStamp stamps payload, a pointer to a chat payload type, with st. It
// reports false, and changes nothing, for any other payload.
func SetStamp(payload any, st Stamp) bool {
	p, ok := payload.(stamper)
	if ok {
		p.stamped().Stamp = &st
	}
	return ok
}
