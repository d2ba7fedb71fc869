package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/services/gateway"
)

func TestHealthAndReadiness(t *testing.T) {
	e := startGateway(t)
	e.serveUpstreams(t)
	if r := e.do(http.MethodGet, "/healthz", "", nil); r.status != http.StatusOK {
		t.Errorf("GET /healthz = %d, want 200", r.status)
	}
	if r := e.do(http.MethodGet, "/readyz", "", nil); r.status != http.StatusOK {
		t.Errorf("GET /readyz = %d, want 200 (body %s)", r.status, r.body)
	}
	e.readyMu.Lock()
	e.ready = func(context.Context) error { return errors.New("clickhouse down") }
	e.readyMu.Unlock()
	r := e.do(http.MethodGet, "/readyz", "", nil)
	checkProblem(t, r, http.StatusServiceUnavailable)
	if strings.Contains(string(r.body), "clickhouse") {
		t.Errorf("GET /readyz body %s names the failing dependency's error", r.body)
	}
}

// A gateway not ready says so once, not at every probe, and says when it
// is ready again.
func TestReadinessLoggedOnChange(t *testing.T) {
	e := startGateway(t)
	e.serveUpstreams(t)
	setReady := func(err error) {
		e.readyMu.Lock()
		defer e.readyMu.Unlock()
		e.ready = func(context.Context) error { return err }
	}
	count := func(msg string) int { return strings.Count(e.logs.String(), `"msg":"`+msg+`"`) }
	probe := func(want int) {
		t.Helper()
		for range 3 {
			if r := e.do(http.MethodGet, "/readyz", "", nil); r.status != want {
				t.Fatalf("GET /readyz = %d, want %d", r.status, want)
			}
		}
	}
	probe(http.StatusOK)
	setReady(errors.New("clickhouse down"))
	probe(http.StatusServiceUnavailable)
	if n := count("not ready"); n != 1 {
		t.Errorf("%d \"not ready\" records after 3 failed probes, want 1", n)
	}
	setReady(nil)
	probe(http.StatusOK)
	if n := count("ready again"); n != 1 {
		t.Errorf("%d \"ready again\" records after 3 good probes, want 1", n)
	}
	setReady(errors.New("clickhouse down"))
	probe(http.StatusServiceUnavailable)
	if n := count("not ready"); n != 2 {
		t.Errorf("%d \"not ready\" records after it failed again, want 2", n)
	}
}

