// Package chatapi is the bus contract of the chat service: the request/reply
// subjects the gateway calls and their arguments and results. Every request
// is an rpc.Request carrying the verified principal; the chat service decides
// what that principal may do with a conversation.
package chatapi

import (
	"time"

	"github.com/parley-chat/parley/pkg/event"
)

// Request/reply subjects, served by the chat service in queue group Queue.
const (
	OpenSubject     = "parley.chat.open"     // OpenArgs → OpenResult
	PostSubject     = "parley.chat.post"     // PostArgs → PostResult
	AssignSubject   = "parley.chat.assign"   // AssignArgs → Summary
	HandOffSubject  = "parley.chat.handoff"  // ConversationArgs → Summary: ask for a person (the visitor, or the bot assigned)
	CloseSubject    = "parley.chat.close"    // ConversationArgs → Summary
	RateSubject     = "parley.chat.rate"     // RateArgs → Summary
	ListSubject     = "parley.chat.list"     // ListArgs → ListResult
	MessagesSubject = "parley.chat.messages" // MessagesArgs → MessagesResult (to the bot assigned: redacted, with ai consent)
	GetSubject      = "parley.chat.get"      // ConversationArgs → Summary
	// TypingSubject answers whether the principal may show that they are
	// typing in the conversation, with its summary (whose visitor and
	// assignee say who sees it); refused as a post would be.
	TypingSubject = "parley.chat.typing" // ConversationArgs → Summary
	// PresenceSubject sets the principal's own presence (an agent's).
	PresenceSubject = "parley.chat.presence" // PresenceArgs → Availability
	// CapacitySubject sets an agent's capacity (supervisors, admins).
	CapacitySubject = "parley.chat.capacity" // CapacityArgs → Availability
	// AvailabilitySubject reads an agent's presence, capacity and open
	// conversations (the agent themself, supervisors, admins).
	AvailabilitySubject = "parley.chat.availability" // AgentArgs → Availability
	// WithdrawSubject withdraws a message its visitor wrote: WithdrawArgs →
	// struct{}. Repeating it changes nothing and answers the same.
	WithdrawSubject = "parley.chat.withdraw"

	Queue = "chat"
	// Service names the chat service for discovery (`nats micro ls`).
	Service = "parley-chat"
)

// Internal subjects, served by the chat service in queue group Queue for
// other services only: the request's principal must be the system
// principal (auth.System), and only the services named may publish here,
// by their bus permissions (pkg/buspolicy).
const (
	// VisitorConversationsSubject lists, a page at a time, the
	// conversations of a visitor of the principal's tenant, as the visitor
	// would see them (ListArgs), for the privacy service's erasure after
	// close and expiry to tell whether anything of theirs is left.
	// rpc.Request[VisitorConversationsArgs] → ListResult.
	VisitorConversationsSubject = "parley.internal.chat.visitor.conversations"
)

// TypingSignals are the subjects of typing signals, one per conversation
// (TypingSignal), published by the gateway instance a client typed on and
// followed by every gateway instance, on core NATS only: no stream holds
// them, so they are never stored nor relayed to analytics.
const TypingSignals = "parley.typing.>"

// TypingSignal is the subject of the typing signals of a conversation.
func TypingSignal(tenant, conversation string) string {
	return "parley.typing." + tenant + "." + conversation
}

// Typed is the body of a typing signal: who typed in which conversation,
// and who sees it, as the chat service answered on TypingSubject. It holds
// no text.
type Typed struct {
	Tenant       string       `json:"tenant"`
	Conversation string       `json:"conversation_id"`
	Visitor      string       `json:"visitor"`
	Assignee     string       `json:"assignee,omitempty"`
	Author       event.Author `json:"author"`
}

// VisitorConversationsArgs asks for one page of a visitor's conversations.
type VisitorConversationsArgs struct {
	Visitor string       `json:"visitor"`
	Page    Page[string] `json:"page"`
}

// MaxTextBytes is the largest message text accepted, in bytes of UTF-8.
const MaxTextBytes = 64 << 10

// Conversation statuses.
const (
	StatusOpen   = "open"
	StatusClosed = "closed"
)

