// Package conversation is the chat domain: a conversation between one
// visitor and the support organisation, the rules of who may do what with
// it, and how its events fold into its state.
//
// The package is pure: it decides which events a command produces and
// applies stored events, but never stores, seals or fetches anything.
package conversation

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/stream"
)

// Errors of the rules. Their messages reach API clients, so they never hold
// personal data.
var (
	// ErrNotFound means the conversation has no events in the caller's tenant.
	ErrNotFound = errors.New("conversation not found")
	// ErrForbidden means the caller's role or relation to the conversation
	// does not allow the command or read.
	ErrForbidden = errors.New("not allowed")
	// ErrClosed means the command needs an open conversation.
	ErrClosed = errors.New("conversation is closed")
	// ErrNotClosed means the command needs a closed conversation.
	ErrNotClosed = errors.New("conversation is not closed")
	// ErrRated means the conversation was already rated.
	ErrRated = errors.New("conversation is already rated")
	// ErrErased means the conversation's visitor was erased: nothing more
	// can be written in it.
	ErrErased = errors.New("the visitor's data is erased")
	// ErrMessageNotFound means the conversation holds no message of that
	// id.
	ErrMessageNotFound = errors.New("message not found")
	// ErrTooManyOpen means the visitor has as many conversations open as
	// their tenant allows (see CheckOpen).
	ErrTooManyOpen = errors.New("too many open conversations; close one first")
	// ErrTooManyMessages means the conversation took as many messages in
	// the last minute as its tenant allows; a *PaceError says when the
	// next one may come.
	ErrTooManyMessages = errors.New("too many messages in this conversation; slow down")
)

// PaceError is ErrTooManyMessages with when the next message fits.
type PaceError struct {
	RetryAfter time.Duration
}

func (e *PaceError) Error() string { return ErrTooManyMessages.Error() }

func (e *PaceError) Unwrap() error { return ErrTooManyMessages }

// paceWindow is the span of a conversation's message limit.
const paceWindow = time.Minute

// ValidationError is a command argument with a value the rules reject.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// CheckID refuses an id that could name no one: a person's ids are NATS
// subject tokens (stream.ValidToken).
func CheckID(field, id string) error {
	if !stream.ValidToken(id) {
		return &ValidationError{Field: field, Reason: "want 1-64 of [A-Za-z0-9_-]"}
	}
	return nil
}

// Status is where a conversation is in its life.
type Status string

// The statuses, as the API names them.
const (
	Open   Status = chatapi.StatusOpen
	Closed Status = chatapi.StatusClosed
)

// maxEraseAfterCloseHours bounds the automatic erasure delay to ten years,
// the longest retention of the CHAT stream.
const maxEraseAfterCloseHours = 10 * 365 * 24

// Conversation is the state of one conversation, folded from its events.
// The zero value is a conversation with no events: one that does not exist.
type Conversation struct {
	ID      string
	Tenant  string
	Visitor string
	Status  Status
	// Assigned is true once an agent or a bot was assigned, until a
	// hand-off unassigns a bot. Assignee is that agent, or the bot's
	// event.BotAssignee, or empty when the assignment can no longer be read
	// (the visitor's key, which seals it, is gone).
	Assigned bool
	Assignee string
	Rated    bool
	// Score is the visitor's rating, 1 to 5, or 0 while unrated or when
	// it can no longer be read (it is sealed under the visitor's key).
	Score int
	// Erased is set once the visitor's keys are gone (see Erase).
	Erased bool
	// Responded is set once staff posted a message: the first such
	// message is the conversation's first response. A bot is no staff, so
	// its answers leave the first response to a person.
	Responded bool
	// FirstResponseAt is when staff first posted; zero until then.
	FirstResponseAt time.Time
	// EraseAfterClose is how long after it closes the conversation is
	// erased, as its opening recorded; 0 means never.
	EraseAfterClose time.Duration
	// OpeningWithdrawn is set once the visitor withdrew the message that
	// opened the conversation: its event stays in the store, since the
	// fold starts from it, so readers learn from here to show it withdrawn.
	// Unread once the visitor is erased, as the withdrawal is.
	OpeningWithdrawn bool

	CreatedAt     time.Time
	LastMessageAt time.Time
	// ClosedAt is when the conversation was closed; zero while open, and
	// for one closed by its visitor's erasure alone.
	ClosedAt time.Time
	// windowStart and inWindow are what the message limit counts: the
	// messages (the opening one included) since windowStart, and a window
	// starts with the first message at least paceWindow after the last
	// one started.
	windowStart time.Time
	inWindow    int
	// Version is the stream sequence of the last event applied: the
	// expected last subject sequence of the next append.
	Version uint64
}

