package app

import (
	"encoding/json"
	"fmt"

	"github.com/parley-chat/parley/pkg/chatapi"
)

// page fills one page of a paged answer within its bounds: a number of
// items and chatapi.PageBytes of JSON. Items are measured as they will be
// sent, escapes included, so that a page of texts full of '<' (six bytes
// each in JSON) is bounded as well as one of plain letters.
type page struct {
	limit int
	items int
	bytes int
}

// newPage returns an empty page of at most limit items; 0, or more than
// chatapi.PageItems, means chatapi.PageItems.
func newPage(limit int) *page {
	if limit <= 0 || limit > chatapi.PageItems {
		limit = chatapi.PageItems
	}
	return &page{limit: limit}
}

// fits reports whether an item of n bytes may join the page: always as its
// first item, so that every page moves on whatever the item's size, and
// otherwise while the page stays within its bounds.
func (pg *page) fits(n int) bool {
	return pg.items == 0 || (pg.items < pg.limit && pg.bytes+n <= chatapi.PageBytes)
}

// add counts an item of n bytes into the page.
func (pg *page) add(n int) {
	pg.items++
	pg.bytes += n
}

// take measures v and adds it to the page if it fits, reporting whether
// it did.
func (pg *page) take(v any) (bool, error) {
	n, err := jsonSize(v)
	if err != nil {
		return false, err
	}
	if !pg.fits(n) {
		return false, nil
	}
	pg.add(n)
	return true, nil
}

// jsonSize is the length of v in JSON, and of the comma that separates it
// from the next item.
func jsonSize(v any) (int, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("measure a page item: %w", err)
	}
	return len(b) + 1, nil
}
