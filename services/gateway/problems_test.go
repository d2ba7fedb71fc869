package gateway_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/services/gateway/internal/httpapi"
)

// raw sends req as written, byte for byte, on a new connection: neither
// the client's URL handling nor its redirect following comes between.
func (e *env) raw(req string) response {
	e.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		e.t.Fatal(err)
	}
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		e.t.Fatalf("read the answer to %.40q: %v", req, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), header: resp.Header, body: b}
}

// TestEveryErrorIsAProblem sends what the handlers never see in the
// ordinary way — paths the mux would clean, a request-target of "*", a
// stream call without its upgrade, an oversized header — and checks that
// each is answered with a problem, never a redirect or text. The answers
// net/http gives itself, before any handler runs, are pinned as
// docs/api.md describes them.
func TestEveryErrorIsAProblem(t *testing.T) {
	e := startGateway(t)
	visitor := e.token(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	bearer := "Authorization: Bearer " + visitor + "\r\n"
	const host = "Host: parley.test\r\n"
	pad := func(n int) string { return "X-Pad: " + strings.Repeat("p", n) + "\r\n" }
	handshake := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

	tests := []struct {
		name string
		req  string
		want int
		// wantHeader is a header the answer keeps beside the problem.
		wantHeader, wantValue string
		// text marks an answer net/http writes itself, in plain text.
		text bool
	}{
		{name: "double slash", req: "GET //v1/conversations HTTP/1.1\r\n" + host + bearer + "\r\n", want: 404},
		{name: "double slash inside", req: "POST /v1//conversations HTTP/1.1\r\n" + host + bearer + "Content-Length: 2\r\n\r\n{}", want: 404},
		{name: "dot segment", req: "GET /v1/./conversations HTTP/1.1\r\n" + host + bearer + "\r\n", want: 404},
		{name: "dot-dot segment", req: "GET /v1/tenants/../conversations HTTP/1.1\r\n" + host + bearer + "\r\n", want: 404},
		{name: "trailing slash", req: "GET /v1/conversations/ HTTP/1.1\r\n" + host + bearer + "\r\n", want: 404},
		{name: "unknown path", req: "GET /v1/nothing HTTP/1.1\r\n" + host + "\r\n", want: 404},
		{name: "unknown path, HEAD", req: "HEAD /v1/nothing HTTP/1.1\r\n" + host + "\r\n", want: 404},
		{name: "wrong method", req: "PATCH /v1/conversations HTTP/1.1\r\n" + host + bearer + "\r\n", want: 405, wantHeader: "Allow", wantValue: "GET, HEAD, POST"},
		{name: "asterisk target", req: "GET * HTTP/1.1\r\n" + host + "\r\n", want: 400},
		{name: "OPTIONS of the server", req: "OPTIONS * HTTP/1.1\r\n" + host + "\r\n", want: 200, text: true},
		{name: "stream without upgrade", req: "GET /v1/stream HTTP/1.1\r\n" + host + bearer + "\r\n", want: 426, wantHeader: "Upgrade", wantValue: "websocket"},
		{name: "stream with token in query, no upgrade", req: "GET /v1/stream?access_token=" + visitor + " HTTP/1.1\r\n" + host + "\r\n", want: 426, wantHeader: "Upgrade", wantValue: "websocket"},
		{name: "stream of an old WebSocket version", req: "GET /v1/stream HTTP/1.1\r\n" + host + bearer + handshake + "Sec-WebSocket-Version: 8\r\n\r\n", want: 400, wantHeader: "Sec-WebSocket-Version", wantValue: "13"},
		{name: "header over the API's limit", req: "GET /v1/conversations HTTP/1.1\r\n" + host + bearer + pad(httpapi.MaxHeaderBytes) + "\r\n", want: 431},
		{name: "path over the API's limit", req: "GET /v1/" + strings.Repeat("x", httpapi.MaxHeaderBytes) + " HTTP/1.1\r\n" + host + "\r\n", want: 431},
		{name: "header over the server's limit", req: "GET /v1/conversations HTTP/1.1\r\n" + host + pad(2*httpapi.ServerMaxHeaderBytes) + "\r\n", want: 431, text: true},
		{name: "malformed request line", req: "GET /v1/conversations\r\n" + host + "\r\n", want: 400, text: true},
		{name: "no Host", req: "GET /v1/conversations HTTP/1.1\r\n\r\n", want: 400, text: true},
		{name: "unknown HTTP version", req: "GET /v1/conversations HTTP/2.7\r\n" + host + "\r\n", want: 505, text: true},
		{name: "unknown transfer coding", req: "POST /v1/conversations HTTP/1.1\r\n" + host + "Transfer-Encoding: rot13\r\n\r\n", want: 501, text: true},
		{name: "unknown expectation", req: "POST /v1/conversations HTTP/1.1\r\n" + host + "Expect: miracles\r\nContent-Length: 2\r\n\r\n{}", want: 417, text: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.raw(tt.req)
			if tt.text {
				if r.status != tt.want || strings.HasPrefix(r.contentType, "application/problem+json") {
					t.Errorf("answer = %d %q, want net/http's own %d, not a problem", r.status, r.contentType, tt.want)
				}
				if tt.want == http.StatusOK && len(r.body) != 0 {
					t.Errorf("answer body = %q, want none", r.body)
				}
				return
			}
			if strings.HasPrefix(tt.req, "HEAD ") {
				if r.status != tt.want || r.contentType != "application/problem+json" {
					t.Errorf("answer = %d %q, want %d application/problem+json", r.status, r.contentType, tt.want)
				}
			} else {
				checkProblem(t, r, tt.want)
			}
			if loc := r.header.Get("Location"); loc != "" {
				t.Errorf("answer redirects to %q", loc)
			}
			if tt.wantHeader != "" && r.header.Get(tt.wantHeader) != tt.wantValue {
				t.Errorf("%s = %q, want %q", tt.wantHeader, r.header.Get(tt.wantHeader), tt.wantValue)
			}
			if strings.Contains(string(r.body), visitor) {
				t.Errorf("problem %s echoes the token", r.body)
			}
		})
	}

	// A path the mux would have redirected is counted as unmatched, not
	// under the route of its clean form.
	metrics := string(e.do(http.MethodGet, "/metrics", "", nil).body)
	for _, want := range []string{
		`parley_gateway_http_requests_total{code="404",route="unmatched"}`,
		`parley_gateway_http_requests_total{code="426",route="GET /v1/stream"} 2`,
		`parley_gateway_http_requests_total{code="431",route="unmatched"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("GET /metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, `code="30`) {
		t.Error("GET /metrics counts a redirect")
	}
}