// Change is one event a command decides to append: its type and a pointer
// to its payload, of the event package's type for it. Idempotency is the
// hash of an idempotency key the event carries in the clear
// (event.Envelope.Idempotency) other than its request's: a withdrawal
// carries its message's, so that a post repeated with the message's key
// finds the withdrawal once the posting's event is deleted.
type Change struct {
	Type        event.Type
	Payload     any
	Idempotency string
}

// Exists reports whether c has any event.
func (c *Conversation) Exists() bool { return c.Version > 0 }

// Apply folds the event e, stored at stream sequence seq, into c. payload is
// the decoded body (a pointer to the event package's payload type, see
// event.NewPayload) or nil when it cannot be read. Events at or
// below c.Version were applied already and are ignored, so applying is
// idempotent and Apply reports whether e changed c.
func (c *Conversation) Apply(seq uint64, e event.Envelope, payload any) bool {
	if seq <= c.Version {
		return false
	}
	if !c.Exists() {
		c.ID, c.Tenant, c.Visitor = e.Aggregate, e.Tenant, e.Person
		c.Status = Open
		c.CreatedAt, c.LastMessageAt = e.At, e.At
	}
	switch e.Type {
	case event.ConversationOpened:
		c.CreatedAt, c.LastMessageAt = e.At, e.At
		c.count(e.At)
		if o, ok := payload.(*event.Opened); ok {
			c.EraseAfterClose = o.EraseAfterClose()
		}
	case event.MessagePosted:
		c.LastMessageAt = e.At
		c.count(e.At)
		if p, ok := payload.(*event.Posted); ok && staff(p.Author) && !c.Responded {
			c.Responded = true
			c.FirstResponseAt = e.At
		}
	case event.ConversationAssigned:
		c.Assigned = true
		c.Assignee = ""
		// Once erased, an assignment still on its way stays unread, as it
		// would be in a rebuild.
		if a, ok := payload.(*event.Assigned); ok && !c.Erased {
			c.Assignee = a.Agent
		}
	case event.ConversationClosed:
		c.Status = Closed
		c.ClosedAt = e.At
	case event.ConversationRated:
		c.Rated = true
		if r, ok := payload.(*event.Rated); ok && !c.Erased {
			c.Score = r.Score
		}
	case event.ConversationHandedOff:
		// Whatever its payload says, a hand-off leaves the conversation to
		// every agent.
		c.Assigned, c.Assignee = false, ""
	case event.MessageWithdrawn:
		// Other withdrawals change no state: who wrote what is in the
		// transcript, which the store reads when asked.
		if w, ok := payload.(*event.Withdrawn); ok && w.Opening && !c.Erased {
			c.OpeningWithdrawn = true
		}
	}
	c.Version = seq
	return true
}

// Stamp seals into ch's payload what downstream needs of ch appended at at
// to c, as c's fold derives it: who the conversation is assigned to after
// it, and the facts of its history that ch completes (see event.Stamp).
// Call it on c as it is before ch, with at the time the event records.
func (c *Conversation) Stamp(ch Change, at time.Time) {
	st := event.Stamp{Assignee: c.Assignee}
	switch p := ch.Payload.(type) {
	case *event.Posted:
		if staff(p.Author) && !c.Responded {
			st.FirstResponseSeconds = secondsSince(c.CreatedAt, at)
		}
	case *event.Assigned:
		st.PreviousAssignee, st.Assignee = c.Assignee, p.Agent
	case *event.HandedOff:
		st.PreviousAssignee, st.Assignee = c.Assignee, ""
	case *event.Closed:
		st.OpenSeconds = secondsSince(c.CreatedAt, at)
		st.EraseAfterCloseSeconds = int((c.EraseAfterClose + time.Second - 1) / time.Second)
	}
	event.SetStamp(ch.Payload, st)
}

// secondsSince returns the seconds from start to at, never negative (the
// clocks of two chat instances may differ).
func secondsSince(start, at time.Time) *float64 {
	s := max(at.Sub(start).Seconds(), 0)
	return &s
}

