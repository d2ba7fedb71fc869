package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/parley-chat/parley/pkg/chatapi"
)

// The list of conversations and a transcript are answered one page per
// request: ?limit= items at most (defaultPageLimit when absent), from after
// ?cursor=, the next_cursor of the previous page. A page is one page of the
// chat service (chatapi.Page), which also bounds it by bytes, so a page may
// hold fewer items than the limit while more follow; only a null
// next_cursor ends the list.
const (
	defaultPageLimit = 100
	maxPageLimit     = chatapi.PageItems
	// maxCursorLen bounds the cursor read from the query, well above any
	// the gateway issues: a conversation id and a tenant name of at most 64
	// characters each.
	maxCursorLen = 512
)

var (
	errBadLimit  = newError(http.StatusBadRequest, "malformed", "limit must be an integer from 1 to "+strconv.Itoa(maxPageLimit))
	errBadCursor = newError(http.StatusBadRequest, "malformed", "cursor is not one this call answered as next_cursor")
)

// cursorScope is what a cursor was issued for: the call, the caller's
// tenant, and for a transcript its conversation. A cursor presented to any
// other is refused, so that it can only ever continue the list it came
// from. It needs no signature: the chat service checks the caller's access
// on every page, so a cursor a client makes up can only start a page the
// client may read anyway, somewhere else in it.
type cursorScope struct {
	Call         string `json:"k"`
	Tenant       string `json:"t"`
	Conversation string `json:"c,omitempty"`
}

// cursor is a next_cursor as the gateway issues it, base64url of its JSON:
// opaque to clients, the chat service's cursor (After) inside.
type cursor[C comparable] struct {
	cursorScope
	After C `json:"a"`
}

// pageOf reads the page that r asks for with ?cursor= and ?limit=, a cursor
// being accepted only from scope.
func pageOf[C comparable](r *http.Request, scope cursorScope) (chatapi.Page[C], error) {
	q := r.URL.Query()
	pg := chatapi.Page[C]{Limit: defaultPageLimit}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > maxPageLimit {
			return pg, errBadLimit
		}
		pg.Limit = n
	}
	if !q.Has("cursor") {
		return pg, nil
	}
	s := q.Get("cursor")
	if len(s) > maxCursorLen {
		return pg, errBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return pg, errBadCursor
	}
	var c cursor[C]
	if err := json.Unmarshal(b, &c); err != nil || c.cursorScope != scope {
		return pg, errBadCursor
	}
	pg.After = c.After
	return pg, nil
}

// nextCursor is the next_cursor of a page whose chat service cursor is
// next: nil on the last page.
func nextCursor[C comparable](scope cursorScope, next *C) *string {
	if next == nil {
		return nil
	}
	// Marshalling a struct of strings and numbers cannot fail.
	b, _ := json.Marshal(cursor[C]{cursorScope: scope, After: *next})
	s := base64.RawURLEncoding.EncodeToString(b)
	return &s
}
