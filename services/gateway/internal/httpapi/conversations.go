package httpapi

import (
	"net/http"
	"slices"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// maxEraseAfterCloseHours is ten years, the longest retention of the CHAT
// stream.
const maxEraseAfterCloseHours = 10 * 365 * 24

// conversation is a conversation as the API shows it.
type conversation struct {
	ID            string    `json:"id"`
	Status        string    `json:"status"`
	Assignee      *string   `json:"assignee"`
	Visitor       string    `json:"visitor"`
	CreatedAt     time.Time `json:"created_at"`
	LastMessageAt time.Time `json:"last_message_at"`
}

func viewOf(s chatapi.Summary) conversation {
	return conversation{ID: s.ID, Status: s.Status, Assignee: s.Assignee, Visitor: s.Visitor, CreatedAt: s.CreatedAt, LastMessageAt: s.LastMessageAt}
}

// call sends one request to the chat service on behalf of p.
func (a *API) call(r *http.Request, subject string, p auth.Principal, args, resp any) error {
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
	var body chatapi.OpenArgs
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	if err := checkText(body.Text); err != nil {
		return err
	}
	if h := body.EraseAfterCloseHours; h != nil && (*h < 1 || *h > maxEraseAfterCloseHours) {
		return invalid("erase_after_close_hours must be between 1 and 87600")
	}
	var res chatapi.OpenResult
	if err := a.call(r, chatapi.OpenSubject, p, body, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, res)
	return nil
}

func (a *API) listConversations(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, false)
	if err != nil {
		return err
	}
	// The pages come in order of id, which no activity changes, so that none
	// is missed or listed twice; the inbox is newest activity first.
	var convs []chatapi.Summary
	err = paged(a, r, chatapi.ListSubject, p,
		func(after *string) any { return chatapi.ListArgs{Page: chatapi.PageAfter(after)} },
		func(res chatapi.ListResult) *string {
			convs = append(convs, res.Conversations...)
			return res.Next
		})
	if err != nil {
		return err
	}
	slices.SortFunc(convs, chatapi.ByActivity)
	out := make([]conversation, len(convs))
	for i, s := range convs {
		out[i] = viewOf(s)
	}
	writeJSON(w, http.StatusOK, map[string][]conversation{"conversations": out})
	return nil
}

// The bodies of the conversation calls that take one; opening takes
// chatapi.OpenArgs, closing an empty object or nothing.
type (
	postBody struct {
		Text string `json:"text"`
	}
	assignBody struct {
		AgentID string `json:"agent_id"`
	}
	ratingBody struct {
		Score *int `json:"score"`
	}
)

func (a *API) postMessage(w http.ResponseWriter, r *http.Request) error {
	p, id, err := a.target(r)
	if err != nil {
		return err
	}
	var body postBody
	if err := decode(w, r, &body, false); err != nil {
		return err
	}
	if err := checkText(body.Text); err != nil {
		return err
	}
	var res chatapi.PostResult
	if err := a.call(r, chatapi.PostSubject, p, chatapi.PostArgs{Conversation: id, Text: body.Text}, &res); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, res)
	return nil
}

func (a *API) listMessages(w http.ResponseWriter, r *http.Request) error {
	p, id, err := a.target(r)
	if err != nil {
		return err
	}
	msgs := []chatapi.Message{}
	err = paged(a, r, chatapi.MessagesSubject, p,
		func(after *uint64) any { return chatapi.MessagesArgs{Conversation: id, Page: chatapi.PageAfter(after)} },
		func(res chatapi.MessagesResult) *uint64 {
			msgs = append(msgs, res.Messages...)
			return res.Next
		})
	if err != nil {
		return err
	}
	// Every message is sealed under the visitor's key: if the visitor was
	// erased while the pages were read, the earlier pages' texts are shown
	// no more than the later ones'.
	if slices.ContainsFunc(msgs, func(m chatapi.Message) bool { return m.Erased }) {
		for i := range msgs {
			msgs[i].Text, msgs[i].Erased = nil, true
		}
	}
	// One audit entry for the whole read, however many pages it took.
	if p.Role.Staff() {
		if err := a.auditRead(r.Context(), p, id); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, chatapi.MessagesResult{Messages: msgs})
	return nil
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
	if !stream.ValidToken(body.AgentID) {
		return invalid("agent_id must be 1-64 of [A-Za-z0-9_-]")
	}
	return a.summary(w, r, chatapi.AssignSubject, p, chatapi.AssignArgs{Conversation: id, Agent: body.AgentID})
}

func (a *API) close(w http.ResponseWriter, r *http.Request) error {
	p, id, err := a.target(r)
	if err != nil {
		return err
	}
	var body struct{}
	if err := decode(w, r, &body, true); err != nil {
		return err
	}
	return a.summary(w, r, chatapi.CloseSubject, p, chatapi.ConversationArgs{Conversation: id})
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
	if body.Score == nil || *body.Score < 1 || *body.Score > 5 {
		return invalid("score must be an integer from 1 to 5")
	}
	return a.summary(w, r, chatapi.RateSubject, p, chatapi.RateArgs{Conversation: id, Score: *body.Score})
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
