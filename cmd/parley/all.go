package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/buspolicy"
	"github.com/parley-chat/parley/pkg/chserver"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/analytics"
	"github.com/parley-chat/parley/services/chat"
	"github.com/parley-chat/parley/services/gateway"
	"github.com/parley-chat/parley/services/privacy"
)

// allConfig configures `parley all`. The zero value of every field but
// DataDir works.
type allConfig struct {
	HTTPAddr string // default 127.0.0.1:8080
	DataDir  string
	// NATSAddr is where the embedded NATS listens, host:port; port 0 picks a
	// free one. Default 127.0.0.1:0.
	NATSAddr string
	// NATSTLS, when set, makes the embedded NATS take clients over mutual
	// TLS only: its certificate and key, and the CA that every client's
	// certificate must be signed by, which signed the server's too. Unset,
	// a try-out on loopback, clients connect in plain text with passwords.
	NATSTLS tlsFiles
	// NATSClientTLS is the certificate and key the services inside present
	// to the embedded NATS; required with NATSTLS.
	NATSClientTLS tlsFiles
	// ClickHouse is a DSN, "auto" (start a local server under DataDir when
	// clickhouse-server is installed) or "off".
	ClickHouse string
	// ClickHouseBinary is the server executable "auto" starts; empty looks
	// for clickhouse-server, then clickhouse, on PATH, in /usr/sbin and in
	// /usr/bin.
	ClickHouseBinary string
	KEKFile          string // default DataDir/kek.key, created when missing
	SigningKey       string // default DataDir/signing-key.pem, created when missing
	AuditKeyFile     string // default DataDir/audit-key.pem, created when missing
	DefaultTenant    string // default "demo"
	// SyncAlways makes JetStream fsync before every acknowledgement.
	SyncAlways bool
	// RateLimit is the gateway's requests per second per principal; 0 means
	// its default, negative no limit.
	RateLimit float64
	// MaxSessions bounds the gateway's WebSocket sessions; 0 means derived
	// from the open-file limit, negative no bound.
	MaxSessions int
	// ClientAddrHeader names the header a trusted reverse proxy writes the
	// client address in; "" means the peer address.
	ClientAddrHeader string
	// MaxConnsPerAddr bounds the gateway's connections per client address;
	// 0 means no bound.
	MaxConnsPerAddr int
	// KeyCacheSize bounds each service's cache of data subjects' keys; 0
	// means personkey.DefaultCacheSize.
	KeyCacheSize int
	// AccessTokenTTL is the gateway's, StaffSessionTTL the privacy
	// service's; 0 means their defaults.
	AccessTokenTTL  time.Duration
	StaffSessionTTL time.Duration
	// PrivateWebhooks is the privacy service's (privacy.Deps).
	PrivateWebhooks bool
	// now is the clock of sessions and tokens; nil means time.Now. Tests
	// set their own.
	now func() time.Time
}

func (c *allConfig) setDefaults() {
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.NATSAddr == "" {
		c.NATSAddr = "127.0.0.1:0"
	}
	if c.ClickHouse == "" {
		c.ClickHouse = "auto"
	}
	if c.KEKFile == "" {
		c.KEKFile = filepath.Join(c.DataDir, "kek.key")
	}
	if c.SigningKey == "" {
		c.SigningKey = filepath.Join(c.DataDir, auth.SigningKeyFile)
	}
	if c.AuditKeyFile == "" {
		c.AuditKeyFile = filepath.Join(c.DataDir, privacy.AuditKeyFile)
	}
	if c.DefaultTenant == "" {
		c.DefaultTenant = "demo"
	}
}

func (c *allConfig) validate() error {
	if c.DataDir == "" {
		return usageError{"--data-dir is required"}
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return usageError{fmt.Sprintf("--http-addr %q: want host:port", c.HTTPAddr)}
	}
	if _, _, err := net.SplitHostPort(c.NATSAddr); err != nil {
		return usageError{fmt.Sprintf("--nats-addr %q: want host:port", c.NATSAddr)}
	}
	if c.NATSTLS != (tlsFiles{}) || c.NATSClientTLS != (tlsFiles{}) {
		if c.NATSTLS.cert == "" || c.NATSTLS.key == "" || c.NATSTLS.ca == "" || c.NATSClientTLS.cert == "" || c.NATSClientTLS.key == "" {
			return usageError{"TLS on the embedded NATS needs all of --nats-tls-cert-file, --nats-tls-key-file, --nats-tls-ca-file (the server's) and --nats-cert-file, --nats-key-file (the services')"}
		}
	}
	if !auth.ValidTenantID(c.DefaultTenant) {
		return usageError{fmt.Sprintf("--default-tenant %q: want a tenant id, 1-63 of [a-z0-9-]", c.DefaultTenant)}
	}
	return nil
}

