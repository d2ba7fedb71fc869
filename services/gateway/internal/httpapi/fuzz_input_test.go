package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/parley-chat/parley/pkg/chatapi"
)

// The parsers below run only behind a token that verifies, which
// FuzzRequest never sends: they are fuzzed here on their own.

// FuzzPage checks that any query string asks for a page with a limit in
// range and a cursor issued for its scope exactly as given, or is refused
// with a 400 problem.
func FuzzPage(f *testing.F) {
	list := cursorScope{Call: "conversations", Tenant: "demo"}
	transcript := cursorScope{Call: "messages", Tenant: "demo", Conversation: "c1"}
	f.Add("limit=10&cursor=" + *nextCursor(list, new("c9")))
	f.Add("cursor=" + *nextCursor(transcript, new(uint64(42))))
	f.Add("cursor=%%%")
	f.Add("limit=1&limit=2")
	f.Add("cursor=eyJrIjoiY29udmVyc2F0aW9ucyIsInQiOiJkZW1vIn0")
	f.Add("limit=0500&cursor=")
	f.Fuzz(func(t *testing.T, query string) {
		r := &http.Request{URL: &url.URL{RawQuery: query}}
		checkPage(t, query, list, func() (chatapi.Page[string], error) { return pageOf[string](r, list) })
		checkPage(t, query, transcript, func() (chatapi.Page[uint64], error) { return pageOf[uint64](r, transcript) })
	})
}

func checkPage[C comparable](t *testing.T, query string, scope cursorScope, read func() (chatapi.Page[C], error)) {
	t.Helper()
	pg, err := read()
	if err != nil {
		if statusOf(err) != http.StatusBadRequest {
			t.Fatalf("pageOf(%q) = %v, want a 400 problem", query, err)
		}
		return
	}
	if pg.Limit < 1 || pg.Limit > maxPageLimit {
		t.Fatalf("pageOf(%q).Limit = %d", query, pg.Limit)
	}
	q, perr := url.ParseQuery(query)
	if perr != nil {
		t.Fatalf("pageOf(%q) accepted a query it cannot decode", query)
	}
	if c, ok := q["cursor"]; ok {
		if again := nextCursor(scope, &pg.After); len(c) != 1 || *again != c[0] {
			t.Fatalf("pageOf(%q) accepted cursor %q, which reads back as %q", query, c, *again)
		}
	}
}

// FuzzSince checks that since is one whole number or refused with a 400
// problem.
func FuzzSince(f *testing.F) {
	for _, q := range []string{"since=42", "since=", "since=1&since=2", "since=%zz", "since=-1", "since=18446744073709551616", "access_token=x"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		seq, err := sinceSeq(&http.Request{URL: &url.URL{RawQuery: query}})
		if err != nil {
			if !errors.Is(err, errBadSeq) {
				t.Fatalf("sinceSeq(%q) = %v, want errBadSeq", query, err)
			}
			return
		}
		q, perr := url.ParseQuery(query)
		if perr != nil {
			t.Fatalf("sinceSeq(%q) = %v, nil; want errBadSeq for a query it cannot decode", query, seq)
		}
		switch v, ok := q["since"]; {
		case !ok && seq != nil:
			t.Fatalf("sinceSeq(%q) = %d without a since", query, *seq)
		case ok && (seq == nil || len(v) != 1):
			t.Fatalf("sinceSeq(%q) = %v, want one seq", query, seq)
		case ok:
			if n, err := strconv.ParseUint(v[0], 10, 64); err != nil || n != *seq {
				t.Fatalf("sinceSeq(%q) = %d, want %q", query, *seq, v[0])
			}
		}
	})
}

// FuzzIdempotencyKey checks that a key is accepted only as one header of
// 1 to 128 printable ASCII characters without spaces, and otherwise
// refused with a 400 problem.
func FuzzIdempotencyKey(f *testing.F) {
	for _, k := range []string{"0e5b4c1e-8f1d-4c1a-9d2f-3a6b8c0d1e2f", "", "a b", "ключ", "\x00", string(make([]byte, 129))} {
		f.Add(k, false)
	}
	f.Add("k", true)
	f.Fuzz(func(t *testing.T, key string, twice bool) {
		h := http.Header{"Idempotency-Key": {key}}
		if twice {
			h["Idempotency-Key"] = append(h["Idempotency-Key"], key)
		}
		got, err := idempotencyKey(&http.Request{Header: h})
		valid := !twice && len(key) >= 1 && len(key) <= chatapi.MaxIdempotencyKeyLen
		for i := range len(key) {
			valid = valid && key[i] > ' ' && key[i] < 0x7f
		}
		switch {
		case valid && (err != nil || got != key):
			t.Fatalf("idempotencyKey(%q, twice %v) = %q, %v, want it accepted", key, twice, got, err)
		case !valid && statusOf(err) != http.StatusBadRequest:
			t.Fatalf("idempotencyKey(%q, twice %v) = %q, %v, want a 400 problem", key, twice, got, err)
		}
	})
}
