package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/analytics"
	"github.com/parley-chat/parley/services/chat"
	"github.com/parley-chat/parley/services/gateway"
	"github.com/parley-chat/parley/services/privacy"
)

// serviceConfig configures one service run against an external NATS.
type serviceConfig struct {
	Bus           busFlags
	Replicas      int
	HTTPAddr      string   // gateway
	HealthAddr    string   // chat, privacy, analytics
	SigningKey    string   // gateway
	DefaultTenant string   // gateway
	KEK           kekFlags // privacy
	AuditKeyFile  string   // privacy
	KeyCacheSize  int      // gateway, chat, privacy
	ClickHouse    string   // analytics
	// ClickHousePasswordFile holds the password of the user ClickHouse
	// names (analytics).
	ClickHousePasswordFile string
	RateLimit              float64 // gateway
	// MaxSessions, MaxConnsPerAddr and ClientAddrHeader are the gateway's
	// (gateway.Deps).
	MaxSessions      int
	MaxConnsPerAddr  int
	ClientAddrHeader string
	AccessTokenTTL   time.Duration // gateway
	// LoopbackIdentityProviders is the gateway's (gateway.Deps).
	LoopbackIdentityProviders bool
	StaffSessionTTL           time.Duration // privacy
	PrivateWebhooks           bool          // privacy
}