func runAll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg allConfig
	fs := flag.NewFlagSet("parley all", flag.ContinueOnError)
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&cfg.DataDir, "data-dir", "./data", "where JetStream, keys and ClickHouse keep their files")
	fs.StringVar(&cfg.NATSAddr, "nats-addr", "127.0.0.1:0", "embedded NATS listen address (port 0: a free port)")
	fs.StringVar(&cfg.NATSTLS.cert, "nats-tls-cert-file", "", "the embedded NATS's certificate, PEM: clients then connect over mutual TLS only (default: plain text, for loopback)")
	fs.StringVar(&cfg.NATSTLS.key, "nats-tls-key-file", "", "key of --nats-tls-cert-file, PEM")
	fs.StringVar(&cfg.NATSTLS.ca, "nats-tls-ca-file", "", "CA certificate(s), PEM, that signed --nats-tls-cert-file and that every client's certificate must be signed by")
	fs.StringVar(&cfg.NATSClientTLS.cert, "nats-cert-file", "", "with --nats-tls-cert-file: the client certificate, PEM, the services inside present to the embedded NATS")
	fs.StringVar(&cfg.NATSClientTLS.key, "nats-key-file", "", "key of --nats-cert-file, PEM")
	fs.StringVar(&cfg.ClickHouse, "clickhouse", "auto", `ClickHouse DSN, "auto" (start one under --data-dir if installed) or "off"`)
	fs.StringVar(&cfg.ClickHouseBinary, "clickhouse-binary", "", `with --clickhouse auto: the ClickHouse server executable (default: clickhouse-server or clickhouse, found on PATH, in /usr/sbin or /usr/bin)`)
	fs.StringVar(&cfg.KEKFile, "kek-file", "", "key-encryption key file (default DATA_DIR/kek.key; PARLEY_KEK holds the key itself)")
	fs.StringVar(&cfg.SigningKey, "signing-key-file", "", "token signing key (default DATA_DIR/signing-key.pem)")
	fs.StringVar(&cfg.AuditKeyFile, "audit-key-file", "", "key signing the audit trail's checkpoints (default DATA_DIR/"+privacy.AuditKeyFile+")")
	fs.StringVar(&cfg.DefaultTenant, "default-tenant", "demo", "tenant created on first start")
	fs.BoolVar(&cfg.SyncAlways, "sync-always", false, "fsync JetStream before every acknowledgement")
	fs.Float64Var(&cfg.RateLimit, "rate-limit", 0, "requests per second per principal (0: the default of 50, negative: no limit)")
	gatewayLimitFlags(fs, &cfg.MaxSessions, &cfg.MaxConnsPerAddr, &cfg.ClientAddrHeader)
	keyCacheFlag(fs, &cfg.KeyCacheSize)
	var memoryLimit int64
	memoryLimitFlag(fs, &memoryLimit)
	accessTokenFlag(fs, &cfg.AccessTokenTTL)
	staffSessionFlag(fs, &cfg.StaffSessionTTL)
	privateWebhooksFlag(fs, &cfg.PrivateWebhooks)
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	setMemoryLimit(memoryLimit, log)
	a, err := startAll(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Parley is running.\n  API:   %s\n  NATS:  %s (user %s, password in %s)\n  Data:  %s\n  ClickHouse: %s\n",
		a.URL(), a.NATSURL(), buspolicy.Admin, filepath.Join(cfg.DataDir, natsAdminPasswordFile), cfg.DataDir, a.clickHouseState())
	printSignIn(stdout, a.URL(), cfg)
	fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
	return a.Wait()
}

// printSignIn tells how to sign in to a try-out: staff with a token from
// `parley token`, or through the tenant's own identity provider once it is
// set; visitors register.
func printSignIn(w io.Writer, url string, cfg allConfig) {
	fmt.Fprintf(w, `Sign in:
  Staff, without an identity provider: a token from the CLI, e.g.
    %[1]s token --data-dir %[2]s --tenant %[3]s --role agent --id alice
  Staff, through the tenant's OpenID provider: an admin sets it once with
    PUT %[4]s/v1/tenants/%[3]s/identity-provider, then GET %[4]s/v1/tenants/%[3]s/sign-in
  Visitors: POST %[4]s/v1/tenants/%[3]s/visitors (answers a session)
`, os.Args[0], cfg.DataDir, cmp.Or(cfg.DefaultTenant, "<tenant>"), url)
}

