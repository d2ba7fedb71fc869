package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/services/gateway"
)

// putTenant creates or replaces a tenant as the operator.
func (e *env) putTenant(id, body string) {
	e.t.Helper()
	if r := e.do(http.MethodPut, "/v1/tenants/"+id, e.operator(), []byte(body)); r.status != http.StatusCreated && r.status != http.StatusOK {
		e.t.Fatalf("PUT /v1/tenants/%s = %d %s, want 201 or 200", id, r.status, r.body)
	}
}

// tryDial opens a WebSocket as p and returns it, or the answer that refused
// the handshake.
func (e *env) tryDial(p auth.Principal) (*websocket.Conn, response) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(e.base, "http") + "/v1/stream"
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + e.token(p)}}})
	if err == nil {
		e.t.Cleanup(func() { c.CloseNow() })
		return c, response{status: http.StatusSwitchingProtocols}
	}
	if resp == nil {
		e.t.Fatalf("dial stream as %v: %v", p, err)
	}
	b, _ := io.ReadAll(resp.Body)
	return nil, response{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), header: resp.Header, body: b}
}

// rejections returns the value of parley_gateway_limit_rejections_total
// for limit.
func (e *env) rejections(limit string) string {
	e.t.Helper()
	r := e.do(http.MethodGet, "/metrics", "", nil)
	prefix := fmt.Sprintf("parley_gateway_limit_rejections_total{limit=%q} ", limit)
	for line := range strings.SplitSeq(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	return "0"
}

func (e *env) healthy() {
	e.t.Helper()
	if r := e.do(http.MethodGet, "/healthz", "", nil); r.status != http.StatusOK {
		e.t.Errorf("GET /healthz = %d, want 200", r.status)
	}
}

func checkLimited(t *testing.T, what string, r response, wantLimit string, e *env, wantCount string) {
	t.Helper()
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("%s = %d %s, want 429", what, r.status, r.body)
	}
	checkProblem(t, r, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") == "" {
		t.Errorf("%s: no Retry-After", what)
	}
	if got := e.rejections(wantLimit); got != wantCount {
		t.Errorf("rejections{limit=%q} = %s, want %s", wantLimit, got, wantCount)
	}
}

func TestSessionLimits(t *testing.T) {
	e := startGatewayWith(t, func(d *gateway.Deps) { d.MaxSessions = 5 })
	e.putTenant("acme", `{"name":"Acme","limits":{"sessions_per_principal":2,"sessions":3}}`)
	visitor := func(tenant, id string) auth.Principal {
		return auth.Principal{Tenant: tenant, ID: id, Role: auth.RoleVisitor}
	}

	e.dial(visitor("acme", "v1"), false)
	e.dial(visitor("acme", "v1"), false)
	_, r := e.tryDial(visitor("acme", "v1"))
	checkLimited(t, "third session of v1", r, "sessions_per_principal", e, "1")

	// Another visitor of the tenant still gets one: the tenant has three.
	e.dial(visitor("acme", "v2"), false)
	_, r = e.tryDial(visitor("acme", "v3"))
	checkLimited(t, "fourth session of acme", r, "sessions_per_tenant", e, "1")

	// Another tenant is unaffected, up to the process's five.
	e.dial(visitor("demo", "d1"), false)
	d2 := e.dial(visitor("demo", "d2"), false)
	_, r = e.tryDial(visitor("demo", "d3"))
	checkLimited(t, "sixth session of the process", r, "sessions_per_process", e, "1")
	e.healthy()

	// A session that ends makes room again.
	d2.Close(websocket.StatusNormalClosure, "")
	natstest.Until(t, 5*time.Second, "live sessions 4", func() bool { return e.liveSessions() == "4" })
	if c, r := e.tryDial(visitor("demo", "d3")); c == nil {
		t.Errorf("a session after another ended = %d %s, want admitted", r.status, r.body)
	}
}