func runService(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	var cfg serviceConfig
	fs := flag.NewFlagSet("parley "+name, flag.ContinueOnError)
	cfg.Bus.register(fs, "NATS server URL(s), comma separated, without a password (required)")
	fs.IntVar(&cfg.Replicas, "replicas", 3, "JetStream replicas of the streams this service owns")
	switch name {
	case "gateway":
		fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address")
		fs.StringVar(&cfg.SigningKey, "signing-key-file", "", "token signing key, PEM (required)")
		fs.StringVar(&cfg.DefaultTenant, "default-tenant", "", "tenant to create at start when missing")
		fs.Float64Var(&cfg.RateLimit, "rate-limit", 0, "requests per second per principal (0: the default of 50, negative: no limit)")
		gatewayLimitFlags(fs, &cfg.MaxSessions, &cfg.MaxConnsPerAddr, &cfg.ClientAddrHeader)
		accessTokenFlag(fs, &cfg.AccessTokenTTL)
		fs.BoolVar(&cfg.LoopbackIdentityProviders, "loopback-identity-providers", false, "let staff sign in through identity providers on loopback addresses (a provider on the gateway's own host); otherwise sign-ins call no loopback, link-local or unspecified address")
	case "privacy":
		staffSessionFlag(fs, &cfg.StaffSessionTTL)
		privateWebhooksFlag(fs, &cfg.PrivateWebhooks)
		cfg.KEK.register(fs)
		fs.StringVar(&cfg.AuditKeyFile, "audit-key-file", "", "key signing the audit trail's checkpoints, PEM; never give it to the bus administrator (required)")
	case "analytics":
		fs.StringVar(&cfg.ClickHouse, "clickhouse", "", "ClickHouse DSN without a password, clickhouse://user@host:9000/db")
		fs.StringVar(&cfg.ClickHousePasswordFile, "clickhouse-password-file", "", "file holding the password of the DSN's user (or "+clickHousePasswordEnv+" holds the password itself)")
	}
	if name != "gateway" {
		fs.StringVar(&cfg.HealthAddr, "health-addr", defaultHealthAddrs[name], "where /healthz, /readyz and /metrics are served")
	}
	if name != "analytics" {
		keyCacheFlag(fs, &cfg.KeyCacheSize)
	}
	var memoryLimit int64
	memoryLimitFlag(fs, &memoryLimit)
	logFormat := fs.String("log-format", "json", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if cfg.Bus.url == "" {
		return usageError{"--nats-url is required"}
	}
	if name == "gateway" && cfg.SigningKey == "" {
		return usageError{"--signing-key-file is required"}
	}
	if name == "privacy" && cfg.AuditKeyFile == "" {
		return usageError{"--audit-key-file is required"}
	}
	if cfg.DefaultTenant != "" && !auth.ValidTenantID(cfg.DefaultTenant) {
		return usageError{fmt.Sprintf("--default-tenant %q: want a tenant id, 1-63 of [a-z0-9-]", cfg.DefaultTenant)}
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	log = log.With("service", name)
	setMemoryLimit(memoryLimit, log)
	warnSecretInURLs(log, "--nats-url", cfg.Bus.url, true, "--nats-user with --nats-password-file or "+natsPasswordEnv+", or --nats-creds")
	warnSecretInURLs(log, "--clickhouse", cfg.ClickHouse, false, "--clickhouse-password-file or "+clickHousePasswordEnv)

	busOpts, err := cfg.Bus.options()
	if err != nil {
		return err
	}
	// Read before anything starts: a missing secret stops the process at
	// once, not after it connected.
	var (
		kek      seal.Key
		auditKey ed25519.PrivateKey
		dsn      string
	)
	switch name {
	case "privacy":
		if kek, err = cfg.KEK.load(ctx, stderr); err != nil {
			return err
		}
		if auditKey, err = privacy.ReadAuditKey(cfg.AuditKeyFile); err != nil {
			return err
		}
	case "analytics":
		if dsn, err = clickHouseDSN(cfg.ClickHouse, cfg.ClickHousePasswordFile); err != nil {
			return err
		}
	}
	nc, err := nats.Connect(cfg.Bus.url, append(busOptions(name, log), busOpts...)...)
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	defer nc.Close()
	streams := stream.Options{Replicas: cfg.Replicas}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if name == "gateway" {
		return runGateway(ctx, cfg, nc, log, registry, streams)
	}
	ln, err := net.Listen("tcp", cfg.HealthAddr)
	if err != nil {
		return fmt.Errorf("listen on --health-addr %s: %w", cfg.HealthAddr, err)
	}
	log.Info("serving health", "health_addr", ln.Addr().String())
	health := new(rpc.Health)
	ready := func(context.Context) error { return health.Err() }
	var run func(context.Context) error
	switch name {
	case "privacy":
		run = func(ctx context.Context) error {
			return privacy.Run(ctx, privacy.Deps{NC: nc, Log: log, KEK: kek, AuditKey: auditKey, Streams: streams, KeyCacheSize: cfg.KeyCacheSize,
				StaffSessionTTL: cfg.StaffSessionTTL, PrivateWebhooks: cfg.PrivateWebhooks, Health: health})
		}
	case "analytics":
		an := analytics.New(analytics.Deps{NC: nc, Log: log, ClickHouseDSN: dsn, Registry: registry})
		run, ready = an.Run, an.Ready
	case "chat":
		keys, err := personkey.NewCacheSize(nc, cfg.KeyCacheSize)
		if err != nil {
			return err
		}
		defer keys.Close()
		run = func(ctx context.Context) error {
			return chat.Run(ctx, chat.Deps{NC: nc, Log: log, Keys: keys, Streams: streams, Registry: registry, Health: health})
		}
	}
	return runWithHealth(ctx, ln, healthHandler(log, registry, busReady(nc, ready), ctx.Done()), run)
}

// runGateway runs `parley gateway` on nc.
func runGateway(ctx context.Context, cfg serviceConfig, nc *nats.Conn, log *slog.Logger, registry *prometheus.Registry, streams stream.Options) error {
	keys, err := personkey.NewCacheSize(nc, cfg.KeyCacheSize)
	if err != nil {
		return err
	}
	defer keys.Close()
	signingKey, err := auth.ReadKey(cfg.SigningKey)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	log.Info("listening", "http_addr", ln.Addr().String())
	return gateway.Run(ctx, gateway.Deps{
		NC:             nc,
		Log:            log,
		Listener:       ln,
		Signer:         auth.NewSigner(signingKey),
		Verifier:       auth.NewVerifier(signingKey.Public().(ed25519.PublicKey)),
		Keys:           keys,
		Registry:       registry,
		DefaultTenant:  cfg.DefaultTenant,
		RateLimit:      cfg.RateLimit,
		Streams:        streams,
		AccessTokenTTL: cfg.AccessTokenTTL,

		LoopbackIdentityProviders: cfg.LoopbackIdentityProviders,

		MaxSessions:      cfg.MaxSessions,
		ClientAddrHeader: cfg.ClientAddrHeader,
		MaxConnsPerAddr:  cfg.MaxConnsPerAddr,
	})
}
