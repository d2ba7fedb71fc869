// Package httpapi is the gateway's HTTP port: it authenticates callers,
// validates their input, forwards valid requests to the services over the
// bus, and maps every error to an RFC 9457 problem in one place (problemFor).
//
// A request that fails authentication or validation never reaches the bus.
// Nothing about the caller's network or client — IP address, user agent,
// language, location — is logged, and nothing is read or forwarded but at
// visitor registration, where internal/netdata decides: the network (/24,
// /48) and browser family of a visitor who consents, in a tenant that
// collects them. The registration limit per address keys on an HMAC of the
// address (addressKeys), which cannot be turned back into it.
package httpapi

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/services/gateway/internal/live"
	"github.com/parley-chat/parley/services/gateway/internal/settings"
	"github.com/parley-chat/parley/services/gateway/internal/signin"
	"github.com/parley-chat/parley/services/gateway/internal/tenant"
	"github.com/parley-chat/parley/services/gateway/internal/web"
)

//go:embed openapi.json
var openAPI []byte

// Config holds what the API needs. Every field but Ready is required.
type Config struct {
	NC         *nats.Conn
	Log        *slog.Logger
	Signer     *auth.Signer
	Verifier   *auth.Verifier
	Tenants    *tenant.Registry
	Settings   *settings.Reader
	Hub        *live.Hub
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Providers are the tenants' identity providers, SignIn the sign-ins
	// through them.
	Providers *signin.Providers
	SignIn    *signin.Flow
	// AccessTokenTTL is how long the access tokens of sessions last.
	AccessTokenTTL time.Duration
	// RateLimit is the requests per second of one principal; 0 means
	// defaultPrincipalRate, a negative value no limit.
	RateLimit float64
	// Ready is an extra readiness check; nil means none.
	Ready func(context.Context) error
	// StreamContext bounds every WebSocket session: when it is done, they
	// end.
	StreamContext context.Context
	// Keys tells an erased visitor: their token opens nothing more.
	Keys live.Keys
	// MaxSessions bounds the WebSocket sessions of the process; 0 means no
	// bound.
	MaxSessions int
	// BodyReadTimeout bounds the reading of a request body, from when the
	// handler starts; 0 means defaultBodyReadTimeout.
	BodyReadTimeout time.Duration
	// ClientAddrHeader names the header a trusted reverse proxy writes the
	// client's address in (X-Forwarded-For, X-Real-IP), for the limit on
	// registrations per address and the network data of visitors who
	// consent to it; "" means the peer address. Any client can write the
	// header: set it only behind a proxy that overwrites it.
	ClientAddrHeader string
	// MaxConns bounds the connections of the process served on Listener,
	// MaxConnsPerAddr those of one peer address (an IPv6 /64); 0 means no
	// bound. Behind a reverse proxy every connection comes from the proxy.
	MaxConns, MaxConnsPerAddr int
	// Web serves the front-end's files (the widget, the demo page); nil
	// means none.
	Web *web.Handler
}

// defaultBodyReadTimeout leaves a slow mobile client ample time for the
// largest body (maxBody).
const defaultBodyReadTimeout = 30 * time.Second

// defaultPrincipalRate is the requests per second a principal's requests
// share; visitor registration is limited per tenant and per client address
// by the tenant's limits (tenant.Limits).
const defaultPrincipalRate = 50

// unavailableRetryAfter is the Retry-After, in seconds, of a 503: a
// JetStream stream electing a new leader takes a few seconds.
const unavailableRetryAfter = 2

// API is the gateway's HTTP handler.
type API struct {
	cfg       Config
	mux       *http.ServeMux
	principal *limiter
	// registrations are keyed by tenant, addresses by addressKeys.
	registrations *limiter
	addresses     *limiter
	addressKeys   addressKeys
	conns         *conns
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	rejections    *prometheus.CounterVec

	readyMu  sync.Mutex
	notReady bool // as the last /readyz found
}