// TestSessionLimitsDefault checks a tenant without limits of its own: ten
// sessions per principal.
func TestSessionLimitsDefault(t *testing.T) {
	e := startGateway(t)
	p := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	for range 10 {
		e.dial(p, true)
	}
	_, r := e.tryDial(p)
	checkLimited(t, "eleventh session", r, "sessions_per_principal", e, "1")
	// An analyst sees no live event, but holds a connection all the same.
	analyst := auth.Principal{Tenant: "demo", ID: "ann", Role: auth.RoleAnalyst}
	for range 10 {
		if c, r := e.tryDial(analyst); c == nil {
			t.Fatalf("analyst session = %d %s, want admitted", r.status, r.body)
		}
	}
	_, r = e.tryDial(analyst)
	checkLimited(t, "eleventh session of an analyst", r, "sessions_per_principal", e, "2")
	var tenants struct {
		Tenants []struct {
			ID     string         `json:"id"`
			Limits map[string]int `json:"limits"`
		} `json:"tenants"`
	}
	e.do(http.MethodGet, "/v1/tenants", e.operator(), nil).decode(t, &tenants)
	if got := tenants.Tenants[0].Limits["sessions_per_principal"]; got != 10 {
		t.Errorf("GET /v1/tenants shows sessions_per_principal %d, want the default 10", got)
	}
}

func TestTenantLimitsAreValidated(t *testing.T) {
	e := startGateway(t)
	for _, body := range []string{
		`{"name":"A","limits":{"sessions":-1}}`,
		`{"name":"A","limits":{"registrations_per_minute":1000001}}`,
		`{"name":"A","limits":{"unknown":1}}`,
	} {
		r := e.do(http.MethodPut, "/v1/tenants/acme", e.operator(), []byte(body))
		if r.status != http.StatusUnprocessableEntity && r.status != http.StatusBadRequest {
			t.Errorf("PUT /v1/tenants/acme %s = %d, want 422 or 400", body, r.status)
		}
	}
}

// registerFrom registers a visitor of tenant from the local address ip
// (any of 127/8 reaches the gateway on Linux), with header set on the
// request when given.
func (e *env) registerFrom(ip, tenant string, header http.Header) response {
	e.t.Helper()
	return e.registerBody(ip, tenant, `{"consent":{"analytics":false,"network_data":false,"ai":false},"notice_version":"1"}`, header)
}

// registerBody registers a visitor of tenant from ip with body.
func (e *env) registerBody(ip, tenant, body string, header http.Header) response {
	e.t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)},
	}).DialContext}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, e.base+"/v1/tenants/"+tenant+"/visitors", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("register from %s: %v", ip, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), header: resp.Header, body: b}
}

// serveRegistrations answers registrations as the privacy service would,
// refusing as invalid those without a notice version.
func serveRegistrations(t *testing.T, e *env) {
	n := 0
	serve(t, e.nc, privacyapi.RegisterVisitorSubject, func(_ context.Context, r rpc.Request[privacyapi.RegisterVisitorArgs]) (privacyapi.RegisterVisitorResult, error) {
		if r.Args.Consent.NoticeVersion == "" {
			return privacyapi.RegisterVisitorResult{}, rpc.Errorf(rpc.CodeInvalid, "notice_version: required")
		}
		n++
		return registered(fmt.Sprintf("v%d", n)), nil
	})
}

func TestRegistrationLimits(t *testing.T) {
	e := startGateway(t)
	serveRegistrations(t, e)
	e.putTenant("acme", `{"name":"Acme","limits":{"registrations_per_address_per_minute":2,"registrations_per_minute":4}}`)

	for i := range 2 {
		if r := e.registerFrom("127.0.0.1", "acme", nil); r.status != http.StatusCreated {
			t.Fatalf("registration %d from 127.0.0.1 = %d %s, want 201", i, r.status, r.body)
		}
	}
	checkLimited(t, "third registration from 127.0.0.1", e.registerFrom("127.0.0.1", "acme", nil), "registrations_per_address", e, "1")
	// The flood from 127.0.0.1 did not use up the tenant's allowance.
	for i := range 2 {
		if r := e.registerFrom("127.0.0.2", "acme", nil); r.status != http.StatusCreated {
			t.Fatalf("registration %d from 127.0.0.2 = %d %s, want 201", i, r.status, r.body)
		}
	}
	checkLimited(t, "fifth registration of acme", e.registerFrom("127.0.0.3", "acme", nil), "registrations_per_tenant", e, "1")
	// Another tenant is unaffected, from the same address.
	if r := e.registerFrom("127.0.0.1", "demo", nil); r.status != http.StatusCreated {
		t.Errorf("registration in demo from 127.0.0.1 = %d %s, want 201", r.status, r.body)
	}
	e.healthy()
	// (The gateway logs the address it listens on, 127.0.0.1.)
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		if strings.Contains(e.logs.String(), ip) {
			t.Errorf("the logs hold the address %s", ip)
		}
	}
}

