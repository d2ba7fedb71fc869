package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/analytics"
	"github.com/parley-chat/parley/services/chat"
	"github.com/parley-chat/parley/services/gateway"
	"github.com/parley-chat/parley/services/privacy"
)

// serviceConfig configures one service run against an external NATS.
type serviceConfig struct {
	NATSURL       string
	NATSCreds     string
	Replicas      int
	HTTPAddr      string  // gateway
	SigningKey    string  // gateway
	DefaultTenant string  // gateway
	KEKFile       string  // privacy
	AuditKeyFile  string  // privacy
	KeyCacheSize  int     // gateway, chat, privacy
	ClickHouse    string  // analytics
	RateLimit     float64 // gateway
	// MaxSessions, MaxConnsPerAddr and ClientAddrHeader are the gateway's
	// (gateway.Deps).
	MaxSessions      int
	MaxConnsPerAddr  int
	ClientAddrHeader string
	AccessTokenTTL   time.Duration // gateway
	// LoopbackIdentityProviders is the gateway's (gateway.Deps).
	LoopbackIdentityProviders bool
	StaffSessionTTL           time.Duration // privacy
}

func runService(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	var cfg serviceConfig
	fs := flag.NewFlagSet("parley "+name, flag.ContinueOnError)
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "NATS server URL(s), comma separated (required)")
	fs.StringVar(&cfg.NATSCreds, "nats-creds", "", "NATS credentials file of this service's user")
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
		fs.StringVar(&cfg.KEKFile, "kek-file", "", "key-encryption key file (or PARLEY_KEK)")
		fs.StringVar(&cfg.AuditKeyFile, "audit-key-file", "", "key signing the audit trail's checkpoints, PEM; never give it to the bus administrator (required)")
	case "analytics":
		fs.StringVar(&cfg.ClickHouse, "clickhouse", "", "ClickHouse DSN, clickhouse://host:9000/db")
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
	if cfg.NATSURL == "" {
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

	opts := busOptions(name, log)
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	defer nc.Close()
	streams := stream.Options{Replicas: cfg.Replicas}

	switch name {
	case "privacy":
		kek, err := loadKEK(cfg.KEKFile, false)
		if err != nil {
			return err
		}
		auditKey, err := privacy.ReadAuditKey(cfg.AuditKeyFile)
		if err != nil {
			return err
		}
		return privacy.Run(ctx, privacy.Deps{NC: nc, Log: log, KEK: kek, AuditKey: auditKey, Streams: streams, KeyCacheSize: cfg.KeyCacheSize,
			StaffSessionTTL: cfg.StaffSessionTTL})
	case "analytics":
		return analytics.New(analytics.Deps{NC: nc, Log: log, ClickHouseDSN: cfg.ClickHouse}).Run(ctx)
	}

	keys, err := personkey.NewCacheSize(nc, cfg.KeyCacheSize)
	if err != nil {
		return err
	}
	defer keys.Close()
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if name == "chat" {
		return chat.Run(ctx, chat.Deps{NC: nc, Log: log, Keys: keys, Streams: streams, Registry: registry})
	}
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
