package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// conversation is a conversation as the API shows it.
type conversation struct {
	ID              string     `json:"id"`
	Status          string     `json:"status"`
	Assignee        *string    `json:"assignee"`
	Visitor         string     `json:"visitor"`
	Rating          *int       `json:"rating"`
	CreatedAt       time.Time  `json:"created_at"`
	LastMessageAt   time.Time  `json:"last_message_at"`
	ClosedAt        *time.Time `json:"closed_at"`
	FirstResponseAt *time.Time `json:"first_response_at"`
	// VisitorProfile is absent when the visitor gave none.
	VisitorProfile *chatapi.Profile `json:"visitor_profile,omitempty"`
}

func viewOf(s chatapi.Summary) conversation {
	return conversation{ID: s.ID, Status: s.Status, Assignee: s.Assignee, Visitor: s.Visitor, Rating: s.Rating,
		CreatedAt: s.CreatedAt, LastMessageAt: s.LastMessageAt, ClosedAt: s.ClosedAt, FirstResponseAt: s.FirstResponseAt,
		VisitorProfile: s.VisitorProfile}
}

// call sends one request to a service on behalf of p. An erased visitor's
// request is refused (checkErased) unless it asks for their erasure or how
// it went: the privacy service answers those, also after the erasure.
func (a *API) call(r *http.Request, subject string, p auth.Principal, args, resp any) error {
	if subject != privacyapi.EraseSubject && subject != privacyapi.ErasureStatusSubject {
		if err := a.checkErased(r.Context(), p); err != nil {
			return err
		}
	}
	return rpc.Call(r.Context(), a.cfg.NC, subject, rpc.Request[any]{Principal: p, Args: args}, resp)
}

// target returns the caller and the conversation named in the path.
func (a *API) target(r *http.Request) (auth.Principal, string, error) {
	p, err := a.member(r, false)
	if err != nil {
		return p, "", err
	}
	id := r.PathValue("id")
	if !stream.ValidToken(id) {
		return p, "", errUnknownConv
	}
	return p, id, nil
}

func (a *API) openConversation(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	// Decoded apart from chatapi.OpenArgs: the key comes in its header only.
	var body struct {
		Text                 string `json:"text"`
		EraseAfterCloseHours *int   `json:"erase_after_close_hours"`
	}
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	if err := checkTextSize(body.Text); err != nil {
		return err
	}
	var res chatapi.OpenResult
	args := chatapi.OpenArgs{Text: body.Text, EraseAfterCloseHours: body.EraseAfterCloseHours, IdempotencyKey: key}
	if err := a.call(r, chatapi.OpenSubject, p, args, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, res)
	return nil
}

// conversationPage is a page of GET /v1/conversations.
type conversationPage struct {
	Conversations []conversation `json:"conversations"`
	NextCursor    *string        `json:"next_cursor"`
}

