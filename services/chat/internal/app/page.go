package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

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

// pageJSON is a page whose items are encoded into its answer's JSON as
// they are taken: each item is encoded once, to measure it and to send it.
// The answer is an object holding the items as an array under one field
// and, when another page follows, the cursor under "next", as the
// chatapi results read. encoding/json encodes the items: go-json-experiment
// escaping as it does (HTML characters) was slower.
type pageJSON struct {
	page
	itemWriter
	// tail holds the answer's fields after the items (see attach).
	tail []byte
}

// newPageJSON returns an empty page of at most limit items (see newPage)
// listed under field.
func newPageJSON(limit int, field string) *pageJSON {
	pg := &pageJSON{page: *newPage(limit), itemWriter: newItemWriter()}
	pg.buf.WriteString(`{"` + field + `":[`)
	return pg
}

// take encodes v into pg if it fits, reporting whether it did.
func (pg *pageJSON) take(v any) (bool, error) {
	mark, err := pg.encode(v, pg.items > 0)
	if err != nil {
		return false, fmt.Errorf("encode a page item: %w", err)
	}
	n := pg.buf.Len() - mark
	if !pg.fits(n) {
		pg.buf.Truncate(mark)
		return false, nil
	}
	pg.add(n)
	return true, nil
}

// attach adds v to the page's answer under name, after its items. Its
// bytes count in the page's bound, not in its items: the first item still
// always fits, and what is attached is far below a bus message.
func (pg *pageJSON) attach(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode a page's %s: %w", name, err)
	}
	pg.tail = append(pg.tail, `,"`+name+`":`...)
	pg.tail = append(pg.tail, b...)
	pg.bytes += len(name) + len(b) + 4
	return nil
}

// end closes the page's JSON with next, the cursor of the page that
// follows (nil on the last page), and returns it.
func (pg *pageJSON) end(next *uint64) json.RawMessage {
	pg.buf.WriteByte(']')
	pg.buf.Write(pg.tail)
	if next != nil {
		pg.buf.WriteString(`,"next":`)
		pg.buf.Write(strconv.AppendUint(nil, *next, 10))
	}
	pg.buf.WriteByte('}')
	return detach(pg.buf)
}

// itemWriter writes a page's JSON into a buffer from pageBuffers,
// encoding each item once: the bytes written are both what the item
// counts for in the page and what is sent.
type itemWriter struct {
	buf *bytes.Buffer
	enc *json.Encoder
}

func newItemWriter() itemWriter {
	buf := pageBuffers.Get().(*bytes.Buffer)
	return itemWriter{buf: buf, enc: json.NewEncoder(buf)}
}

// encode appends v's JSON, after a comma when sep, and returns where it
// begins: the caller measures it from there and truncates back to there
// to leave it out of the page. On an error nothing is appended.
func (w itemWriter) encode(v any, sep bool) (mark int, err error) {
	mark = w.buf.Len()
	if sep {
		w.buf.WriteByte(',')
	}
	if err := w.enc.Encode(v); err != nil {
		w.buf.Truncate(mark)
		return mark, err
	}
	w.buf.Truncate(w.buf.Len() - 1) // Encode's newline
	return mark, nil
}

// pageBuffers hold pages' JSON while they are written. A page is written
// into a buffer grown by earlier ones and answered as a copy of the
// exact size: growing a buffer for each page allocated about twice the
// page, in as many steps as it doubled, for every read.
var pageBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// detach returns a copy of what buf holds, and buf to pageBuffers.
func detach(buf *bytes.Buffer) []byte {
	out := bytes.Clone(buf.Bytes())
	if buf.Cap() <= 2*chatapi.PageBytes { // a page above its bound is an exception not to keep
		buf.Reset()
		pageBuffers.Put(buf)
	}
	return out
}
