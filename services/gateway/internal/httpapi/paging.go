package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
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
	errBadLimit  = newError(http.StatusBadRequest, "malformed", "limit must be one integer from 1 to "+strconv.Itoa(maxPageLimit))
	errBadCursor = newError(http.StatusBadRequest, "malformed", "cursor is not one this call answered as next_cursor, or is given more than once")
	errBadQuery  = newError(http.StatusBadRequest, "malformed", "the query string is not valid URL encoding")
	errBadStatus = newError(http.StatusBadRequest, "malformed", "status must be open or closed, given once")
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
	pg := chatapi.Page[C]{Limit: defaultPageLimit}
	// r.URL.Query drops the pairs it cannot decode: a cursor written
	// wrongly would silently ask for the first page.
	q, err := url.ParseQuery(r.URL.RawQuery)
	switch {
	case err != nil:
		return pg, errBadQuery
	case len(q["limit"]) > 1:
		return pg, errBadLimit
	case len(q["cursor"]) > 1:
		return pg, errBadCursor
	}
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
	after, ok := decodeCursor[C](s, scope)
	if !ok {
		return pg, errBadCursor
	}
	pg.After = after
	return pg, nil
}

// decodeCursor returns the chat service's cursor inside s, a next_cursor
// issued for scope. Only a cursor exactly as nextCursor writes it is
// accepted: one with a field missing, added or written otherwise was not
// issued by the gateway.
func decodeCursor[C comparable](s string, scope cursorScope) (after C, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return after, false
	}
	var c cursor[C]
	if err := json.Unmarshal(b, &c); err != nil || c.cursorScope != scope {
		return after, false
	}
	if again := nextCursor(scope, &c.After); *again != s {
		return after, false
	}
	return c.After, true
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