// serveUpstreams stands in for chat and privacy, which the gateway pings
// for its readiness (the key service is startGateway's), until the test
// ends; stop stops them.
func (e *env) serveUpstreams(t *testing.T) (stop func()) {
	t.Helper()
	fail := func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("not for this test") }
	served, err := rpc.Serve(t.Context(), e.nc, slog.New(slog.DiscardHandler), rpc.Service{Name: "upstreams", Queue: "test",
		Groups: []rpc.Group{{Routes: []rpc.Route{
			{Subject: chatapi.OpenSubject, Handler: rpc.Handle(fail)},
			{Subject: privacyapi.RegisterVisitorSubject, Handler: rpc.Handle(fail)},
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(served.Stop)
	return served.Stop
}

// The gateway is ready only while chat and privacy answer: with either
// gone it answers 503, and 200 again once they are back.
func TestNotReadyWithoutTheServicesItCalls(t *testing.T) {
	e := startGateway(t)
	readyz := func() int { return e.do(http.MethodGet, "/readyz", "", nil).status }
	natstest.Until(t, 20*time.Second, "503 without chat and privacy", func() bool { return readyz() == http.StatusServiceUnavailable })
	stop := e.serveUpstreams(t)
	natstest.Until(t, 20*time.Second, "200 once they answer", func() bool { return readyz() == http.StatusOK })
	stop()
	natstest.Until(t, 20*time.Second, "503 once they stopped", func() bool { return readyz() == http.StatusServiceUnavailable })
}

func TestMetrics(t *testing.T) {
	e := startGateway(t)
	e.do(http.MethodGet, "/v1/tenants", "", nil)
	r := e.do(http.MethodGet, "/metrics", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics = %d, want 200", r.status)
	}
	for _, want := range []string{
		`parley_gateway_http_requests_total{code="401",route="GET /v1/tenants"} 1`,
		`parley_gateway_http_request_duration_seconds_count{route="GET /v1/tenants"} 1`,
		`parley_gateway_live_sessions 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("GET /metrics lacks %q", want)
		}
	}
}

// TestOpenAPI checks that the document lists exactly the routes served.
func TestOpenAPI(t *testing.T) {
	e := startGateway(t)
	r := e.do(http.MethodGet, "/v1/openapi.json", "", nil)
	if r.status != http.StatusOK || r.contentType != "application/json" {
		t.Fatalf("GET /v1/openapi.json = %d %q, want 200 application/json", r.status, r.contentType)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	r.decode(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	got := openAPIOperations(t, r.body)
	want := []string{
		"DELETE /v1/bots/{id}",
		"DELETE /v1/conversations/{id}/messages/{message_id}",
		"DELETE /v1/integrations/{id}",
		"DELETE /v1/me",
		"DELETE /v1/me/profile",
		"DELETE /v1/me/sessions",
		"DELETE /v1/people/{id}/sessions",
		"GET /healthz",
		"GET /metrics",
		"GET /readyz",
		"GET /v1/agents/{id}",
		"GET /v1/audit",
		"GET /v1/audit/checkpoint",
		"GET /v1/bots",
		"GET /v1/bots/{id}",
		"GET /v1/bots/{id}/deliveries",
		"GET /v1/conversations",
		"GET /v1/conversations/{id}",
		"GET /v1/conversations/{id}/messages",
		"GET /v1/erasures/{erasure_id}",
		"GET /v1/integrations",
		"GET /v1/integrations/{id}",
		"GET /v1/integrations/{id}/deliveries",
		"GET /v1/me",
		"GET /v1/me/consent",
		"GET /v1/me/export",
		"GET /v1/me/profile",
		"GET /v1/metrics/{name}",
		"GET /v1/openapi.json",
		"GET /v1/settings",
		"GET /v1/sign-in/callback",
		"GET /v1/stream",
		"GET /v1/subjects/{id}/export",
		"GET /v1/tenants",
		"GET /v1/tenants/{tenant}/identity-provider",
		"GET /v1/tenants/{tenant}/notice",
		"GET /v1/tenants/{tenant}/sign-in",
		"GET /v1/training-export",
		"POST /v1/bots/{id}/session",
		"POST /v1/conversations",
		"POST /v1/conversations/{id}/assign",
		"POST /v1/conversations/{id}/close",
		"POST /v1/conversations/{id}/handoff",
		"POST /v1/conversations/{id}/messages",
		"POST /v1/conversations/{id}/rating",
		"POST /v1/sessions/refresh",
		"POST /v1/sessions/sign-out",
		"POST /v1/subjects/{id}/erase",
		"POST /v1/tenants/{tenant}/visitors",
		"PUT /v1/agents/{id}/capacity",
		"PUT /v1/bots/{id}",
		"PUT /v1/integrations/{id}",
		"PUT /v1/me/consent",
		"PUT /v1/me/presence",
		"PUT /v1/me/profile",
		"PUT /v1/settings",
		"PUT /v1/tenants/{tenant}",
		"PUT /v1/tenants/{tenant}/identity-provider",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("OpenAPI operations mismatch (-want +got):\n%s", diff)
	}
	// Every documented operation is served: none falls through to 404.
	for _, op := range want {
		method, path, _ := strings.Cut(op, " ")
		path = strings.NewReplacer("{id}", "c1", "{tenant}", "demo", "{erasure_id}", "e1", "{name}", "csat").Replace(path)
		if r := e.do(method, path, "", nil); r.status == http.StatusNotFound || r.status == http.StatusMethodNotAllowed {
			t.Errorf("%s %s = %d: documented but not served", method, path, r.status)
		}
	}
}

// TestShutdownClosesUnusedConnections holds a connection open on which no
// request was sent, as an HTTP client's pool may, across a shutdown: the
// server would wait for it longer than the shutdown may take, so the
// gateway closes it, and Run returns nil rather than its deadline's error.
func TestShutdownClosesUnusedConnections(t *testing.T) {
	e := startGateway(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A request on another connection, answered, shows the unused one was
	// accepted before the shutdown began.
	if r := e.do("GET", "/healthz", "", nil); r.status != http.StatusOK {
		t.Fatalf("GET /healthz = %d", r.status)
	}
	e.cancel()
	if err := natstest.Returns(t, 10*time.Second, "cancel", e.done); err != nil {
		t.Errorf("Run() with an unused connection open = %v, want nil", err)
	}
	e.done <- nil // for the cleanup's check
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("the unused connection is still open after the shutdown")
	}
}

func TestShutdownClosesSessions(t *testing.T) {
	e := startGateway(t)
	c := e.dial(auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor}, false)
	natstest.Until(t, 5*time.Second, "1 live session", func() bool { return e.liveSessions() == "1" })
	start := time.Now()
	e.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Errorf("session at shutdown: read error %v, want close %v", err, websocket.StatusGoingAway)
	}
	if err := natstest.Returns(t, 6*time.Second, "cancel", e.done); err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	e.done <- nil // for the cleanup's check
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v, want under 5s", d)
	}
}

// TestServeFailureStopsEverything makes serving fail, its listener closed
// under it, while a WebSocket session is open: Run must return why, and
// stop what it started (the hub, its subscriptions and pipeline, the
// session) before it does.
func TestServeFailureStopsEverything(t *testing.T) {
	// Registered first, checked last: once every cleanup has run.
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
	var ln net.Listener
	e := startGatewayWith(t, func(d *gateway.Deps) { ln = d.Listener })
	c := e.dial(auth.Principal{Tenant: "demo", ID: "s1", Role: auth.RoleSupervisor}, false)
	natstest.Until(t, 5*time.Second, "1 live session", func() bool { return e.liveSessions() == "1" })
	ln.Close()
	// The client answers the close handshake, as the hub waits for it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("session once serving failed: read error %v, want close %v", err, websocket.StatusGoingAway)
	}
	if err := natstest.Returns(t, 10*time.Second, "its listener failed", e.done); !errors.Is(err, net.ErrClosed) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run() with its listener closed = %v, want %v alone", err, net.ErrClosed)
	}
	e.done <- nil // for the cleanup's check
}

func TestCORSPreflight(t *testing.T) {
	e := startGateway(t)
	req, err := http.NewRequest(http.MethodOptions, e.base+"/v1/tenants/demo/visitors", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "https://shop.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := []string{strconv.Itoa(resp.StatusCode), resp.Header.Get("Access-Control-Allow-Origin"), resp.Header.Get("Access-Control-Allow-Headers")}
	want := []string{"204", "*", "Authorization, Content-Type, Idempotency-Key"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("preflight mismatch (-want +got):\n%s", diff)
	}
}