// staff reports whether a is a member of the support organisation: not
// its visitor, nor a bot.
func staff(a event.Author) bool {
	return auth.Role(a.Role).Staff()
}

// count counts a message at in the message limit's window.
func (c *Conversation) count(at time.Time) {
	if at.Sub(c.windowStart) >= paceWindow {
		c.windowStart, c.inWindow = at, 0
	}
	c.inWindow++
}

// CheckOpen returns ErrTooManyOpen when a visitor with open conversations
// open may not open another under limit.
func CheckOpen(open, limit int) error {
	if open >= limit {
		return ErrTooManyOpen
	}
	return nil
}

// Erase marks the conversation as its visitor's erasure leaves it: closed,
// since nothing more can be written in it, and with neither assignee,
// rating score nor withdrawn opening, since the events holding them are
// sealed under the visitor's key. A conversation rebuilt from the stream after the erasure
// comes out the same.
func (c *Conversation) Erase() {
	c.Erased = true
	c.Status = Closed
	c.Assignee = ""
	c.Score = 0
	c.OpeningWithdrawn = false
}

// CheckActor returns ErrForbidden for roles that never read conversations:
// analysts, auditors and operators see pseudonymized metrics, the audit
// trail or tenants, never a conversation; a bot writes in the
// conversations assigned to it (CheckWriter) and reads only their
// transcripts (CanRead), never a list, a summary or an export.
func CheckActor(p auth.Principal) error {
	switch p.Role {
	case auth.RoleVisitor, auth.RoleAgent, auth.RoleSupervisor, auth.RoleAdmin:
		return nil
	}
	return ErrForbidden
}

// CheckWriter returns ErrForbidden for roles that never act on a
// conversation: those CheckActor refuses, but bots, which post in and hand
// off the conversations assigned to them.
func CheckWriter(p auth.Principal) error {
	if p.Role == auth.RoleBot {
		return nil
	}
	return CheckActor(p)
}

// ValidateText checks a message text: not blank, valid UTF-8, at most
// chatapi.MaxTextBytes.
func ValidateText(text string) error {
	switch {
	case strings.TrimSpace(text) == "":
		return &ValidationError{Field: "text", Reason: "must not be empty"}
	case len(text) > chatapi.MaxTextBytes:
		return &ValidationError{Field: "text", Reason: fmt.Sprintf("longer than %d bytes", chatapi.MaxTextBytes)}
	case !utf8.ValidString(text):
		return &ValidationError{Field: "text", Reason: "not valid UTF-8"}
	}
	return nil
}

// OpenWith decides the event that opens a conversation for visitor p with
// its first message. The conversation is erased eraseAfterCloseHours after
// it closes when the visitor chose a delay (0: never), and byDefault after
// it closes (the tenant's default; 0: never) when they did not.
func OpenWith(p auth.Principal, text string, eraseAfterCloseHours *int, byDefault time.Duration) (Change, error) {
	if p.Role != auth.RoleVisitor {
		return Change{}, ErrForbidden
	}
	if err := ValidateText(text); err != nil {
		return Change{}, err
	}
	// A new conversation has nothing to stamp but that it is unassigned.
	o := event.Opened{Stamped: event.Stamped{Stamp: &event.Stamp{}}, Visitor: p.ID, Text: text}
	if h := eraseAfterCloseHours; h != nil {
		if *h < 0 || *h > maxEraseAfterCloseHours {
			return Change{}, &ValidationError{Field: "erase_after_close_hours", Reason: fmt.Sprintf("must be 0 to %d", maxEraseAfterCloseHours)}
		}
		o.EraseAfterCloseHours = *h
		o.EraseAfterCloseSeconds = *h * int(time.Hour/time.Second)
	} else if byDefault > 0 {
		// Rounded up: a default of a fraction of a second still erases.
		o.EraseAfterCloseSeconds = int((byDefault + time.Second - 1) / time.Second)
	}
	return Change{Type: event.ConversationOpened, Payload: &o}, nil
}