// TestRegistrationRefusedByTenantIsGivenBack checks that a registration
// the tenant's limit refuses does not count against the client's address.
func TestRegistrationRefusedByTenantIsGivenBack(t *testing.T) {
	e := startGateway(t)
	serveRegistrations(t, e)
	e.putTenant("acme", `{"name":"Acme","limits":{"registrations_per_address_per_minute":2,"registrations_per_minute":1}}`)
	if r := e.registerFrom("127.0.0.2", "acme", nil); r.status != http.StatusCreated {
		t.Fatalf("registration from 127.0.0.2 = %d %s, want 201", r.status, r.body)
	}
	checkLimited(t, "a registration from 127.0.0.3 over the tenant's limit", e.registerFrom("127.0.0.3", "acme", nil), "registrations_per_tenant", e, "1")
	checkLimited(t, "another from 127.0.0.3", e.registerFrom("127.0.0.3", "acme", nil), "registrations_per_tenant", e, "2")
	// The tenant's allowance grows; 127.0.0.3 still has both of its own.
	e.putTenant("acme", `{"name":"Acme","limits":{"registrations_per_address_per_minute":2,"registrations_per_minute":1000000}}`)
	// The tenant's bucket fills at the new rate from the next request on.
	natstest.Until(t, 5*time.Second, "a registration from 127.0.0.4", func() bool {
		return e.registerFrom("127.0.0.4", "acme", nil).status == http.StatusCreated
	})
	for i := range 2 {
		if r := e.registerFrom("127.0.0.3", "acme", nil); r.status != http.StatusCreated {
			t.Fatalf("registration %d from 127.0.0.3 after the tenant's limit rose = %d %s, want 201", i, r.status, r.body)
		}
	}
	checkLimited(t, "a third from 127.0.0.3", e.registerFrom("127.0.0.3", "acme", nil), "registrations_per_address", e, "1")
}

// TestBadRegistrationUsesNoAllowance: a registration refused as bad,
// by the gateway or by the privacy service, registered no one and spends
// none of the address's or the tenant's registrations.
func TestBadRegistrationUsesNoAllowance(t *testing.T) {
	e := startGateway(t)
	serveRegistrations(t, e)
	e.putTenant("acme", `{"name":"Acme","limits":{"registrations_per_address_per_minute":1,"registrations_per_minute":1}}`)
	for _, body := range []string{
		`{"consent":{"analytics":false}}`,
		`{"consent":`,
		`{"consent":{"analytics":false,"network_data":false,"ai":false}}`,
	} {
		if r := e.registerBody("127.0.0.2", "acme", body, nil); r.status/100 != 4 || r.status == http.StatusTooManyRequests {
			t.Errorf("registration with %s = %d %s, want refused as bad", body, r.status, r.body)
		}
	}
	if r := e.registerFrom("127.0.0.2", "acme", nil); r.status != http.StatusCreated {
		t.Fatalf("a good registration after bad ones = %d %s, want 201", r.status, r.body)
	}
	checkLimited(t, "a second good one", e.registerFrom("127.0.0.2", "acme", nil), "registrations_per_address", e, "1")

	// A sign-in begun where the tenant has no identity provider stores
	// nothing either.
	e.putTenant("bare", `{"name":"Bare","limits":{"registrations_per_address_per_minute":1,"registrations_per_minute":1}}`)
	for range 2 {
		if r := e.do(http.MethodGet, "/v1/tenants/bare/sign-in", "", nil); r.status != http.StatusConflict {
			t.Errorf("a sign-in of a tenant without a provider = %d %s, want 409", r.status, r.body)
		}
	}
	if r := e.registerFrom("127.0.0.1", "bare", nil); r.status != http.StatusCreated {
		t.Errorf("a registration after sign-ins of a tenant without a provider = %d %s, want 201", r.status, r.body)
	}
}