// New returns the API, its metrics registered with cfg.Registerer.
func New(cfg Config) (*API, error) {
	principalRate := rate.Limit(cfg.RateLimit)
	switch {
	case cfg.RateLimit == 0:
		principalRate = defaultPrincipalRate
	case cfg.RateLimit < 0:
		principalRate = rate.Inf
	}
	// Two seconds' worth of requests, but at least one: below one request a
	// second it would round down to none, and no request would ever pass.
	principalBurst := max(1, 2*int(min(principalRate, 1e6)))
	a := &API{
		cfg:       cfg,
		mux:       http.NewServeMux(),
		principal: newLimiter(principalRate, principalBurst),
		// Their allowances are the tenant's, given at each take.
		registrations: newLimiter(0, 0),
		addresses:     newLimiter(0, 0),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "gateway", Name: "http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "parley", Subsystem: "gateway", Name: "http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern (WebSocket sessions excluded).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "parley", Subsystem: "gateway", Name: "limit_rejections_total",
			Help: "Requests and WebSocket sessions refused for a limit, by limit.",
		}, []string{"limit"}),
	}
	a.conns = &conns{max: cfg.MaxConns, perAddr: cfg.MaxConnsPerAddr, keys: &a.addressKeys, rejected: a.rejected, ofAddr: make(map[string]int)}
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "parley", Subsystem: "gateway", Name: "connections",
		Help: "HTTP connections open, WebSocket sessions included.",
	}, func() float64 { return float64(a.conns.count()) })
	if a.cfg.BodyReadTimeout == 0 {
		a.cfg.BodyReadTimeout = defaultBodyReadTimeout
	}
	for _, c := range []prometheus.Collector{a.requests, a.latency, a.rejections, open} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, err
		}
	}
	a.routes()
	a.staticRoutes()
	return a, nil
}

func (a *API) routes() {
	m := a.mux
	m.Handle("PUT /v1/tenants/{tenant}", a.handle(a.putTenant))
	m.Handle("GET /v1/tenants", a.handle(a.listTenants))
	m.Handle("POST /v1/tenants/{tenant}/visitors", a.handle(a.createVisitor))
	m.Handle("GET /v1/tenants/{tenant}/notice", a.handle(a.getNotice))
	m.Handle("POST /v1/sessions/refresh", a.handle(a.refreshSession))
	m.Handle("POST /v1/sessions/sign-out", a.handle(a.signOut))
	m.Handle("GET /v1/me", a.handle(a.getMe))
	m.Handle("DELETE /v1/me/sessions", a.handle(a.signOutEverywhere))
	m.Handle("DELETE /v1/people/{id}/sessions", a.handle(a.signOutEverywhere))
	m.Handle("PUT /v1/tenants/{tenant}/identity-provider", a.handle(a.putProvider))
	m.Handle("GET /v1/tenants/{tenant}/identity-provider", a.handle(a.getProvider))
	m.Handle("GET /v1/tenants/{tenant}/sign-in", a.handle(a.startSignIn))
	m.Handle("GET /v1/sign-in/callback", a.handle(a.finishSignIn))
	m.Handle("POST /v1/conversations", a.handle(a.openConversation))
	m.Handle("GET /v1/conversations", a.handle(a.listConversations))
	m.Handle("GET /v1/conversations/{id}", a.handle(a.getConversation))
	m.Handle("POST /v1/conversations/{id}/messages", a.handle(a.postMessage))
	m.Handle("GET /v1/conversations/{id}/messages", a.handle(a.listMessages))
	m.Handle("DELETE /v1/conversations/{id}/messages/{message_id}", a.handle(a.withdrawMessage))
	m.Handle("POST /v1/conversations/{id}/assign", a.handle(a.assign))
	m.Handle("POST /v1/conversations/{id}/handoff", a.handle(a.bodiless(chatapi.HandOffSubject)))
	m.Handle("POST /v1/conversations/{id}/close", a.handle(a.bodiless(chatapi.CloseSubject)))
	m.Handle("POST /v1/conversations/{id}/rating", a.handle(a.rate))
	m.Handle("GET /v1/stream", a.handle(a.stream))
	m.Handle("GET /v1/me/consent", a.handle(a.getConsent))
	m.Handle("PUT /v1/me/consent", a.handle(a.putConsent))
	m.Handle("PUT /v1/me/presence", a.handle(a.putPresence))
	m.Handle("GET /v1/agents/{id}", a.handle(a.getAgent))
	m.Handle("PUT /v1/agents/{id}/capacity", a.handle(a.putCapacity))
	m.Handle("GET /v1/me/export", a.handle(a.exportMe))
	m.Handle("DELETE /v1/me", a.handle(a.eraseMe))
	m.Handle("PUT /v1/me/profile", a.handle(a.putProfile))
	m.Handle("GET /v1/me/profile", a.handle(a.getProfile))
	m.Handle("DELETE /v1/me/profile", a.handle(a.deleteProfile))
	m.Handle("POST /v1/subjects/{id}/erase", a.handle(a.eraseSubject))
	m.Handle("GET /v1/subjects/{id}/export", a.handle(a.exportSubject))
	m.Handle("GET /v1/erasures/{erasure_id}", a.handle(a.erasureStatus))
	m.Handle("GET /v1/training-export", a.handle(a.trainingExport))
	m.Handle("GET /v1/audit", a.handle(a.listAudit))
	m.Handle("GET /v1/bots/{id}/deliveries", a.handle(a.botDeliveries))
	m.Handle("GET /v1/integrations/{id}/deliveries", a.handle(a.integrationDeliveries))
	m.Handle("GET /v1/audit/checkpoint", a.handle(a.auditCheckpoint))
	m.Handle("GET /v1/settings", a.handle(a.getSettings))
	m.Handle("PUT /v1/settings", a.handle(a.putSettings))
	m.Handle("GET /v1/metrics/{name}", a.handle(a.getMetric))
	m.Handle("PUT /v1/bots/{id}", a.handle(a.putBot))
	m.Handle("GET /v1/bots/{id}", a.handle(a.getBot))
	m.Handle("DELETE /v1/bots/{id}", a.handle(a.deleteBot))
	m.Handle("GET /v1/bots", a.handle(a.listBots))
	m.Handle("POST /v1/bots/{id}/session", a.handle(a.startBotSession))
	m.Handle("PUT /v1/integrations/{id}", a.handle(a.putIntegration))
	m.Handle("GET /v1/integrations/{id}", a.handle(a.getIntegration))
	m.Handle("DELETE /v1/integrations/{id}", a.handle(a.deleteIntegration))
	m.Handle("GET /v1/integrations", a.handle(a.listIntegrations))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.Handle("GET /readyz", a.handle(a.ready))
	m.Handle("GET /metrics", promhttp.HandlerFor(a.cfg.Gatherer, promhttp.HandlerOpts{}))
	m.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
}