// allInOne is every service and an embedded JetStream in one process.
type allInOne struct {
	cfg   allConfig
	log   *slog.Logger
	lock  *dirLock
	nats  *natsembed.Server
	ch    *chserver.Server
	chDSN string
	// chMissing is set when --clickhouse auto found no server to start:
	// analytics is then not ready.
	chMissing bool
	ln        net.Listener
	conns     []*nats.Conn
	caches    []*personkey.Cache
	stop      chan struct{} // closed by Close
	stopOnce  sync.Once
	done      chan struct{}
	err       error

	// busTLS are the options of the services' connections to the
	// embedded NATS that make them TLS, when it requires TLS.
	busTLS []nats.Option
}

// service is one service of allInOne, run under a context of its own so
// that the services stop in order.
type service struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startService starts run under a context of its own, which only cancel
// ends; ended hears when run returns.
func startService(name string, run func(context.Context) error, ended chan<- string) *service {
	ctx, cancel := context.WithCancel(context.Background())
	s := &service{name: name, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = run(ctx)
		ended <- name
	}()
	return s
}

// startAll starts everything and returns once the HTTP listener is open.
// The services keep running until ctx is cancelled or Close is called.
func startAll(ctx context.Context, cfg allConfig, log *slog.Logger) (_ *allInOne, err error) {
	// Before the default file is filled in: only a --kek-file given
	// besides PARLEY_KEK is two sources.
	if err := oneKEKSource(cfg.KEKFile); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &allInOne{cfg: cfg, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	defer func() {
		if err != nil {
			a.release()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	// Before anything in the dir is written: a second process must not
	// replace the first's admin password, KEK or store files.
	if a.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	kek, err := loadKEK(cfg.KEKFile, true)
	if err != nil {
		return nil, err
	}
	signingKey, err := auth.LoadOrCreateKey(cfg.SigningKey)
	if err != nil {
		return nil, err
	}
	auditKey, err := privacy.LoadOrCreateAuditKey(cfg.AuditKeyFile)
	if err != nil {
		return nil, err
	}
	host, port, err := splitHostPort(cfg.NATSAddr)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--nats-addr: %v", err)}
	}
	passwords, err := a.busPasswords()
	if err != nil {
		return nil, err
	}
	users, err := buspolicy.Users(passwords)
	if err != nil {
		return nil, err
	}
	opts := natsembed.Options{
		Host: host, Port: port, StoreDir: filepath.Join(cfg.DataDir, "nats"), SyncAlways: cfg.SyncAlways,
		Users: users,
	}
	if cfg.NATSTLS.cert != "" {
		if opts.TLS, err = natsembed.MutualTLS(cfg.NATSTLS.cert, cfg.NATSTLS.key, cfg.NATSTLS.ca); err != nil {
			return nil, err
		}
		client := tlsFiles{ca: cfg.NATSTLS.ca, cert: cfg.NATSClientTLS.cert, key: cfg.NATSClientTLS.key}
		if a.busTLS, err = client.clientOptions(); err != nil {
			return nil, err
		}
	}
	a.nats, err = natsembed.Start(opts)
	if err != nil {
		return nil, err
	}
	if err := a.applyStreams(ctx, passwords[buspolicy.Admin]); err != nil {
		return nil, err
	}
	if err := a.startClickHouse(ctx); err != nil {
		return nil, err
	}
	a.ln, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}

	connect := func(name string) (*nats.Conn, *personkey.Cache, error) {
		opts := append(busOptions(name, log), nats.UserInfo(name, passwords[name]))
		nc, err := nats.Connect(a.nats.ClientURL(), append(opts, a.busTLS...)...)
		if err != nil {
			return nil, nil, fmt.Errorf("connect %s to nats: %w", name, err)
		}
		a.conns = append(a.conns, nc)
		keys, err := personkey.NewCacheSize(nc, a.cfg.KeyCacheSize)
		if err != nil {
			return nil, nil, err
		}
		a.caches = append(a.caches, keys)
		return nc, keys, nil
	}
	privacyNC, _, err := connect("privacy")
	if err != nil {
		return nil, err
	}
	chatNC, chatKeys, err := connect("chat")
	if err != nil {
		return nil, err
	}
	analyticsNC, _, err := connect("analytics")
	if err != nil {
		return nil, err
	}
	gatewayNC, gatewayKeys, err := connect("gateway")
	if err != nil {
		return nil, err
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	an := analytics.New(analytics.Deps{NC: analyticsNC, Log: log.With("service", "analytics"), ClickHouseDSN: a.chDSN, Registry: registry})

	ended := make(chan string, 4)
	privacySvc := startService("privacy", func(ctx context.Context) error {
		return privacy.Run(ctx, privacy.Deps{NC: privacyNC, Log: log.With("service", "privacy"), KEK: kek, AuditKey: auditKey, KeyCacheSize: cfg.KeyCacheSize,
			StaffSessionTTL: cfg.StaffSessionTTL, PrivateWebhooks: cfg.PrivateWebhooks, Now: cfg.now})
	}, ended)
	chatSvc := startService("chat", func(ctx context.Context) error {
		return chat.Run(ctx, chat.Deps{NC: chatNC, Log: log.With("service", "chat"), Keys: chatKeys, Registry: registry})
	}, ended)
	analyticsSvc := startService("analytics", an.Run, ended)
	signer, verifier := auth.NewSigner(signingKey), auth.NewVerifier(signingKey.Public().(ed25519.PublicKey))
	signer.Now, verifier.Now = cfg.now, cfg.now
	gatewaySvc := startService("gateway", func(ctx context.Context) error {
		return gateway.Run(ctx, gateway.Deps{
			NC:             gatewayNC,
			Log:            log.With("service", "gateway"),
			Listener:       a.ln,
			Signer:         signer,
			Verifier:       verifier,
			AccessTokenTTL: cfg.AccessTokenTTL,
			Now:            cfg.now,
			// A try-out's provider runs on the same machine.
			LoopbackIdentityProviders: true,
			Keys:                      gatewayKeys,
			Registry:                  registry,
			DefaultTenant:             cfg.DefaultTenant,
			RateLimit:                 cfg.RateLimit,
			Ready:                     a.readyCheck(an),

			MaxSessions:      cfg.MaxSessions,
			ClientAddrHeader: cfg.ClientAddrHeader,
			MaxConnsPerAddr:  cfg.MaxConnsPerAddr,
		})
	}, ended)
	go func() {
		select {
		case <-ctx.Done():
		case <-a.stop:
		case name := <-ended:
			log.Error("a service stopped by itself: stopping every other", "service", name)
		}
		a.err = stopInOrder(
			[]*service{gatewaySvc},
			[]*service{chatSvc, privacySvc},
			[]*service{analyticsSvc},
		)
		a.release()
		close(a.done)
	}()
	if err := a.waitServing(ctx, gatewayNC); err != nil {
		_ = a.Close()
		return nil, err
	}
	log.Info("parley started", "http_addr", a.ln.Addr().String(), "data_dir", cfg.DataDir)
	return a, nil
}

// applyStreams brings every stream and bucket to this version's
// definitions as the admin user, before any service starts: the services
// may only create what is missing, so a data dir made by an older version
// is upgraded here.
func (a *allInOne) applyStreams(ctx context.Context, password string) error {
	opts := append([]nats.Option{nats.Name("parley-streams"), nats.UserInfo(buspolicy.Admin, password)}, a.busTLS...)
	nc, err := nats.Connect(a.nats.ClientURL(), opts...)
	if err != nil {
		return fmt.Errorf("connect admin to nats: %w", err)
	}
	defer nc.Close()
	applied, err := applyStreams(ctx, nc, stream.Options{})
	if err != nil {
		return err
	}
	for _, s := range applied {
		if s.Action == stream.Updated {
			a.log.Info("applied this version's definition", "kind", kindOf(s), "name", s.Name)
		}
	}
	return nil
}

// waitServing waits until the chat and privacy services answer on the bus
// (chat first replays its stream), or one of the services fails.
func (a *allInOne) waitServing(ctx context.Context, nc *nats.Conn) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := gateway.PingServices(ctx, nc)
		if err == nil {
			return nil
		}
		select {
		case <-a.done:
			if a.err != nil {
				return a.err
			}
			return fmt.Errorf("services stopped before they were ready: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// errNoClickHouse is the readiness of analytics when --clickhouse auto
// found no ClickHouse to start.
var errNoClickHouse = errors.New("analytics not ready: clickhouse-server is not installed and no --clickhouse DSN was given; facts wait in the ANALYTICS stream")

// readyCheck is the gateway's extra readiness check (the gateway checks
// the services it calls itself): ClickHouse answers unless Parley was told
// to run without one (--clickhouse off; analytics facts then wait in their
// stream).
func (a *allInOne) readyCheck(an *analytics.Service) func(context.Context) error {
	return func(ctx context.Context) error {
		switch {
		case a.chMissing:
			return errNoClickHouse
		case a.chDSN == "":
			return nil
		}
		return an.Ready(ctx)
	}
}

func (a *allInOne) startClickHouse(ctx context.Context) error {
	switch a.cfg.ClickHouse {
	case "off":
		return nil
	case "auto":
		s, err := chserver.Start(ctx, chserver.Options{Dir: filepath.Join(a.cfg.DataDir, "clickhouse"), Binary: a.cfg.ClickHouseBinary, Log: a.log})
		if errors.Is(err, chserver.ErrNotInstalled) {
			a.log.Warn("clickhouse-server is not installed: analytics is not ready (/readyz answers 503) and facts wait in the ANALYTICS stream; install it (apt-get install clickhouse-server), or pass --clickhouse DSN, or --clickhouse off to run without analytics")
			a.chMissing = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("start local clickhouse: %w", err)
		}
		a.ch, a.chDSN = s, s.DSN()
		return nil
	}
	a.chDSN = a.cfg.ClickHouse
	return nil
}

func (a *allInOne) clickHouseState() string {
	switch {
	case a.ch != nil:
		return "local server, " + a.ch.DSN()
	case a.chDSN != "":
		return "external"
	case a.chMissing:
		return "not installed (analytics not ready)"
	}
	return "off (facts wait in the ANALYTICS stream)"
}

// URL is the base URL of the HTTP API.
func (a *allInOne) URL() string { return "http://" + a.ln.Addr().String() }

// NATSURL is the client URL of the embedded NATS server.
func (a *allInOne) NATSURL() string { return a.nats.ClientURL() }

// Wait blocks until every service has stopped and returns the first error.
func (a *allInOne) Wait() error {
	<-a.done
	return a.err
}

// Close stops every service, then NATS and ClickHouse, and waits.
func (a *allInOne) Close() error {
	a.stopOnce.Do(func() { close(a.stop) })
	return a.Wait()
}

// stopInOrder stops the services stage by stage, each stage once the one
// before has stopped: the gateway first, which drains HTTP requests and
// closes WebSocket sessions while the services it calls still answer;
// then chat and privacy, which drain their subscriptions, answering every
// request received; then analytics. It returns the services' errors.
func stopInOrder(stages ...[]*service) error {
	var errs []error
	for _, stage := range stages {
		for _, s := range stage {
			s.cancel()
		}
		for _, s := range stage {
			<-s.done
			if s.err != nil {
				errs = append(errs, s.err)
			}
		}
	}
	return errors.Join(errs...)
}

// release frees what startAll acquired, in reverse order.
func (a *allInOne) release() {
	for _, c := range a.caches {
		_ = c.Close()
	}
	for _, nc := range a.conns {
		nc.Close()
	}
	if a.ln != nil {
		_ = a.ln.Close()
	}
	if a.ch != nil {
		if err := a.ch.Close(); err != nil {
			a.log.Warn("stop clickhouse", "err", err)
		}
	}
	if a.nats != nil {
		a.nats.Close()
	}
	// Last: the store is closed before another process may open it.
	_ = a.lock.Close()
}

// loadKEK reads the key-encryption key from PARLEY_KEK, else from path,
// creating the file when create is set (development only). Callers refuse
// a path given besides PARLEY_KEK first (oneKEKSource).
func loadKEK(path string, create bool) (seal.Key, error) {
	if v, ok := os.LookupEnv("PARLEY_KEK"); ok {
		k, err := privacy.ParseKEK(v)
		if err != nil {
			return seal.Key{}, usageError{fmt.Sprintf("PARLEY_KEK: %v", err)}
		}
		return k, nil
	}
	if create {
		return privacy.LoadOrCreateKEK(path)
	}
	if path == "" {
		return seal.Key{}, usageError{"no key-encryption key: set PARLEY_KEK or --kek-file"}
	}
	return privacy.LoadKEK(path)
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := net.LookupPort("tcp", p)
	if err != nil {
		return "", 0, err
	}
	return host, port, nil
}
