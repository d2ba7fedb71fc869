package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/gateway/internal/httpapi"
	"github.com/parley-chat/parley/services/gateway/internal/live"
	"github.com/parley-chat/parley/services/gateway/internal/settings"
	"github.com/parley-chat/parley/services/gateway/internal/signin"
	"github.com/parley-chat/parley/services/gateway/internal/tenant"
	"github.com/parley-chat/parley/services/gateway/internal/web"
)

// Deps is what the gateway runs on.
type Deps struct {
	NC       *nats.Conn     // required
	Log      *slog.Logger   // required
	Listener net.Listener   // required: where to serve HTTP
	Signer   *auth.Signer   // required: issues visitor tokens
	Verifier *auth.Verifier // required
	// Keys is required: visitor keys, to decrypt live events.
	Keys *personkey.Cache
	// Registry is what /metrics serves; nil means a new one with the Go and
	// process collectors.
	Registry *prometheus.Registry
	// DefaultTenant is created, named "Demo", at start when missing; ""
	// means none.
	DefaultTenant string
	// AccessTokenTTL is how long an access token of a session lasts (a
	// visitor's, or a member of staff's who signed in); 0 means
	// DefaultAccessTokenTTL. A token stays valid until it expires, whatever
	// happens to its session: keep it short.
	AccessTokenTTL time.Duration
	// LoopbackIdentityProviders lets sign-ins call identity providers on
	// loopback addresses, for a try-out on one machine; otherwise the
	// gateway calls no loopback, link-local or unspecified address for a
	// sign-in.
	LoopbackIdentityProviders bool
	// Now is the clock of sign-ins (the id token's expiry, a pending
	// sign-in's age); nil means time.Now. The Signer and Verifier have
	// their own.
	Now func() time.Time
	// Streams tune the KV buckets the gateway owns (TENANTS,
	// IDENTITY_PROVIDERS, SIGN_IN).
	Streams stream.Options
	// RateLimit is the requests per second one principal may make (with a
	// burst of twice as many); 0 means 50, a negative value no limit.
	RateLimit float64
	// Ready is an extra readiness check (e.g. ClickHouse); nil means none.
	// The gateway is never ready while chat or privacy does not answer
	// (PingServices), whatever Ready says.
	Ready func(context.Context) error
	// MaxSessions bounds the WebSocket sessions of the process; 0 means
	// derived from the open-file limit (see sessionCap), a negative value
	// no bound.
	MaxSessions int
	// BodyReadTimeout bounds the reading of a request body; 0 means 30s.
	BodyReadTimeout time.Duration
	// ClientAddrHeader names the header a trusted reverse proxy writes the
	// client's address in, for the limits per address and the network data
	// of visitors who consent to it; "" means the peer address.
	ClientAddrHeader string
	// MaxConns bounds the HTTP connections of the process, WebSocket
	// sessions included; 0 means derived from the open-file limit (see
	// connCap), a negative value no bound. At the bound a new connection
	// closes the one idle the longest, or is closed at once when none is.
	MaxConns int
	// MaxConnsPerAddr bounds the HTTP connections of one peer address (an
	// IPv6 /64); 0 means no bound. Behind a reverse proxy every connection
	// comes from the proxy: leave it 0 there, or above what the proxy opens.
	MaxConnsPerAddr int
}

// DefaultAccessTokenTTL is how long an access token lasts by default: the
// longest a signed-out or revoked session goes on opening calls.
const DefaultAccessTokenTTL = 15 * time.Minute

// ShutdownTimeout bounds the graceful shutdown of the HTTP server: the
// requests under way. SessionsCloseTimeout bounds, after it, the closing of
// the WebSocket sessions, which the hub spreads over up to half of it so
// that their clients do not all come back to the other instances at once.
const (
	ShutdownTimeout      = 5 * time.Second
	SessionsCloseTimeout = 15 * time.Second
)

