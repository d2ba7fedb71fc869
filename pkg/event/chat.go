package event

import "time"

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
	Author Author `json:"author"`
	Text   string `json:"text"`
}

// Assigned is the payload of ConversationAssigned.
type Assigned struct {
	Agent string `json:"agent"`
	By    Author `json:"by"`
}

// Closed is the payload of ConversationClosed.
type Closed struct {
	By Author `json:"by"`
}

// Rated is the payload of ConversationRated.
type Rated struct {
	Score int `json:"score"`
}
