package event

import (
	"strings"
	"time"
)

// Author is who wrote or did something: a role and an opaque principal id.
type Author struct {
	Role string `json:"role"`
	ID   string `json:"id"`
}

// Opened is the payload of ConversationOpened. A conversation opens with its
// first message, so Text is that message and the event id is its id.
//
// EraseAfterCloseHours is the delay the visitor asked for, if any;
// EraseAfterCloseSeconds is the delay in effect, the visitor's or else the
// tenant's default at the time of opening, in seconds because a tenant's
// test settings count in seconds. Events stored before the seconds were
// recorded have the hours only; see EraseAfterClose.
type Opened struct {
	Stamped
	Visitor                string `json:"visitor"`
	Text                   string `json:"text"`
	EraseAfterCloseHours   int    `json:"erase_after_close_hours,omitempty"`
	EraseAfterCloseSeconds int    `json:"erase_after_close_seconds,omitempty"`
}

// EraseAfterClose is how long after it closes the conversation is erased; 0
// means never.
func (o Opened) EraseAfterClose() time.Duration {
	if o.EraseAfterCloseSeconds > 0 {
		return time.Duration(o.EraseAfterCloseSeconds) * time.Second
	}
	return time.Duration(o.EraseAfterCloseHours) * time.Hour
}

// Posted is the payload of MessagePosted; the event id is the message id.
type Posted struct {
	Stamped
	Author Author `json:"author"`
	Text   string `json:"text"`
}

// Assigned is the payload of ConversationAssigned.
type Assigned struct {
	Stamped
	Agent string `json:"agent"`
	By    Author `json:"by"`
}

// Closed is the payload of ConversationClosed.
type Closed struct {
	Stamped
	By Author `json:"by"`
}

// Rated is the payload of ConversationRated.
type Rated struct {
	Stamped
	Score int `json:"score"`
}

// Withdrawn is the payload of MessageWithdrawn: the visitor who wrote
// message Message, posted at PostedAt, withdrew it. The chat service deletes
// the posting's event from the store once this one is stored, so Withdrawn
// is all that is left of the message. Opening tells a withdrawal of the
// message that opened the conversation, whose event stays (the
// conversation is folded from it): readers show that one withdrawn where
// it stands instead of reading it from here. PostedSeq is the stream
// sequence the posting had (0 for the opening, and in withdrawals stored
// before it was recorded): a post repeated with the message's idempotency
// key answers it.
type Withdrawn struct {
	Stamped
	Message   string    `json:"message"`
	PostedAt  time.Time `json:"posted_at"`
	Opening   bool      `json:"opening,omitempty"`
	PostedSeq uint64    `json:"posted_seq,omitempty"`
}

// HandedOff is the payload of ConversationHandedOff: By (the visitor, or the bot the
// conversation was assigned to) asked for a person, which unassigns the
// conversation from its bot so that it reaches every agent. Its stamp
// names the bot as PreviousAssignee.
type HandedOff struct {
	Stamped
	By Author `json:"by"`
}

// NewPayload returns a pointer to a new payload of the chat event type typ,
// nil for any other type: the one place a chat event type is tied to its
// payload.
func NewPayload(typ Type) any {
	switch typ {
	case ConversationOpened:
		return &Opened{}
	case MessagePosted:
		return &Posted{}
	case ConversationAssigned:
		return &Assigned{}
	case ConversationClosed:
		return &Closed{}
	case ConversationRated:
		return &Rated{}
	case MessageWithdrawn:
		return &Withdrawn{}
	case ConversationHandedOff:
		return &HandedOff{}
	}
	return nil
}

// botPrefix marks a bot's id where an agent's would stand: the assignee of
// a conversation assigned to a bot is "bot:<id>", which no agent id can be
// (ids have no colon), so routing by assignee never mistakes one for the
// other.
const botPrefix = "bot:"

// BotAssignee is the assignee id of the bot id.
func BotAssignee(id string) string { return botPrefix + id }

// BotOf returns the bot id of assignee and true when assignee is a bot's.
func BotOf(assignee string) (string, bool) {
	id, ok := strings.CutPrefix(assignee, botPrefix)
	return id, ok && id != ""
}