// handle adapts a handler that returns an error, writing the error as a
// problem.
func (a *API) handle(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := fn(w, r)
		if err == nil {
			return
		}
		var cut *answerCut
		if errors.As(err, &cut) {
			if r.Context().Err() == nil {
				a.cfg.Log.Warn("answer cut off", "method", r.Method, "route", r.Pattern, "err", err)
			}
			// net/http closes the connection and logs nothing.
			panic(http.ErrAbortHandler)
		}
		p, internal := problemFor(err)
		// A client that went away is no failure of ours.
		if internal && r.Context().Err() == nil {
			a.cfg.Log.Error("request failed", "method", r.Method, "route", r.Pattern, "err", err)
		}
		switch {
		case rpc.CodeOf(err) == rpc.CodeLimited:
			a.rejected(chatLimits[r.Pattern])
		case errors.Is(err, errBodyDeadline):
			a.rejected(limitBodyDeadline)
		}
		if d, ok := retryAfter(err); ok {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(d)))
		} else if p.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(unavailableRetryAfter))
		}
		writeProblem(w, p)
	})
}

// MaxHeaderBytes bounds a request's line and header fields: a larger
// request is answered 431 with a problem. The server itself must refuse
// larger ones still, before any handler runs, in plain text: it is given
// twice this limit (see ServerMaxHeaderBytes), so that the API answers
// every header of reasonable size.
const MaxHeaderBytes = 32 << 10

// ServerMaxHeaderBytes is the http.Server.MaxHeaderBytes the API is served
// with.
const ServerMaxHeaderBytes = 2 * MaxHeaderBytes

// ServeHTTP serves the API, recording each request's route pattern, status
// and duration — and nothing else about it.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, req: r, status: http.StatusOK}
	// Deferred, so that an answer cut off (answerCut) is counted too.
	defer a.observe(r, rec, start)
	h := w.Header()
	// Bearer tokens, not cookies, authenticate, so any site may embed the
	// widget and call the API.
	h.Set("Access-Control-Allow-Origin", "*")
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		// The API's answers are a principal's, or hold tokens, which no
		// browser or cache may keep (RFC 6749 §5.1). A handler whose answer
		// may be kept, the same for all, sets its own (the privacy notice).
		h.Set("Cache-Control", "no-store")
	}
	switch {
	case headerBytes(r) > MaxHeaderBytes:
		p, _ := problemFor(errHeaderTooLarge)
		writeProblem(rec, p)
	case r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "":
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key")
		h.Set("Access-Control-Max-Age", "600")
		rec.WriteHeader(http.StatusNoContent)
	default:
		if r.Body != http.NoBody {
			// A body that never finishes must not hold the connection and
			// its goroutine: decode lifts the deadline once it has read the
			// whole body, so that it does not cut a long answer short.
			http.NewResponseController(w).SetReadDeadline(start.Add(a.cfg.BodyReadTimeout))
		}
		a.mux.ServeHTTP(rec, r)
	}
}

