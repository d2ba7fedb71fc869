package httpapi

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/services/gateway/internal/live"
	"github.com/parley-chat/parley/services/gateway/internal/tenant"
)

// bodyTargets are the request bodies the API decodes, each with the check
// its handler runs on a decoded body before anything reaches the bus.
var bodyTargets = []struct {
	name     string
	optional bool
	new      func() any
	check    func(v any) error
}{
	{"open conversation", false, func() any { return new(chatapi.OpenArgs) }, func(v any) error { return checkTextSize(v.(*chatapi.OpenArgs).Text) }},
	{"post message", false, func() any { return new(postBody) }, func(v any) error { return checkTextSize(v.(*postBody).Text) }},
	{"assign", false, func() any { return new(assignBody) }, nil},
	{"close", true, func() any { return new(struct{}) }, nil},
	{"rating", false, func() any { return new(ratingBody) }, nil},
	{"visitor", false, func() any { return new(visitorBody) }, func(v any) error { _, err := v.(*visitorBody).consent(); return err }},
	{"consent", false, func() any { return new(consentBody) }, nil},
	{"settings", false, func() any { return new(settingsBody) }, func(v any) error { _, err := v.(*settingsBody).settings(); return err }},
	{"tenant", false, func() any { return new(tenantBody) }, nil},
}

// FuzzDecode checks that any body, decoded as each request body, is either
// refused with a 400 or 413 problem or decoded into a value that encodes
// and decodes back unchanged; and that a handler's check of a decoded body
// refuses only with a 413 or 422 problem.
func FuzzDecode(f *testing.F) {
	for i, b := range []string{
		`{"text":"hello","erase_after_close_hours":24}`,
		`{"text":"hi"}`,
		`{"agent_id":"a1"}`,
		``,
		`{"score":5}`,
		`{"consent":{"analytics":true,"network_data":false,"ai":false},"notice_version":"2026-01"}`,
		`{"analytics":false,"network_data":false,"ai":true}`,
		`{"retention_days":30,"collect_network_data":true,"erase_after_close_hours":0,"min_group_size":5}`,
		`{"name":"Acme"}`,
	} {
		f.Add(uint8(i), []byte(b))
	}
	f.Add(uint8(0), []byte(`{"text":"\u0000\ud800","ip":"1.2.3.4"}`))
	f.Add(uint8(1), []byte("{\"text\":\"caf\xe9\"} {}"))
	f.Add(uint8(4), []byte(`{"score":4.5}`))
	f.Add(uint8(5), []byte(`{"consent":null,"notice_version":"`+strings.Repeat("é", 65)+`"}`))
	f.Add(uint8(7), []byte(`{"retention_days":1e309}`))
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		tt := bodyTargets[int(kind)%len(bodyTargets)]
		v := tt.new()
		err := decode(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)), v, tt.optional)
		if err != nil {
			if s := statusOf(err); s != http.StatusBadRequest && s != http.StatusRequestEntityTooLarge {
				t.Fatalf("decode(%s, %q) = %v (status %d), want a 400 or 413 problem", tt.name, body, err, s)
			}
			return
		}
		if len(body) > 0 && (!utf8.Valid(body) || !json.Valid(body)) {
			t.Fatalf("decode(%s, %q) accepted a body that is not JSON in UTF-8", tt.name, body)
		}
		again, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("encode %s %+v: %v", tt.name, v, err)
		}
		w := tt.new()
		if err := decode(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(again)), w, false); err != nil {
			t.Fatalf("decode(%s, %s), encoded from %q: %v", tt.name, again, body, err)
		}
		if diff := cmp.Diff(v, w); diff != "" {
			t.Fatalf("%s changed in a round trip (-first +again):\n%s", tt.name, diff)
		}
		if tt.check == nil {
			return
		}
		if err := tt.check(v); err != nil {
			if s := statusOf(err); s != http.StatusUnprocessableEntity && s != http.StatusRequestEntityTooLarge {
				t.Fatalf("check %s %q = %v (status %d), want a 413 or 422 problem", tt.name, body, err, s)
			}
		}
	})
}

// statusOf is the status of a *statusError, 0 for any other error.
func statusOf(err error) int {
	var se *statusError
	if !errors.As(err, &se) {
		return 0
	}
	return se.status
}

// FuzzMetricRange checks that any query either is refused with a 422
// problem or names an interval the analytics service knows and a range
// that runs forward.
func FuzzMetricRange(f *testing.F) {
	f.Add("interval=hour&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z")
	f.Add("from=2026-01-01T00:00:00%2B01:00&to=2026-01-01T00:00:00Z")
	f.Add("interval=week&from=x&to=y")
	f.Add("from=2026-01-01T00:00:00Z&from=2027-01-01T00:00:00Z&to=2026-06-01T00:00:00Z;x")
	f.Add("%zz")
	f.Fuzz(func(t *testing.T, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		interval, from, to, err := metricRange(q)
		if err != nil {
			if statusOf(err) != http.StatusUnprocessableEntity {
				t.Fatalf("metricRange(%q) = %v, want a 422 problem", query, err)
			}
			return
		}
		if (interval != "hour" && interval != "day") || !to.After(from) {
			t.Fatalf("metricRange(%q) = %q, %v, %v", query, interval, from, to)
		}
	})
}

// FuzzRequest sends any request net/http would parse to the API, with no
// token that verifies, and checks that it answers without a redirect and
// with a problem for every error: paths the mux would clean, headers,
// methods, query strings and bodies of any kind.
func FuzzRequest(f *testing.F) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	api, err := New(Config{
		// No request that fails authentication reaches the bus: a
		// connection that never connected answers /readyz.
		NC:            &nats.Conn{},
		Log:           log,
		Signer:        auth.NewSigner(priv),
		Verifier:      auth.NewVerifier(pub),
		Tenants:       &tenant.Registry{},
		Hub:           live.NewHub(log, nil, nil),
		Registerer:    reg,
		Gatherer:      reg,
		StreamContext: f.Context(),
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, req := range []string{
		"GET //v1/conversations HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/./conversations/../conversations HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{\"text\":\"hi\"}",
		"GET /v1/stream?access_token=abc HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
		"OPTIONS /v1/me HTTP/1.1\r\nHost: x\r\nAccess-Control-Request-Method: DELETE\r\n\r\n",
		"PUT /v1/tenants/acme HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a.b.c\r\nContent-Length: 15\r\n\r\n{\"name\":\"Acme\"}",
		"POST /v1/tenants/demo/visitors HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
		"GET /v1/metrics/csat?from=2026-01-01T00:00:00Z&to=x HTTP/1.1\r\nHost: x\r\nAuthorization: bearer \r\n\r\n",
		"DELETE /v1/me/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/conversations/%2e%2e/messages HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("p", MaxHeaderBytes) + "\r\n\r\n",
		"CONNECT /v1/audit HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		f.Add([]byte(req))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			// net/http answers those itself, before any handler runs.
			return
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		switch {
		case w.Code >= 300 && w.Code < 400:
			t.Fatalf("%s %s answered %d, a redirect to %q", r.Method, r.RequestURI, w.Code, w.Header().Get("Location"))
		case w.Code < 400:
			return
		}
		if ct := w.Header().Get("Content-Type"); ct != problemContentType {
			t.Fatalf("%s %s answered %d as %q, want %s", r.Method, r.RequestURI, w.Code, ct, problemContentType)
		}
		var p Problem
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != w.Code || !strings.HasPrefix(p.Type, problemBase) {
			t.Fatalf("%s %s answered %d with %q, want its problem", r.Method, r.RequestURI, w.Code, w.Body)
		}
	})
}