// listConversations answers one page of the caller's conversations, newest
// first: in descending order of id (UUIDv7, time-ordered), which no
// activity changes, so paging neither misses nor repeats one; with
// ?status=open or closed, those of that status only.
func (a *API) listConversations(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	scope := cursorScope{Call: "conversations", Tenant: p.Tenant}
	pg, err := pageOf[string](r, scope)
	if err != nil {
		return err
	}
	status := r.URL.Query()["status"]
	if len(status) > 1 || len(status) == 1 && status[0] != chatapi.StatusOpen && status[0] != chatapi.StatusClosed {
		return errBadStatus
	}
	var res chatapi.ListResult
	if err := a.call(r, chatapi.ListSubject, p, chatapi.ListArgs{Page: pg, Status: r.URL.Query().Get("status")}, &res); err != nil {
		return err
	}
	out := conversationPage{Conversations: make([]conversation, len(res.Conversations)), NextCursor: nextCursor(scope, res.Next)}
	for i, s := range res.Conversations {
		out.Conversations[i] = viewOf(s)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// The bodies of the conversation calls that take one; closing takes an
// empty object or nothing. Their values are judged by the chat service,
// whose rules they are: the gateway decodes and passes them on.
type (
	postBody struct {
		Text string `json:"text"`
	}
	assignBody struct {
		AgentID  string `json:"agent_id"`
		BotID    string `json:"bot_id"`
		Override bool   `json:"override"`
	}
	ratingBody struct {
		Score int `json:"score"`
	}
)

func (a *API) postMessage(w http.ResponseWriter, r *http.Request) error {
	p, id, err := a.target(r)
	if err != nil {
		return err
	}
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var body postBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	if err := checkTextSize(body.Text); err != nil {
		return err
	}
	// The chat service's chatapi.PostResult is the API's answer as it is:
	// passed on as it came, not decoded and encoded again on every post.
	var res json.RawMessage
	if err := a.call(r, chatapi.PostSubject, p, chatapi.PostArgs{Conversation: id, Text: body.Text, IdempotencyKey: key}, &res); err != nil {
		return err
	}
	if v := jsontext.Value(res); v.Kind() != '{' || !v.IsValid() {
		return fmt.Errorf("decode %s result: not an object", chatapi.PostSubject)
	}
	writeJSONParts(w, http.StatusCreated, res, []byte{'\n'}) // ended as writeJSON ends it
	return nil
}

// messagesReply is the part of a chatapi.MessagesResult the gateway reads:
// the page's messages pass through as the chat service encoded them, in
// the API's shape already (chatapi.Message), checked but not decoded; so
// does the visitor's profile (chatapi.Profile).
type messagesReply struct {
	Messages       jsontext.Value `json:"messages"`
	VisitorProfile jsontext.Value `json:"visitor_profile"`
	Next           *uint64        `json:"next"`
}

// readMessagesReply reads chat's answer raw, whose messages and profile it
// returns as slices of raw, not copies (rawSpan).
func readMessagesReply(raw []byte) (messagesReply, error) {
	var spans struct {
		Messages       rawSpan `json:"messages"`
		VisitorProfile rawSpan `json:"visitor_profile"`
		Next           *uint64 `json:"next"`
	}
	if err := unmarshalReply(raw, &spans); err != nil {
		return messagesReply{}, err
	}
	return messagesReply{Messages: spans.Messages.in(raw), VisitorProfile: spans.VisitorProfile.in(raw), Next: spans.Next}, nil
}

// listMessages answers one page of a transcript, oldest first. Each page is
// one request to the chat service, which checks the caller's access to the
// conversation again, decides once for the whole page whether its visitor
// is erased, and audits a staff member's read of the page before answering.
func (a *API) listMessages(w http.ResponseWriter, r *http.Request) error {
	p, id, err := a.target(r)
	if err != nil {
		return err
	}
	scope := cursorScope{Call: "messages", Tenant: p.Tenant, Conversation: id}
	pg, err := pageOf[uint64](r, scope)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := a.call(r, chatapi.MessagesSubject, p, chatapi.MessagesArgs{Conversation: id, Page: pg}, &raw); err != nil {
		return err
	}
	res, err := readMessagesReply(raw)
	if err != nil {
		return fmt.Errorf("decode %s result: %w", chatapi.MessagesSubject, err)
	}
	switch res.Messages.Kind() {
	case '[':
	case 'n', 0: // none: an empty page
		res.Messages = jsontext.Value("[]")
	default:
		return fmt.Errorf("decode %s result: messages are not an array", chatapi.MessagesSubject)
	}
	// Written in parts, the messages as they are: the response's buffer
	// copies them once, where one answer built whole would copy them twice.
	tail := make([]byte, 0, len(res.VisitorProfile)+160)
	tail = append(tail, `,"next_cursor":`...)
	if next := nextCursor(scope, res.Next); next != nil {
		tail = strconv.AppendQuote(tail, *next) // base64url: nothing to escape
	} else {
		tail = append(tail, "null"...)
	}
	if res.VisitorProfile.Kind() == '{' { // absent when the visitor gave none
		tail = append(tail, `,"visitor_profile":`...)
		tail = append(tail, res.VisitorProfile...)
	}
	tail = append(tail, "}\n"...)
	writeJSONParts(w, http.StatusOK, []byte(`{"messages":`), res.Messages, tail)
	return nil
}

// withdrawMessage withdraws a message its visitor wrote: the chat service
// decides who may, and answers a repeated withdrawal as the first.
func (a *API) withdrawMessage(w http.ResponseWriter, r *http.Request) error {
	p, id, err := a.target(r)
	if err != nil {
		return err
	}
	msg := r.PathValue("message_id")
	if !stream.ValidToken(msg) {
		return errUnknownMsg
	}
	var res struct{}
	if err := a.call(r, chatapi.WithdrawSubject, p, chatapi.WithdrawArgs{Conversation: id, Message: msg}, &res); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// getConversation answers one conversation's summary to whoever finds it
// in their inbox; the chat service decides who that is.
func (a *API) getConversation(w http.ResponseWriter, r *http.Request) error {
	p, id, err := a.target(r)
	if err != nil {
		return err
	}
	return a.summary(w, r, chatapi.GetSubject, p, chatapi.ConversationArgs{Conversation: id})
}

func (a *API) assign(w http.ResponseWriter, r *http.Request) error {
	p, id, err := a.target(r)
	if err != nil {
		return err
	}
	var body assignBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	return a.summary(w, r, chatapi.AssignSubject, p, chatapi.AssignArgs{Conversation: id, Agent: body.AgentID, Bot: body.BotID, Override: body.Override})
}

// bodiless returns the handler of a conversation command that takes no
// body (none, or {}) and answers the conversation's summary: closing, and
// handing off to a person, whose who-may the chat service decides (the
// hand-off: the visitor, or the bot the conversation is assigned to,
// answered 200 also when there was no bot to hand off from).
func (a *API) bodiless(subject string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, id, err := a.target(r)
		if err != nil {
			return err
		}
		var body struct{}
		if err := decode(w, r, &body, true); err != nil {
			return err
		}
		return a.summary(w, r, subject, p, chatapi.ConversationArgs{Conversation: id})
	}
}

func (a *API) rate(w http.ResponseWriter, r *http.Request) error {
	p, id, err := a.target(r)
	if err != nil {
		return err
	}
	var body ratingBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	return a.summary(w, r, chatapi.RateSubject, p, chatapi.RateArgs{Conversation: id, Score: body.Score})
}

// summary calls a chat command that answers with the conversation's
// summary, and writes it.
func (a *API) summary(w http.ResponseWriter, r *http.Request, subject string, p auth.Principal, args any) error {
	var res chatapi.Summary
	if err := a.call(r, subject, p, args, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewOf(res))
	return nil
}