// Post decides the events of p posting text at now: the conversation's
// visitor, its assigned agent, or an agent taking it while unassigned
// (which assigns it to them first). A conversation that took perMinute
// messages in its current window, a minute from the first message after the
// last window, refuses with a *PaceError until the window ends: never more
// than perMinute messages in one window, nor twice as many in any minute.
func (c *Conversation) Post(p auth.Principal, text string, now time.Time, perMinute int) ([]Change, error) {
	if err := c.writable(p); err != nil {
		return nil, err
	}
	if err := ValidateText(text); err != nil {
		return nil, err
	}
	if end := c.windowStart.Add(paceWindow); now.Before(end) && c.inWindow >= perMinute {
		return nil, &PaceError{RetryAfter: end.Sub(now)}
	}
	if err := c.postable(p); err != nil {
		return nil, err
	}
	var changes []Change
	if p.Role == auth.RoleAgent && !c.Assigned {
		changes = append(changes, Change{Type: event.ConversationAssigned, Payload: &event.Assigned{Agent: p.ID, By: author(p)}})
	}
	return append(changes, Change{Type: event.MessagePosted, Payload: &event.Posted{Author: author(p), Text: text}}), nil
}

// postable reports whether p's role and relation to the conversation let
// them post in it now: its visitor, the agent or bot it is assigned to
// (visible checks the bot's), or any agent while it is unassigned, while
// it is open.
func (c *Conversation) postable(p auth.Principal) error {
	switch p.Role {
	case auth.RoleVisitor, auth.RoleBot:
	case auth.RoleAgent:
		if c.Assigned && c.Assignee != p.ID {
			return ErrForbidden
		}
	default:
		return ErrForbidden
	}
	if c.Status == Closed {
		return ErrClosed
	}
	return nil
}

// CanType reports whether p may show the other side that they are typing:
// whoever may post in the conversation now (see Post), but a bot, which
// has no live stream to type on.
func (c *Conversation) CanType(p auth.Principal) error {
	if err := c.writable(p); err != nil {
		return err
	}
	if p.Role == auth.RoleBot {
		return ErrForbidden
	}
	return c.postable(p)
}

// Assign decides the event of p assigning the conversation to agent. An
// agent may only take an unassigned conversation (or one already theirs)
// for themselves; supervisors and admins assign to anyone. Assigning to the
// current assignee changes nothing.
func (c *Conversation) Assign(p auth.Principal, agent string) ([]Change, error) {
	if err := c.writable(p); err != nil {
		return nil, err
	}
	switch p.Role {
	case auth.RoleAgent:
		if agent != p.ID || (c.Assigned && c.Assignee != p.ID) {
			return nil, ErrForbidden
		}
	case auth.RoleSupervisor, auth.RoleAdmin:
		if err := CheckID("agent_id", agent); err != nil {
			return nil, err
		}
	default:
		return nil, ErrForbidden
	}
	return c.assignTo(p, agent)
}

// AssignBot decides the event of p assigning the conversation to the bot
// of id bot, whose assignee is event.BotAssignee(bot): supervisors and
// admins may. Whether the tenant registered such a bot is the caller's to
// check. Assigning to the current assignee changes nothing.
func (c *Conversation) AssignBot(p auth.Principal, bot string) ([]Change, error) {
	if err := c.writable(p); err != nil {
		return nil, err
	}
	if err := CanManageAgents(p); err != nil {
		return nil, err
	}
	if err := CheckID("bot_id", bot); err != nil {
		return nil, err
	}
	return c.assignTo(p, event.BotAssignee(bot))
}

// assignTo decides the assignment to assignee once p is allowed to make it.
func (c *Conversation) assignTo(p auth.Principal, assignee string) ([]Change, error) {
	if c.Status == Closed {
		return nil, ErrClosed
	}
	if c.assignedTo(assignee) {
		return nil, nil
	}
	return []Change{{Type: event.ConversationAssigned, Payload: &event.Assigned{Agent: assignee, By: author(p)}}}, nil
}

// HandOff decides the event of p asking for a person: the conversation's
// visitor, or the bot it is assigned to, while it is open. It unassigns
// the bot, so that the conversation reaches every agent; a conversation
// assigned to no bot is left as it is.
func (c *Conversation) HandOff(p auth.Principal) ([]Change, error) {
	if err := c.writable(p); err != nil {
		return nil, err
	}
	if p.Role != auth.RoleVisitor && p.Role != auth.RoleBot {
		return nil, ErrForbidden
	}
	if c.Status == Closed {
		return nil, ErrClosed
	}
	if _, ok := event.BotOf(c.Assignee); !ok || !c.Assigned {
		return nil, nil
	}
	return []Change{{Type: event.ConversationHandedOff, Payload: &event.HandedOff{By: author(p)}}}, nil
}