// observe counts a request and its duration.
func (a *API) observe(r *http.Request, rec *statusRecorder, start time.Time) {
	route := r.Pattern
	// The mux names the pattern of the clean path it redirects to.
	if route == "" || rec.redirected {
		route = "unmatched"
	}
	d := time.Since(start)
	a.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
	if rec.status != http.StatusSwitchingProtocols {
		a.latency.WithLabelValues(route).Observe(d.Seconds())
	}
	// Asked first: the arguments cost allocations on every request even when
	// the line is not written.
	if a.cfg.Log.Enabled(r.Context(), slog.LevelDebug) {
		a.cfg.Log.Debug("http request", "method", r.Method, "route", route, "status", rec.status, "duration", d)
	}
}

// headerBytes is the size of r's request line and header fields as they
// were sent, give or take the spaces around the colons.
func headerBytes(r *http.Request) int {
	const crlf = 2
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + crlf
	// net/http moves the Host field out of the header.
	n += len("Host: ") + len(r.Host) + crlf
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + crlf
		}
	}
	return n
}

// statusRecorder notes the status of the answer and makes every error a
// problem. Code that is not this package's answers in its own way: the mux
// answers a request no route matches with 404, or 405 with Allow, in plain
// text, a request-target of "*" with 400, and a path it would clean
// ("//v1/x", "/v1/./x") with a redirect to the clean one; the WebSocket
// handshake answers 426 or 400 in plain text, the metrics handler 500. Any
// answer of 300 or more written without the problem content type is
// replaced by the problem of its status, keeping headers such as Allow and
// Upgrade, and its own body is dropped. A redirect becomes 404: the API
// serves each resource under one path, and redirects nowhere.
type statusRecorder struct {
	http.ResponseWriter
	req     *http.Request
	status  int
	written bool
	// replaced is set once an answer was replaced by a problem.
	replaced bool
	// redirected is set when the replaced answer was a redirect: no route
	// served the request.
	redirected bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.written {
		s.ResponseWriter.WriteHeader(code)
		return
	}
	s.written = true
	h := s.Header()
	// 304 answers a revalidation of a front-end file (see staticRoutes).
	if code < 300 || code == http.StatusNotModified || strings.HasPrefix(h.Get("Content-Type"), problemContentType) {
		s.status = code
		s.ResponseWriter.WriteHeader(code)
		return
	}
	s.replaced, s.redirected = true, code < 400
	h.Del("Location")
	h.Del("Content-Length")
	// The mux sets the request's pattern as it routes.
	p, _ := problemFor(answerError(code, s.req.Pattern != ""))
	s.status = p.Status
	writeProblem(s.ResponseWriter, p)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.replaced {
		return len(b), nil
	}
	s.written = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController and the WebSocket upgrade reach the
// connection.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeJSONParts answers a JSON document already encoded in parts, written
// as they are. A write that fails has lost the client: nothing is left to
// answer.
func writeJSONParts(w http.ResponseWriter, status int, parts ...[]byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	for _, b := range parts {
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}

// token returns the request's bearer token: the Authorization header, or
// for WebSocket upgrades (browsers cannot set headers on them) the
// access_token query parameter.
func token(r *http.Request, allowQuery bool) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return ""
		}
		return strings.TrimSpace(tok)
	}
	if allowQuery {
		return r.URL.Query().Get("access_token")
	}
	return ""
}

// authenticate returns the verified principal of r.
func (a *API) authenticate(r *http.Request, allowQuery bool) (auth.Principal, error) {
	tok := token(r, allowQuery)
	if tok == "" {
		return auth.Principal{}, errNoToken
	}
	p, err := a.cfg.Verifier.Verify(tok)
	if err != nil {
		return auth.Principal{}, err
	}
	if err := a.principal.take(string(p.Role) + ":" + p.Tenant + ":" + p.ID); err != nil {
		a.rejected(limitRequests)
		return auth.Principal{}, err
	}
	return p, nil
}

// rejected counts a refusal for limit.
func (a *API) rejected(limit string) {
	if limit != "" {
		a.rejections.WithLabelValues(limit).Inc()
	}
}

// member returns the principal of r acting within its own tenant: never the
// operator, and only for a tenant that exists.
func (a *API) member(r *http.Request, allowQuery bool) (auth.Principal, error) {
	p, err := a.authenticate(r, allowQuery)
	if err != nil {
		return p, err
	}
	if p.Role == auth.RoleOperator {
		return p, errOperatorScope
	}
	if !a.cfg.Tenants.Exists(p.Tenant) {
		return p, errUnknownTenant
	}
	return p, nil
}

