package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/parley-chat/parley/pkg/retry"
	"github.com/parley-chat/parley/pkg/rpc"

	chstore "github.com/parley-chat/parley/services/analytics/internal/clickhouse"
	"github.com/parley-chat/parley/services/analytics/internal/ingest"
)

// ErrNotConfigured is what Ready returns when no ClickHouse DSN is set.
var ErrNotConfigured = errors.New("clickhouse not configured")

// Deps are what the service runs on.
type Deps struct {
	// NC connects to the bus: the ANALYTICS stream and the service's
	// request/reply subjects. Nil runs ClickHouse's connection only.
	NC *nats.Conn
	// Log receives the service's events; nil discards them.
	Log *slog.Logger
	// ClickHouseDSN is the native-protocol address of the analytics store,
	// e.g. clickhouse://127.0.0.1:9000/default. Empty means not configured:
	// the service runs and reports not ready.
	ClickHouseDSN string
	// RetentionDays is how long facts are kept; 0 means
	// DefaultRetentionDays.
	RetentionDays int
	// GiveUp is how long the consumer of ANALYTICS may keep failing before
	// Run stops and returns its error; 0 means retry.GiveUp. ClickHouse
	// being unreachable is waited out however long it lasts.
	GiveUp time.Duration
	// Registry receives the service's metrics; nil means none are
	// exported.
	Registry prometheus.Registerer
}

// DefaultRetentionDays keeps facts for 400 days: a year compared with the
// one before, by month.
const DefaultRetentionDays = 400

// attemptTimeout bounds one attempt to connect, so a server that accepts
// but does not answer is retried too.
const attemptTimeout = 5 * time.Second

// Service is the analytics service. Ready may be called concurrently with
// Run.
type Service struct {
	d   Deps
	log *slog.Logger

	mu      sync.Mutex
	addrs   []string    // the DSN's host:port addresses, hidden in errors
	conn    driver.Conn // set once ClickHouse answered, nil after Run ends
	version string      // SELECT version() of the connected server
	lastErr error       // why the last connection attempt failed
	stopped bool

	store     *chstore.Store // set once the schema is migrated
	storeSet  chan struct{}  // closed when store is set
	ingester  *ingest.Ingester
	retention int
	// health is the consumer's, which pings and Ready report.
	health rpc.Health
}

// New returns a service that starts working when Run is called.
func New(d Deps) *Service {
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	retention := d.RetentionDays
	if retention <= 0 {
		retention = DefaultRetentionDays
	}
	return &Service{d: d, log: log, storeSet: make(chan struct{}), retention: retention}
}

// Run runs the service until ctx ends, then returns nil. It connects
// ClickHouse, retrying with backoff (pkg/retry) while the server is
// unreachable; it returns an error for a DSN that cannot be parsed, which
// no retry fixes, and when the consumer of ANALYTICS has kept failing for
// Deps.GiveUp, meanwhile reported by Ready and the service's pings.
func Run(ctx context.Context, d Deps) error {
	return New(d).Run(ctx)
}

// Run runs s until ctx ends, then returns nil; see the package-level Run.
// Call it once.
func (s *Service) Run(ctx context.Context) error {
	defer s.stop()
	var opts *clickhouse.Options
	if s.d.ClickHouseDSN != "" {
		var err error
		if opts, err = clickhouse.ParseDSN(s.d.ClickHouseDSN); err != nil {
			return fmt.Errorf("analytics: parse clickhouse dsn: %w", err)
		}
		if opts.DialTimeout == 0 || opts.DialTimeout > attemptTimeout {
			opts.DialTimeout = attemptTimeout
		}
		opts.DialContext = chstore.Dial(opts.DialTimeout, opts.TLS, chstore.WriteTimeout)
	}
	g, gctx := errgroup.WithContext(ctx)
	if s.d.NC != nil {
		if err := s.serveBus(gctx, g); err != nil {
			return errors.Join(err, g.Wait())
		}
	}
	if opts == nil {
		s.log.Info("clickhouse not configured: analytics stays not ready, facts wait in their stream")
	} else if s.connect(gctx, opts) && s.prepare(gctx) {
		g.Go(func() error {
			s.periodically(gctx, sweepEvery, func(st *chstore.Store) { s.sweep(gctx, st) })
			return nil
		})
		g.Go(func() error {
			s.periodically(gctx, refreshEvery, func(st *chstore.Store) { s.refresh(gctx, st) })
			return nil
		})
	}
	<-gctx.Done()
	if err := g.Wait(); err != nil {
		return fmt.Errorf("analytics: %w", err)
	}
	return nil
}