// OpenArgs opens a conversation with its first message. The principal must
// be a visitor. EraseAfterCloseHours, when set, asks for the conversation to
// be erased that long after it closes.
type OpenArgs struct {
	Text                 string `json:"text"`
	EraseAfterCloseHours *int   `json:"erase_after_close_hours,omitempty"`
	// IdempotencyKey, when set, makes the opening safe to repeat: see
	// ValidIdempotencyKey.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// OpenResult names the new conversation.
type OpenResult struct {
	ID string `json:"id"`
}

// PostArgs posts a message.
type PostArgs struct {
	Conversation string `json:"conversation"`
	Text         string `json:"text"`
	// IdempotencyKey, when set, makes the post safe to repeat: see
	// ValidIdempotencyKey.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// MaxIdempotencyKeyLen is the longest Idempotency-Key accepted.
const MaxIdempotencyKeyLen = 128

// ValidIdempotencyKey reports whether k is an acceptable idempotency key: 1
// to MaxIdempotencyKeyLen printable ASCII characters, no spaces (a UUID is
// one). A request (OpenArgs, PostArgs) repeated by the same principal with
// the same key answers what the first answered and stores nothing again,
// also when the first was stored after its caller gave up waiting; the
// same key with other arguments, or on another command, is refused as
// invalid.
func ValidIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > MaxIdempotencyKeyLen {
		return false
	}
	for i := range len(k) {
		if k[i] < '!' || k[i] > '~' {
			return false
		}
	}
	return true
}

// PostResult identifies the stored message: its id, the stream sequence of
// its event, and when it was posted.
type PostResult struct {
	ID  string    `json:"id"`
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
}

// AssignArgs assigns a conversation to an agent, or with Bot set (and no
// Agent) to a bot the tenant registered, whose assignee is then
// event.BotAssignee(Bot). An assignment to an agent who is away, or who
// holds as many open conversations as their capacity, is refused unless
// Override is set, which only supervisors and admins may.
type AssignArgs struct {
	Conversation string `json:"conversation"`
	Agent        string `json:"agent_id"`
	Bot          string `json:"bot_id,omitempty"`
	Override     bool   `json:"override,omitempty"`
}

// Agent presences.
const (
	PresenceOnline = "online"
	PresenceAway   = "away"
)

// MaxCapacity is the largest capacity an agent may be given.
const MaxCapacity = 10000

// PresenceArgs sets the principal's presence, PresenceOnline or
// PresenceAway.
type PresenceArgs struct {
	Status string `json:"status"`
}

// CapacityArgs sets how many open conversations may be assigned to an
// agent: 0 to MaxCapacity, nil for no bound.
type CapacityArgs struct {
	Agent   string `json:"agent_id"`
	MaxOpen *int   `json:"max_open"`
}

// AgentArgs names an agent.
type AgentArgs struct {
	Agent string `json:"agent_id"`
}

// Availability is what assigning to an agent goes by: their presence
// (online until they set one), their capacity (nil: no bound) and how many
// open conversations are assigned to them.
type Availability struct {
	Agent    string     `json:"agent_id"`
	Status   string     `json:"status"`
	MaxOpen  *int       `json:"max_open"`
	Open     int        `json:"open"`
	StatusAt *time.Time `json:"status_at"`
}

// ConversationArgs names one conversation.
type ConversationArgs struct {
	Conversation string `json:"conversation"`
}

// RateArgs rates a closed conversation, 1 to 5.
type RateArgs struct {
	Conversation string `json:"conversation"`
	Score        int    `json:"score"`
}

// ListArgs asks for one page of the conversations the principal may see,
// in descending order of id, the cursor being the last id of the previous
// page. Ids are UUIDv7, so this is newest conversation first, and ids never
// change, so a conversation whose activity changes between two pages is
// neither missed nor listed twice; one opened meanwhile sorts before the
// first page and is not listed. The zero Page (or none sent) asks for the
// first page. Status, when set, lists only the conversations of that status
// (StatusOpen or StatusClosed); empty lists both.
type ListArgs struct {
	Page   Page[string] `json:"page"`
	Status string       `json:"status,omitempty"`
}

// Summary is a conversation's state without its content. Assignee is nil
// while unassigned; Rating (1 to 5) while unrated or once its visitor is
// erased; ClosedAt while open (and for a conversation closed by its
// visitor's erasure alone); FirstResponseAt until staff first posted.
type Summary struct {
	ID              string     `json:"id"`
	Tenant          string     `json:"tenant"`
	Visitor         string     `json:"visitor"`
	Status          string     `json:"status"`
	Assignee        *string    `json:"assignee"`
	Rating          *int       `json:"rating"`
	CreatedAt       time.Time  `json:"created_at"`
	LastMessageAt   time.Time  `json:"last_message_at"`
	ClosedAt        *time.Time `json:"closed_at"`
	FirstResponseAt *time.Time `json:"first_response_at"`
	// VisitorProfile is the profile the visitor gave themself; nil when
	// they gave none, removed it, or were erased.
	VisitorProfile *Profile `json:"visitor_profile,omitempty"`
}

// ListResult is one page of the principal's conversations, in descending
// order of id.
type ListResult struct {
	Conversations []Summary `json:"conversations"`
	// Next is the cursor of the next page, nil on the last one.
	Next *string `json:"next,omitempty"`
}

// Message is one message of a transcript. Text is nil and Erased true once
// the key it was sealed under is destroyed; Text is nil and Withdrawn true
// once its author withdrew it.
type Message struct {
	ID  string `json:"id"`
	Seq uint64 `json:"seq"`
	// Author and Text are nil once the visitor is erased: both were sealed
	// under the visitor's key.
	Author *event.Author `json:"author"`
	Text   *string       `json:"text"`
	At     time.Time     `json:"at"`
	Erased bool          `json:"erased"`
	// Withdrawn is set, and Text nil, once its author withdrew it: the
	// line stands where it was withdrawn (Seq is the withdrawal's), with
	// the message's id and when it was posted.
	Withdrawn bool `json:"withdrawn,omitempty"`
	// HandedOff is set on the line of a hand-off: Author (the visitor, or
	// the bot) asked for a person At; its Text is nil and ID the
	// hand-off's own.
	HandedOff bool `json:"handed_off,omitempty"`
}

// WithdrawArgs names a message to withdraw.
type WithdrawArgs struct {
	Conversation string `json:"conversation"`
	Message      string `json:"message"`
}

// MessagesArgs asks for one page of a conversation's transcript, the
// cursor being the stream sequence (Message.Seq) of the last message of
// the previous page. The zero Page (or none sent) asks for the first page.
type MessagesArgs struct {
	Conversation string       `json:"conversation"`
	Page         Page[uint64] `json:"page"`
}

// MessagesResult is one page of a conversation's transcript, oldest first.
type MessagesResult struct {
	Messages []Message `json:"messages"`
	// VisitorProfile is the profile the visitor gave themself, as
	// Summary.VisitorProfile; never in a bot's page.
	VisitorProfile *Profile `json:"visitor_profile,omitempty"`
	// Next is the cursor of the next page, nil on the last one.
	Next *uint64 `json:"next,omitempty"`
}
