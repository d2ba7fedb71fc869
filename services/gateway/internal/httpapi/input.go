package httpapi

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/parley-chat/parley/pkg/chatapi"
)

// maxBody bounds a request body. It leaves room for a text of
// chatapi.MaxTextBytes even if a client escapes every byte as \u00XX.
const maxBody = 6*chatapi.MaxTextBytes + 4<<10

// decode reads r's body as one JSON object into v. Unknown fields, trailing
// data, invalid UTF-8 (which encoding/json would silently replace) and
// oversized bodies are errors. An empty body is accepted only when
// optional, leaving v as it is.
func decode(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	buf := bodies.Get().(*bytes.Buffer)
	defer putBody(buf)
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBody)); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return errBodyTooLarge
		case errors.Is(err, os.ErrDeadlineExceeded):
			return errBodyDeadline
		}
		return errMalformed
	}
	b := buf.Bytes()
	// The body is in: the deadline ServeHTTP set for it must not cut the
	// rest of the request short (net/http reads on in the background to
	// notice a client that goes away, and cancels the request when that
	// read fails).
	http.NewResponseController(w).SetReadDeadline(time.Time{})
	if len(b) == 0 && optional {
		return nil
	}
	if !utf8.Valid(b) {
		return errNotUTF8
	}
	// go-json-experiment decodes as encoding/json's Decoder with
	// DisallowUnknownFields does, trailing data refused, in a fraction of
	// its CPU and allocations; it copies what it keeps, so the buffer goes
	// back to the pool.
	if err := jsonv2.Unmarshal(b, v, jsonv1.DefaultOptionsV1(), jsonv2.RejectUnknownMembers(true)); err != nil {
		return errMalformed
	}
	return nil
}

// bodies holds the buffers request bodies are read into.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBody returns buf to bodies unless it grew past a usual body: a
// rare large one is not held for good.
func putBody(buf *bytes.Buffer) {
	if buf.Cap() > 64<<10 {
		return
	}
	buf.Reset()
	bodies.Put(buf)
}

// checkTextSize refuses a message text longer than the chat service takes
// with 413 before it is sent on: the HTTP answer to a payload too large.
// Whether a text is acceptable otherwise is for the chat service to say.
func checkTextSize(text string) error {
	if len(text) > chatapi.MaxTextBytes {
		return errTextTooLarge
	}
	return nil
}

// idempotencyKey returns the request's Idempotency-Key header, "" when it
// has none; the chat service makes a request with one safe to repeat.
func idempotencyKey(r *http.Request) (string, error) {
	vs := r.Header.Values("Idempotency-Key")
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1 || !chatapi.ValidIdempotencyKey(vs[0]):
		return "", errBadIdempotencyKey
	}
	return vs[0], nil
}

// sinceSeq returns the stream's since parameter, the seq of the last live
// event the client saw, nil when it has none.
func sinceSeq(r *http.Request) (*uint64, error) {
	// r.URL.Query drops the pairs it cannot decode: a since written
	// wrongly would silently skip the replay.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errBadSeq
	}
	v, ok := q["since"]
	if !ok {
		return nil, nil
	}
	if len(v) != 1 {
		return nil, errBadSeq
	}
	seq, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil {
		return nil, errBadSeq
	}
	return &seq, nil
}