func (d Deps) validate() error {
	switch {
	case d.NC == nil:
		return errors.New("gateway: Deps.NC is required")
	case d.Log == nil:
		return errors.New("gateway: Deps.Log is required")
	case d.Listener == nil:
		return errors.New("gateway: Deps.Listener is required")
	case d.Signer == nil:
		return errors.New("gateway: Deps.Signer is required")
	case d.Verifier == nil:
		return errors.New("gateway: Deps.Verifier is required")
	case d.Keys == nil:
		return errors.New("gateway: Deps.Keys is required")
	case d.DefaultTenant != "" && !auth.ValidTenantID(d.DefaultTenant):
		return fmt.Errorf("gateway: Deps.DefaultTenant %q: want 1-63 of [a-z0-9-]", d.DefaultTenant)
	}
	return nil
}

// Run serves the gateway on d.Listener until ctx is done, then shuts down
// gracefully: it stops accepting requests and waits for in-flight ones
// (ShutdownTimeout), then closes every WebSocket session with "going away"
// (SessionsCloseTimeout). It returns nil after a clean shutdown. When serving fails (the
// listener fails, say) or the tenant registry stops, it shuts down the
// same way and returns why. Run closes d.Listener.
func Run(ctx context.Context, d Deps) error {
	if err := d.validate(); err != nil {
		return err
	}
	if d.AccessTokenTTL == 0 {
		d.AccessTokenTTL = DefaultAccessTokenTTL
	}
	switch {
	case d.MaxSessions == 0:
		d.MaxSessions = sessionCap()
	case d.MaxSessions < 0:
		d.MaxSessions = 0
	}
	switch {
	case d.MaxConns == 0:
		d.MaxConns = connCap()
	case d.MaxConns < 0:
		d.MaxConns = 0
	}
	reg := d.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	log := d.Log

	js, err := jetstream.New(d.NC)
	if err != nil {
		return fmt.Errorf("gateway: jetstream: %w", err)
	}
	tenants, err := tenant.Open(ctx, js, d.Streams, log)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer tenants.Close()
	tenantSettings, err := settings.Open(ctx, js, log)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer tenantSettings.Close()
	if d.DefaultTenant != "" {
		if err := tenants.Ensure(ctx, tenant.Tenant{ID: d.DefaultTenant, Name: "Demo"}); err != nil {
			return fmt.Errorf("gateway: default tenant: %w", err)
		}
	}

	providers, err := signin.OpenProviders(ctx, js, d.Streams, log)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	flow, err := signin.Open(ctx, js, d.Streams, providers, d.Now, d.LoopbackIdentityProviders, log)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}

	hub := live.NewHub(log, d.Keys, live.JetStreamHistory(js))
	hub.Follow(d.NC)
	typing, err := hub.Typing(d.NC, func(ctx context.Context, p auth.Principal, conv string) (chatapi.Summary, error) {
		var sum chatapi.Summary
		err := rpc.Call(ctx, d.NC, chatapi.TypingSubject, rpc.Request[chatapi.ConversationArgs]{Principal: p, Args: chatapi.ConversationArgs{Conversation: conv}}, &sum)
		return sum, err
	})
	if err != nil {
		return fmt.Errorf("gateway: subscribe %s: %w", chatapi.TypingSignals, err)
	}
	defer typing.Unsubscribe()
	hub.Audit(func(ctx context.Context, p auth.Principal, since *uint64) error {
		req := rpc.Request[privacyapi.AuditStreamArgs]{Principal: p, Args: privacyapi.AuditStreamArgs{Tenant: p.Tenant, Since: since}}
		if err := rpc.Call(ctx, d.NC, privacyapi.AuditStreamSubject, req, nil); err != nil {
			// The client is told only that the stream was not audited; the
			// operator needs the cause.
			log.Warn("append a live stream to the audit trail", "role", p.Role, "err", err)
			return fmt.Errorf("append %s to the audit trail: %w", audit.ActionStreamOpen, err)
		}
		return nil
	})
	defer d.Keys.OnErase(func(e personkey.Erased) { hub.Erased(e.Tenant, e.Person) })()

	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "parley", Subsystem: "gateway", Name: "live_sessions",
		Help: "WebSocket sessions currently connected.",
	}, func() float64 { return float64(hub.Sessions()) })); err != nil {
		return fmt.Errorf("gateway: register metrics: %w", err)
	}
	maxSessions := float64(d.MaxSessions)
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "parley", Subsystem: "gateway", Name: "live_sessions_max",
		Help: "WebSocket sessions the process admits at most (0: no bound).",
	}, func() float64 { return maxSessions })); err != nil {
		return fmt.Errorf("gateway: register metrics: %w", err)
	}

	assets, err := web.New()
	if err != nil {
		return fmt.Errorf("gateway: front-end files: %w", err)
	}
	pages := "none: the front-end was not built (make build)"
	if assets.Built() {
		pages = strings.Join(web.Pages, " ")
	}

	streamCtx, stopStreams := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStreams()
	api, err := httpapi.New(httpapi.Config{
		NC:               d.NC,
		Log:              log,
		Signer:           d.Signer,
		Verifier:         d.Verifier,
		Tenants:          tenants,
		Settings:         tenantSettings,
		Hub:              hub,
		Registerer:       reg,
		Gatherer:         reg,
		AccessTokenTTL:   d.AccessTokenTTL,
		Providers:        providers,
		SignIn:           flow,
		RateLimit:        d.RateLimit,
		Ready:            ready(tenants, newUpstreamCheck(d.NC, d.Now), d.Ready),
		StreamContext:    streamCtx,
		Keys:             d.Keys,
		MaxSessions:      d.MaxSessions,
		BodyReadTimeout:  d.BodyReadTimeout,
		ClientAddrHeader: d.ClientAddrHeader,
		MaxConns:         d.MaxConns,
		MaxConnsPerAddr:  d.MaxConnsPerAddr,
		Web:              assets,
	})
	if err != nil {
		return fmt.Errorf("gateway: register metrics: %w", err)
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    httpapi.ServerMaxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		ConnState:         api.ConnState,
		// Request logs go through slog with the fields we choose; the
		// server's own messages could name a client address.
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(api.Listener(d.Listener)) }()
	log.Info("gateway listening", "addr", d.Listener.Addr().String(), "pages", pages, "max_sessions", d.MaxSessions,
		"max_conns", d.MaxConns, "max_conns_per_addr", d.MaxConnsPerAddr)

	var failed error
	select {
	case err := <-served:
		// What was started is stopped all the same: no goroutine outlives
		// Run.
		failed = fmt.Errorf("gateway: serve: %w", err)
	case <-ctx.Done():
	case <-tenants.Stopped():
		failed = fmt.Errorf("gateway: %w", tenants.Err())
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	api.CloseNew()
	shutErr := srv.Shutdown(sctx)
	// Hijacked WebSocket connections are not the server's to wait for.
	hctx, hcancel := context.WithTimeout(context.Background(), SessionsCloseTimeout)
	defer hcancel()
	hubErr := hub.Close(hctx)
	stopStreams()
	if err := errors.Join(shutErr, hubErr); err != nil {
		return errors.Join(failed, fmt.Errorf("gateway: shutdown: %w", err))
	}
	return failed
}

// ready is the gateway's readiness: the tenant registry follows its bucket,
// the services it calls answer, and then extra, when set.
func ready(tenants *tenant.Registry, upstream *upstreamCheck, extra func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := tenants.Health(); err != nil {
			return fmt.Errorf("tenants: %w", err)
		}
		if err := upstream.check(ctx); err != nil {
			return err
		}
		if extra == nil {
			return nil
		}
		return extra(ctx)
	}
}