// connect tries until ClickHouse answers SELECT version(); false means ctx
// ended first.
func (s *Service) connect(ctx context.Context, opts *clickhouse.Options) bool {
	attempt := 0
	notify := func(err error) {
		err = hideAddrs(err, opts.Addr)
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		if attempt == 1 {
			s.log.Warn("clickhouse unreachable, retrying", "error", err)
		}
	}
	c, err := retry.Until(ctx, 0, notify, func() (connection, error) {
		attempt++
		conn, version, err := open(ctx, opts)
		return connection{conn, version}, err
	})
	if err != nil {
		return false
	}
	s.mu.Lock()
	s.conn, s.version, s.lastErr, s.addrs = c.conn, c.version, nil, opts.Addr
	s.mu.Unlock()
	s.log.Info("clickhouse connected", "version", c.version, "attempts", attempt)
	return true
}

type connection struct {
	conn    driver.Conn
	version string
}

func open(ctx context.Context, opts *clickhouse.Options) (driver.Conn, string, error) {
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("select version(): %w", err)
	}
	return conn, version, nil
}

func (s *Service) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		if err := s.conn.Close(); err != nil {
			s.log.Warn("close clickhouse", "error", err)
		}
		s.conn = nil
	}
	s.stopped = true
}

// Ready returns nil when ClickHouse is configured, its schema migrated and
// it answers a ping now, and the consumer of ANALYTICS works. Otherwise its
// error says why: ErrNotConfigured, "clickhouse unreachable: …" with the
// cause, that the schema is not migrated yet, that the service has
// stopped, or that the consumer fails (an *rpc.Error).
func (s *Service) Ready(ctx context.Context) error {
	if err := s.clickHouseReady(ctx); err != nil {
		return err
	}
	return s.health.Err()
}

func (s *Service) clickHouseReady(ctx context.Context) error {
	if s.d.ClickHouseDSN == "" {
		return ErrNotConfigured
	}
	s.mu.Lock()
	conn, lastErr, stopped, migrated := s.conn, s.lastErr, s.stopped, s.store != nil
	s.mu.Unlock()
	switch {
	case stopped:
		return errors.New("analytics stopped")
	case conn != nil && !migrated:
		// Metrics are refused as unavailable until the schema is in
		// place: ready before would send callers 503s.
		return errors.New("clickhouse schema not migrated yet")
	case conn != nil:
		if err := conn.Ping(ctx); err != nil {
			return fmt.Errorf("clickhouse unreachable: %w", hideAddrs(err, s.addrs))
		}
		return nil
	case lastErr != nil:
		return fmt.Errorf("clickhouse unreachable: %w", lastErr)
	default:
		return errors.New("clickhouse unreachable: not connected yet")
	}
}

// Version returns what SELECT version() answered, e.g. "18.16.1", or "" until
// ClickHouse has answered.
func (s *Service) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// addrHiddenError is an error whose message names the server as "clickhouse"
// instead of by address: the driver's network errors carry IP addresses,
// which Parley's logs and health answers never hold.
type addrHiddenError struct {
	msg string
	err error
}

func (e *addrHiddenError) Error() string { return e.msg }
func (e *addrHiddenError) Unwrap() error { return e.err }

func hideAddrs(err error, addrs []string) error {
	msg := err.Error()
	for _, a := range addrs {
		msg = strings.ReplaceAll(msg, a, "clickhouse")
		if host, _, splitErr := net.SplitHostPort(a); splitErr == nil && host != "" {
			msg = strings.ReplaceAll(msg, host, "clickhouse")
		}
	}
	if msg == err.Error() {
		return err
	}
	return &addrHiddenError{msg: msg, err: err}
}