// checkErased returns errErased for a visitor the key service says is
// erased: their token still verifies until it expires, but opens nothing.
// It runs just before a visitor's request would reach the bus anyway, so
// that a request refused for its input never does. The key cache remembers
// the answer and learns erasures from their broadcast, so a visitor's calls
// ask the key service once per process; when it cannot be asked the request
// goes on, as the services behind refuse an erased visitor's commands
// themselves.
func (a *API) checkErased(ctx context.Context, p auth.Principal) error {
	if p.Role != auth.RoleVisitor {
		return nil
	}
	if _, err := a.cfg.Keys.Get(ctx, p.Tenant, p.ID); errors.Is(err, personkey.ErrErased) {
		return errErased
	}
	return nil
}

func (a *API) operator(r *http.Request) error {
	p, err := a.authenticate(r, false)
	if err != nil {
		return err
	}
	if p.Role != auth.RoleOperator {
		return errOperatorOnly
	}
	return nil
}

func (a *API) ready(w http.ResponseWriter, r *http.Request) error {
	err := a.readiness(r.Context())
	a.noteReadiness(err)
	if err != nil {
		return errNotReady
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func (a *API) readiness(ctx context.Context) error {
	if !a.cfg.NC.IsConnected() {
		return errors.New("not connected to the bus")
	}
	if a.cfg.Ready == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return a.cfg.Ready(ctx)
}

// noteReadiness logs a change of readiness only: probes ask every few
// seconds, and a gateway waiting for its services would log each of them.
func (a *API) noteReadiness(err error) {
	a.readyMu.Lock()
	defer a.readyMu.Unlock()
	switch {
	case err != nil && !a.notReady:
		a.cfg.Log.Warn("not ready", "err", err)
	case err == nil && a.notReady:
		a.cfg.Log.Info("ready again")
	}
	a.notReady = err != nil
}

func (a *API) stream(w http.ResponseWriter, r *http.Request) error {
	p, err := a.member(r, true)
	if err != nil {
		return err
	}
	if err := a.checkErased(r.Context(), p); err != nil {
		return err
	}
	since, err := sinceSeq(r)
	if err != nil {
		return err
	}
	lim := a.cfg.Tenants.Limits(p.Tenant)
	sessions := live.Limits{Principal: lim.SessionsPerPrincipal, Tenant: lim.Sessions, Process: a.cfg.MaxSessions}
	err = a.cfg.Hub.Start(a.cfg.StreamContext, r.Context(), p, sessions, since, func() (*websocket.Conn, error) {
		return websocket.Accept(smallBuffers{w}, r, &websocket.AcceptOptions{
			// Cross-site WebSocket hijacking needs ambient credentials
			// (cookies); a bearer token in the request is not one, and the
			// widget runs on the tenants' own sites.
			InsecureSkipVerify: true,
		})
	})
	for _, l := range []struct {
		err   error
		limit string
		is    *statusError
	}{
		{live.ErrPrincipalSessions, limitSessionsOfOne, errSessionsOfOne},
		{live.ErrTenantSessions, limitSessionsTenant, errSessionsOfAll},
		{live.ErrProcessSessions, limitSessionsProcess, errSessionsFull},
	} {
		if errors.Is(err, l.err) {
			a.rejected(l.limit)
			return &rateLimited{retryAfter: sessionRetry, cause: l.is}
		}
	}
	switch {
	case errors.Is(err, live.ErrClosing):
		return errNotReady
	case errors.Is(err, live.ErrUnavailable):
		// The bus is down or slow: the client tries again, as readiness
		// tells the operator.
		return errors.Join(errNotReady, err)
	case errors.Is(err, live.ErrNoStream):
		return errRole
	case errors.Is(err, live.ErrNotAudited):
		// The auditor logged the cause.
		return errNotAudited
	}
	// nil, or an error Start has not answered the client for: logged here.
	return err
}

// smallBuffers hands the WebSocket smaller buffers than net/http's 4 KiB
// reader and writer: a session holds its connection for hours, mostly idle,
// and those buffers would be most of its memory. Live events are small, and
// larger writes bypass the buffer.
type smallBuffers struct{ http.ResponseWriter }

const (
	wsReadBuffer  = 512
	wsWriteBuffer = 1 << 10
)

func (s smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// Keep whatever the client sent right after its handshake.
	var r io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn)
	}
	return conn, bufio.NewReadWriter(bufio.NewReaderSize(r, wsReadBuffer), bufio.NewWriterSize(conn, wsWriteBuffer)), nil
}