// Close decides the event of p closing the conversation: its visitor, its
// assigned agent, a supervisor or an admin may; its bot hands it off
// instead.
func (c *Conversation) Close(p auth.Principal) ([]Change, error) {
	if err := c.writable(p); err != nil {
		return nil, err
	}
	if p.Role == auth.RoleAgent && !c.assignedTo(p.ID) || p.Role == auth.RoleBot {
		return nil, ErrForbidden
	}
	if c.Status == Closed {
		return nil, ErrClosed
	}
	return []Change{{Type: event.ConversationClosed, Payload: &event.Closed{By: author(p)}}}, nil
}

// Rate decides the event of p rating the conversation: only its visitor,
// only once it is closed, only once, with a score of 1 to 5.
func (c *Conversation) Rate(p auth.Principal, score int) ([]Change, error) {
	if err := c.writable(p); err != nil {
		return nil, err
	}
	switch {
	case p.Role != auth.RoleVisitor:
		return nil, ErrForbidden
	case score < 1 || score > 5:
		return nil, &ValidationError{Field: "score", Reason: "must be 1 to 5"}
	case c.Status != Closed:
		return nil, ErrNotClosed
	case c.Rated:
		return nil, ErrRated
	}
	return []Change{{Type: event.ConversationRated, Payload: &event.Rated{Score: score}}}, nil
}

// Written is what the transcript says of one message, for Withdraw:
// whether it opened the conversation, who wrote it and when, and whether it
// was withdrawn already. A message posted after the opening also has the
// stream sequence of its posting, Seq, and the hash of the idempotency key
// it was posted with, Idempotency ("" without one), which its withdrawal
// keeps: the posting's event is deleted once the withdrawal is stored.
type Written struct {
	ID          string
	Opening     bool
	Author      event.Author
	At          time.Time
	Withdrawn   bool
	Seq         uint64
	Idempotency string
}

// Withdraw decides the event of p withdrawing message m, which the
// transcript holds: only the visitor who wrote it may, also once the
// conversation is closed (the right to rectification does not end with the
// conversation). A message withdrawn already changes nothing, so repeating
// a withdrawal is safe. The opening message is withdrawn too, its
// withdrawal marked as such: its event stays, since it opens the fold.
// Another message's withdrawal keeps what a repeat of its posting answers
// (see Written): the posting's sequence, and its idempotency key's hash.
func (c *Conversation) Withdraw(p auth.Principal, m Written) ([]Change, error) {
	if err := c.CanWithdraw(p); err != nil {
		return nil, err
	}
	switch {
	case m.ID == "":
		return nil, ErrMessageNotFound
	case m.Withdrawn:
		return nil, nil
	case m.Author != author(p):
		return nil, ErrForbidden
	}
	w := &event.Withdrawn{Message: m.ID, PostedAt: m.At, Opening: m.Opening}
	if m.Opening {
		return []Change{{Type: event.MessageWithdrawn, Payload: w}}, nil
	}
	w.PostedSeq = m.Seq
	return []Change{{Type: event.MessageWithdrawn, Payload: w, Idempotency: m.Idempotency}}, nil
}

// CanWithdraw reports whether p may withdraw any message of the
// conversation at all: only its visitor, until they are erased. Withdraw
// checks it first; a caller checks it before reading what Withdraw needs.
func (c *Conversation) CanWithdraw(p auth.Principal) error {
	if err := c.writable(p); err != nil {
		return err
	}
	if p.Role != auth.RoleVisitor {
		return ErrForbidden
	}
	return nil
}

// CanRead reports whether p may read the transcript: the visitor, the
// assigned agent, supervisors and admins; once the visitor is erased, any
// agent of the tenant, as Listed says, since whom it was assigned to can
// no longer be read and the transcript holds nothing but erased messages.
// A bot may read the transcript of a conversation assigned to it, so that
// one assigned after the opening knows the question: redacted, and only
// while the visitor's consent allows it, which the caller checks.
func (c *Conversation) CanRead(p auth.Principal) error {
	if err := c.visible(p); err != nil {
		return err
	}
	if p.Role == auth.RoleAgent && !c.Erased && !c.assignedTo(p.ID) {
		return ErrForbidden
	}
	return nil
}

