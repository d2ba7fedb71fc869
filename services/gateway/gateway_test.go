package gateway_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/services/gateway"
)

// env is a running gateway on a real embedded JetStream and a real HTTP
// listener.
type env struct {
	t       *testing.T
	base    string
	nc      *nats.Conn
	js      jetstream.JetStream
	signer  *auth.Signer
	logs    *syncBuffer
	keys    *keyService
	audits  *auditService
	cancel  context.CancelFunc
	done    chan error
	ready   func(context.Context) error
	readyMu sync.Mutex
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// keyService stands in for the privacy service's key service: it serves a
// random key per subject until the subject is erased.
type keyService struct {
	mu     sync.Mutex
	keys   map[string]personkey.Keys
	erased map[string]bool
}

// erase makes the subject's keys gone for good, as its tombstone does.
func (k *keyService) erase(tenant, subject string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.erased == nil {
		k.erased = make(map[string]bool)
	}
	k.erased[tenant+"."+subject] = true
}

func (k *keyService) isErased(tenant, subject string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.erased[tenant+"."+subject]
}

// has reports whether the subject's keys were asked for.
func (k *keyService) has(tenant, subject string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.keys[tenant+"."+subject]
	return ok
}

func (k *keyService) get(tenant, subject string) personkey.Keys {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := tenant + "." + subject
	if ks, ok := k.keys[id]; ok {
		return ks
	}
	d, _ := seal.NewKey()
	p, _ := seal.NewKey()
	ks := personkey.Keys{Data: d, Pseudonym: p}
	k.keys[id] = ks
	return ks
}

func startGateway(t *testing.T) *env {
	t.Helper()
	return startGatewayWith(t, func(*gateway.Deps) {})
}

// startGatewayWith is startGateway with Deps as tune leaves them.
func startGatewayWith(t *testing.T, tune func(*gateway.Deps)) *env {
	t.Helper()
	srv := natstest.Start(t, "")
	nc, js := natstest.Connect(t, srv)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, nc: nc, js: js, signer: auth.NewSigner(priv), logs: &syncBuffer{}, keys: &keyService{keys: make(map[string]personkey.Keys)}, audits: &auditService{}, done: make(chan error, 1)}

	serve(t, nc, personkey.GetSubject, func(_ context.Context, req personkey.Request) (personkey.Keys, error) {
		if e.keys.isErased(req.Tenant, req.Person) {
			return personkey.Keys{}, rpc.Errorf(rpc.CodeGone, "subject erased")
		}
		return e.keys.get(req.Tenant, req.Person), nil
	})

	serve(t, nc, privacyapi.AuditStreamSubject, e.audits.open)

	gnc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gnc.Close)
	cache, err := personkey.NewCache(gnc)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	deps := gateway.Deps{
		NC:            gnc,
		Log:           log,
		Listener:      ln,
		Signer:        e.signer,
		Verifier:      auth.NewVerifier(pub),
		Keys:          cache,
		DefaultTenant: "demo",
		Ready: func(ctx context.Context) error {
			e.readyMu.Lock()
			defer e.readyMu.Unlock()
			if e.ready == nil {
				return nil
			}
			return e.ready(ctx)
		},
	}
	tune(&deps)
	go func() { e.done <- gateway.Run(ctx, deps) }()
	t.Cleanup(func() {
		cancel()
		if err := natstest.Returns(t, 10*time.Second, "shutdown", e.done); err != nil {
			t.Errorf("Run() = %v, want nil after shutdown", err)
		}
	})
	natstest.Until(t, 5*time.Second, "gateway up", func() bool {
		resp, err := http.Get(e.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return e
}

// serve runs a test responder for another service's subject.
func serve[Req, Resp any](t *testing.T, nc *nats.Conn, subject string, fn func(context.Context, Req) (Resp, error)) {
	t.Helper()
	served, err := rpc.Serve(t.Context(), nc, slog.New(slog.DiscardHandler), rpc.Service{Name: "fake", Queue: "test",
		Groups: []rpc.Group{{Routes: []rpc.Route{{Subject: subject, Handler: rpc.Handle(fn)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(served.Stop)
}

func (e *env) token(p auth.Principal) string {
	e.t.Helper()
	tok, err := e.signer.Issue(p, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) operator() string {
	return e.token(auth.Principal{Tenant: auth.OperatorTenant, ID: "op", Role: auth.RoleOperator})
}

type response struct {
	status      int
	contentType string
	header      http.Header
	body        []byte
}

// bodyOf is a table test's request body: none when s is empty.
func bodyOf(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func (e *env) do(method, path, token string, body []byte) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), header: resp.Header, body: b}
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// countBus counts every message sent to a parley.> subject (every rpc
// request of every service) from now on.
func countBus(t *testing.T, nc *nats.Conn) func() int {
	t.Helper()
	var mu sync.Mutex
	n := 0
	sub, err := nc.Subscribe("parley.>", func(*nats.Msg) {
		mu.Lock()
		n++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() int {
		// A round trip through the server delivers whatever was sent before.
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	e := startGateway(t)
	op := e.operator()
	e.do(http.MethodPut, "/v1/tenants/acme", op, []byte(`{"name":"Acme"}`))
	const secret = "my secret text 42"
	visitor := e.token(auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor})
	e.do(http.MethodPost, "/v1/conversations", visitor, []byte(`{"text":"`+secret+`"}`))
	e.do(http.MethodGet, "/v1/stream?access_token="+visitor, "", nil)
	var logs strings.Builder
	for line := range strings.Lines(e.logs.String()) {
		// The listen address is the server's own, not a client's.
		if !strings.Contains(line, `"msg":"gateway listening"`) {
			logs.WriteString(line)
		}
	}
	if !strings.Contains(logs.String(), `"route":"PUT /v1/tenants/{tenant}"`) {
		t.Errorf("logs hold no request record for PUT /v1/tenants/{tenant}:\n%s", logs.String())
	}
	for _, s := range []string{secret, op, visitor, "127.0.0.1"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs hold %q:\n%s", s, logs.String())
		}
	}
}
