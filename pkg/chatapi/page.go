package chatapi

import "fmt"

// A reply travels in one NATS message, at most 1 MiB by default, while a
// tenant's inbox or a conversation's transcript can grow without bound. So
// the answers that can outgrow a message always come in pages (ListSubject,
// MessagesSubject, ExportSubject): a caller asks again from the previous
// page's Next until Next is nil, as ReadPages does.
const (
	// PageBytes bounds a page by the bytes of its items' JSON, as sent. A
	// page's first item is taken whatever its size, so that paging always
	// moves on; the largest item, a message of MaxTextBytes all of it
	// escaped (six bytes a character), stays well inside a NATS message
	// too. A text redacted for a bot is measured redacted: a placeholder
	// may be longer than what it replaces ("[email]" for "a@b.c", "[ip]"
	// for "::1"), by less than half, and is never escaped, so that
	// bound holds for it as well.
	PageBytes = 256 << 10
	// PageItems bounds a page of List or Messages by its number of items
	// (conversations, messages), so that the work of one request stays
	// small where items are small, and a caller may ask for fewer (Limit).
	// An export, only ever read whole, is bounded by bytes alone: fewer,
	// fuller pages.
	PageItems = 500
)

// Page asks for one page of a paged answer: the items after the cursor
// After (its zero value: from the first), at most Limit of them (0, or more
// than PageItems: PageItems), within PageBytes. The zero Page asks for the
// first page, as large as the server makes it.
type Page[C comparable] struct {
	After C   `json:"after"`
	Limit int `json:"limit,omitempty"`
}

// PageAfter asks for the page after the cursor after, as large as the
// server makes it; nil asks for the first page.
func PageAfter[C comparable](after *C) Page[C] {
	var pg Page[C]
	if after != nil {
		pg.After = *after
	}
	return pg
}

// ReadPages reads a paged answer whole, one request a page: it calls page
// with nil for the first page, then with each Next it returns, until one is
// nil. page asks for the page after its cursor, keeps the page's items, and
// returns its Next. ReadPages returns page's first error, and an error when
// a page's Next is the cursor it was asked from: asking again would never
// end.
func ReadPages[C comparable](page func(after *C) (next *C, err error)) error {
	var after *C
	for {
		next, err := page(after)
		if err != nil {
			return err
		}
		if next == nil {
			return nil
		}
		if after != nil && *next == *after {
			return fmt.Errorf("the page after %v ends where it started", *after)
		}
		after = next
	}
}