func TestRegistrationLimitsBehindAProxy(t *testing.T) {
	e := startGatewayWith(t, func(d *gateway.Deps) { d.ClientAddrHeader = "X-Forwarded-For" })
	serveRegistrations(t, e)
	e.putTenant("acme", `{"name":"Acme","limits":{"registrations_per_address_per_minute":1}}`)
	// The proxy appends the address it saw; what the client wrote before it
	// is not trusted.
	from := func(addr string) http.Header { return http.Header{"X-Forwarded-For": {"10.9.9.9, " + addr}} }
	if r := e.registerFrom("127.0.0.1", "acme", from("2001:db8::1")); r.status != http.StatusCreated {
		t.Fatalf("first registration = %d %s, want 201", r.status, r.body)
	}
	// The same /64.
	checkLimited(t, "second registration from 2001:db8::/64", e.registerFrom("127.0.0.1", "acme", from("2001:db8::2")), "registrations_per_address", e, "1")
	if r := e.registerFrom("127.0.0.1", "acme", from("2001:db8:0:1::1")); r.status != http.StatusCreated {
		t.Errorf("registration from another /64 = %d %s, want 201", r.status, r.body)
	}
}

func TestSlowBodyIsCutOff(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := startGatewayWith(t, func(d *gateway.Deps) { d.BodyReadTimeout = timeout })
	e.ensureChatStream()
	visitor := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	ws := e.dial(visitor, false)

	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"text\":", e.token(visitor))
	// The body never finishes: the gateway answers and hangs up.
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read answer to a slow body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("slow body answered %d %s %s, want a 408 problem", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	if got := e.rejections("body_read_deadline"); got != "1" {
		t.Errorf("rejections{limit=body_read_deadline} = %s, want 1", got)
	}
	e.healthy()

	// A WebSocket session is no request body: it outlives the deadline.
	time.Sleep(2 * timeout) // past the body deadline: what is tested, not synchronisation
	e.publish(event.ConversationOpened, "demo", "v1", "c1", event.Opened{Visitor: "v1", Text: "hello"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := ws.Read(ctx); err != nil {
		t.Errorf("WebSocket after the body deadline: %v, want an event", err)
	}

	// A body that does arrive in time is read as usual.
	serve(t, e.nc, chatapi.OpenSubject, func(context.Context, rpc.Request[chatapi.OpenArgs]) (chatapi.OpenResult, error) {
		return chatapi.OpenResult{ID: "c2"}, nil
	})
	if r := e.do(http.MethodPost, "/v1/conversations", e.token(visitor), []byte(`{"text":"hi"}`)); r.status != http.StatusCreated {
		t.Errorf("POST /v1/conversations = %d %s, want 201", r.status, r.body)
	}
}

func TestErasedVisitorIsShutOut(t *testing.T) {
	e := startGateway(t)
	e.ensureChatStream()
	v := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	ws := e.dial(v, false)
	// The session has asked for the keys before the erasure.
	natstest.Until(t, 5*time.Second, "keys fetched", func() bool { return e.keys.has("demo", "v1") })
	// Staff, who may have the visitor's conversations on screen, are told;
	// another visitor is not.
	staff := map[string]*websocket.Conn{
		"agent": e.dial(auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}, true),
		"admin": e.dial(auth.Principal{Tenant: "demo", ID: "root", Role: auth.RoleAdmin}, true),
	}
	other := auth.Principal{Tenant: "demo", ID: "v2", Role: auth.RoleVisitor}
	otherWS := e.dial(other, true)

	e.keys.erase("demo", "v1")
	b, _ := json.Marshal(personkey.Erased{Tenant: "demo", Person: "v1"})
	if err := e.nc.Publish(personkey.ErasedSubject, b); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := ws.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "subject erased" {
		t.Fatalf("open session after the erasure: %v, want closed 1008 subject erased", err)
	}
	checkErased(t, e, v)
	for who, c := range staff {
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != `{"type":"erased","visitor":"v1"}` {
			t.Errorf("%s's stream after the erasure = %s, %v; want the erased frame", who, got, err)
		}
	}
	e.publish(event.ConversationOpened, "demo", "v2", "c2", event.Opened{Visitor: "v2", Text: "hello"})
	if _, got, err := otherWS.Read(ctx); err != nil || !strings.Contains(string(got), `"type":"opened"`) {
		t.Errorf("another visitor's first frame after the erasure = %s, %v; want their own opening", got, err)
	}

	// Asking about the erasure, or for it again, is still allowed.
	serve(t, e.nc, privacyapi.EraseSubject, func(context.Context, rpc.Request[privacyapi.EraseArgs]) (privacyapi.Erasure, error) {
		return privacyapi.Erasure{ErasureID: "er1", Status: "completed"}, nil
	})
	if r := e.do(http.MethodDelete, "/v1/me", e.token(v), nil); r.status != http.StatusAccepted {
		t.Errorf("DELETE /v1/me after the erasure = %d %s, want 202", r.status, r.body)
	}
}

// TestErasedVisitorIsShutOutAfterRestart checks a gateway that never saw
// the erasure's broadcast: the key service's tombstone tells it.
func TestErasedVisitorIsShutOutAfterRestart(t *testing.T) {
	e := startGateway(t)
	e.keys.erase("demo", "v1")
	checkErased(t, e, auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	// Another visitor is unaffected.
	e.dial(auth.Principal{Tenant: "demo", ID: "v2", Role: auth.RoleVisitor}, false)
}

// checkErased checks that v's token opens no stream and makes no call.
func checkErased(t *testing.T, e *env, v auth.Principal) {
	t.Helper()
	if c, r := e.tryDial(v); c != nil || r.status != http.StatusGone {
		t.Errorf("new stream of an erased visitor = %d %s, want 410", r.status, r.body)
	} else {
		checkProblem(t, r, http.StatusGone)
	}
	r := e.do(http.MethodGet, "/v1/conversations", e.token(v), nil)
	checkProblem(t, r, http.StatusGone)
}

// TestErasedVisitorOpensNothing calls every operation of /v1/openapi.json
// that takes a token with an erased visitor's: none answers 2xx and none
// reaches a service on the bus, but DELETE /v1/me and GET
// /v1/erasures/{erasure_id}, with which the visitor follows their erasure.
func TestErasedVisitorOpensNothing(t *testing.T) {
	e := startGateway(t)
	v := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	e.keys.erase(v.Tenant, v.ID)
	token := e.token(v)
	// The first call learns the erasure from the key service, the others
	// from the gateway's cache.
	checkProblem(t, e.do(http.MethodGet, "/v1/conversations", token, nil), http.StatusGone)
	followed := map[string]bool{"DELETE /v1/me": true, "GET /v1/erasures/{erasure_id}": true, "GET /v1/stream": true}
	param := regexp.MustCompile(`\{[^}]+\}`)
	tried := 0
	for route, raw := range openAPIOperationObjects(t, e.do(http.MethodGet, "/v1/openapi.json", "", nil).body) {
		var op struct {
			Security *[]map[string][]string `json:"security"`
		}
		if json.Unmarshal(raw, &op) != nil || op.Security != nil && len(*op.Security) == 0 || followed[route] {
			continue // anonymous, or the erasure's own
		}
		method, path, _ := strings.Cut(route, " ")
		calls := countBus(t, e.nc)
		var body []byte
		if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
			body = []byte(`{}`)
		}
		r := e.do(method, param.ReplaceAllString(path, "x1"), token, body)
		if r.status < 400 {
			t.Errorf("%s with an erased visitor's token = %d, want a refusal", route, r.status)
		}
		if n := calls(); n != 0 {
			t.Errorf("%s with an erased visitor's token sent %d messages on parley.>, want 0", route, n)
		}
		tried++
	}
	if tried < 40 {
		t.Fatalf("tried %d operations of /v1/openapi.json, want every one that takes a token", tried)
	}
	// The stream is refused before its upgrade (checkErased).
	checkErased(t, e, v)
}

// TestPartBodyOutlivesHeaderTimeout sends the header fields and part of
// the body in one write, then nothing: the body deadline, longer than the
// server's 10 s for the header fields, is what answers, with a 408 problem,
// whether the body has a length or is chunked.
func TestPartBodyOutlivesHeaderTimeout(t *testing.T) {
	const timeout = 12 * time.Second
	e := startGatewayWith(t, func(d *gateway.Deps) { d.BodyReadTimeout = timeout })
	tests := []struct {
		name    string
		framing string
		part    string
	}{
		{"content-length", "Content-Length: 100", `{"con`},
		{"chunked", "Transfer-Encoding: chunked", "5\r\n{\"con"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			fmt.Fprintf(conn, "POST /v1/tenants/demo/visitors HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s\r\n\r\n%s", tt.framing, tt.part)
			conn.SetReadDeadline(start.Add(timeout + 20*time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("read answer after %v: %v, want a 408 problem", time.Since(start), err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("part body answered %d %s %s, want a 408 problem", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			if d := time.Since(start); d < timeout {
				t.Errorf("answered after %v, want the body deadline of %v", d, timeout)
			}
		})
	}
	t.Cleanup(func() {
		if got := e.rejections("body_read_deadline"); got != "2" {
			t.Errorf("rejections{limit=body_read_deadline} = %s, want 2", got)
		}
	})
}