// CanSee reports whether p may see the conversation's summary: whoever
// finds it in their inbox (see Listed), that is its visitor, an agent while
// it is unassigned or assigned to them, supervisors and admins.
func (c *Conversation) CanSee(p auth.Principal) error {
	if err := c.visible(p); err != nil {
		return err
	}
	if !c.Listed(p) {
		return ErrForbidden
	}
	return nil
}

// Listed reports whether the conversation belongs in p's inbox: a visitor's
// own, an agent's assigned or unassigned ones (not those assigned to a
// bot, until it is handed off), all for supervisors and admins; a bot has
// no inbox.
// An erased visitor's conversation is in every agent's: its assignment was
// sealed under the visitor's key, so it reads as unassigned (see Erase), and
// the agent who had it must still see that it was erased.
func (c *Conversation) Listed(p auth.Principal) bool {
	if c.Tenant != p.Tenant || !c.Exists() {
		return false
	}
	switch p.Role {
	case auth.RoleVisitor:
		return c.Visitor == p.ID
	case auth.RoleAgent:
		return !c.Assigned || c.Erased || c.Assignee == p.ID
	case auth.RoleSupervisor, auth.RoleAdmin:
		return true
	}
	return false
}

// visible is the first check of every command and read: the conversation
// exists in p's tenant, p has a conversation role, a visitor only ever
// reaches their own conversations and a bot only those assigned to it.
func (c *Conversation) visible(p auth.Principal) error {
	if err := CheckWriter(p); err != nil {
		return err
	}
	if !c.Exists() || c.Tenant != p.Tenant {
		return ErrNotFound
	}
	switch {
	case p.Role == auth.RoleVisitor && c.Visitor != p.ID,
		p.Role == auth.RoleBot && !c.assignedTo(event.BotAssignee(p.ID)):
		return ErrForbidden
	}
	return nil
}

// writable is the first check of every command: the conversation is
// visible to p, and its visitor not erased.
func (c *Conversation) writable(p auth.Principal) error {
	if err := c.visible(p); err != nil {
		return err
	}
	if c.Erased {
		return ErrErased
	}
	return nil
}

func (c *Conversation) assignedTo(agent string) bool {
	return c.Assigned && c.Assignee == agent
}

func author(p auth.Principal) event.Author {
	return event.Author{Role: string(p.Role), ID: p.ID}
}

// stored is Conversation as the chat service's view keeps it: every field,
// the message limit's window included, so a conversation restored from the
// view decides as one folded from its events.
type stored struct {
	ID               string    `json:"id"`
	Tenant           string    `json:"tenant"`
	Visitor          string    `json:"visitor"`
	Status           Status    `json:"status"`
	Assigned         bool      `json:"assigned,omitempty"`
	Assignee         string    `json:"assignee,omitempty"`
	Rated            bool      `json:"rated,omitempty"`
	Score            int       `json:"score,omitempty"`
	Erased           bool      `json:"erased,omitempty"`
	Responded        bool      `json:"responded,omitempty"`
	FirstResponse    time.Time `json:"first_response_at,omitzero"`
	EraseAfter       int64     `json:"erase_after_close_ns,omitempty"`
	OpeningWithdrawn bool      `json:"opening_withdrawn,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
	LastMessageAt    time.Time `json:"last_message_at"`
	ClosedAt         time.Time `json:"closed_at,omitzero"`
	WindowStart      time.Time `json:"window_start"`
	InWindow         int       `json:"in_window,omitempty"`
	Version          uint64    `json:"version"`
}

// MarshalJSON encodes every field of c, for the view.
func (c Conversation) MarshalJSON() ([]byte, error) {
	return json.Marshal(stored{c.ID, c.Tenant, c.Visitor, c.Status, c.Assigned, c.Assignee, c.Rated, c.Score, c.Erased,
		c.Responded, c.FirstResponseAt, int64(c.EraseAfterClose), c.OpeningWithdrawn, c.CreatedAt, c.LastMessageAt, c.ClosedAt,
		c.windowStart, c.inWindow, c.Version})
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (c *Conversation) UnmarshalJSON(b []byte) error {
	var s stored
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*c = Conversation{s.ID, s.Tenant, s.Visitor, s.Status, s.Assigned, s.Assignee, s.Rated, s.Score, s.Erased,
		s.Responded, s.FirstResponse, time.Duration(s.EraseAfter), s.OpeningWithdrawn, s.CreatedAt, s.LastMessageAt, s.ClosedAt,
		s.WindowStart, s.InWindow, s.Version}
	return nil
}
