package analytics_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/parley-chat/parley/pkg/chserver/chtest"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/services/analytics"
)

// run starts s.Run and returns a function that cancels it and returns what
// Run returned.
func run(t *testing.T, s *analytics.Service) (done <-chan error, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	ch := make(chan error, 1)
	go func() { ch <- s.Run(ctx) }()
	return ch, func() error {
		cancel()
		return natstest.Returns(t, 10*time.Second, "cancellation", ch)
	}
}

func httpQuery(t *testing.T, addr, q string) string {
	t.Helper()
	got, err := chtest.QueryAs(addr, "default", q)
	if err != nil {
		t.Fatalf("%s over HTTP: %v", q, err)
	}
	return got
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestRunConnectsAndDetectsVersion(t *testing.T) {
	ch := chtest.Start(t)
	var logs syncBuffer
	s := analytics.New(analytics.Deps{
		Log:           slog.New(slog.NewJSONHandler(&logs, nil)),
		ClickHouseDSN: ch.DSN(),
	})
	_, stop := run(t, s)

	natstest.Eventually(t, 30*time.Second, "Ready()", func() error { return s.Ready(t.Context()) })
	want := httpQuery(t, ch.HTTPAddr(), "SELECT version()")
	if got := s.Version(); got != want || got == "" {
		t.Errorf("Version() = %q, want %q", got, want)
	}
	if !strings.Contains(logs.String(), `"version":"`+want+`"`) {
		t.Errorf("logs = %s, want the server version %s logged", logs.String(), want)
	}

	if err := stop(); err != nil {
		t.Errorf("Run() after cancel = %v, want nil", err)
	}
	if err := s.Ready(t.Context()); err == nil {
		t.Error("Ready() after Run returned = nil, want an error")
	}
}

func TestRunWithoutClickHouse(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name      string
		giveDSN   string
		wantReady string // what Ready's error holds while Run runs
	}{
		{name: "not configured", giveDSN: "", wantReady: "clickhouse not configured"},
		{name: "closed port", giveDSN: "clickhouse://" + closedAddr + "/default", wantReady: "clickhouse unreachable: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			s := analytics.New(analytics.Deps{Log: slog.New(slog.NewJSONHandler(&logs, nil)), ClickHouseDSN: tt.giveDSN})
			done, stop := run(t, s)

			natstest.Eventually(t, 30*time.Second, "Ready() error", func() error {
				err := s.Ready(t.Context())
				if err == nil || !strings.Contains(err.Error(), tt.wantReady) || strings.Contains(err.Error(), "not connected yet") {
					return errors.New("Ready() = " + errString(err) + ", want it to contain " + tt.wantReady)
				}
				return nil
			})
			select {
			case err := <-done:
				t.Fatalf("Run() returned %v while ClickHouse is missing, want it to keep running", err)
			default:
			}
			if err := s.Ready(t.Context()); strings.Contains(err.Error(), "127.0.0.1") {
				t.Errorf("Ready() = %v, want no IP address in it", err)
			}
			if err := stop(); err != nil {
				t.Errorf("Run() after cancel = %v, want nil", err)
			}
			if strings.Contains(logs.String(), "127.0.0.1") {
				t.Errorf("logs = %s, want no IP address in them", logs.String())
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

func TestRunBadDSN(t *testing.T) {
	s := analytics.New(analytics.Deps{ClickHouseDSN: "clickhouse://127.0.0.1:9000/default?dial_timeout=soon"})
	err := s.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "parse clickhouse dsn") {
		t.Errorf("Run() with a bad DSN = %v, want a parse error", err)
	}
}

// TestRunRetriesUntilReachable puts a proxy between the service and ClickHouse
// that first drops every connection, then forwards them.
func TestRunRetriesUntilReachable(t *testing.T) {
	ch := chtest.Start(t)
	chAddr := strings.TrimSuffix(strings.TrimPrefix(ch.DSN(), "clickhouse://"), "/default")
	var forward atomic.Bool
	proxy := startProxy(t, chAddr, &forward)

	s := analytics.New(analytics.Deps{ClickHouseDSN: "clickhouse://" + proxy + "/default"})
	done, stop := run(t, s)

	natstest.Eventually(t, 30*time.Second, "Ready() error after a failed attempt", func() error {
		if err := s.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "clickhouse unreachable: ") || strings.Contains(err.Error(), "not connected yet") {
			return errors.New("Ready() = " + errString(err))
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("Run() returned %v while ClickHouse is unreachable, want it to keep retrying", err)
	default:
	}
	if got := s.Version(); got != "" {
		t.Errorf("Version() before connecting = %q, want empty", got)
	}

	forward.Store(true)
	natstest.Eventually(t, 30*time.Second, "Ready()", func() error { return s.Ready(t.Context()) })
	if got, want := s.Version(), httpQuery(t, ch.HTTPAddr(), "SELECT version()"); got != want {
		t.Errorf("Version() = %q, want %q", got, want)
	}
	if err := stop(); err != nil {
		t.Errorf("Run() after cancel = %v, want nil", err)
	}
}

// startProxy listens on a loopback port and, while forward is true, pipes
// each connection to target; otherwise it closes them at once.
func startProxy(t *testing.T, target string, forward *atomic.Bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if !forward.Load() {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			// Either side closing ends both copies.
			wg.Go(func() {
				io.Copy(up, c)
				up.Close()
				c.Close()
			})
			wg.Go(func() {
				io.Copy(c, up)
				c.Close()
				up.Close()
			})
		}
	})
	return l.Addr().String()
}

// TestClickHouseStopsWithIdleConnection guards the shutdown time of
// `parley all`: ClickHouse 18.16 checks for shutdown between polls of an idle
// native connection, every poll_interval (10s by default, 1s in chserver's
// config).
func TestClickHouseStopsWithIdleConnection(t *testing.T) {
	ch := chtest.Start(t)
	opts, err := clickhouse.ParseDSN(ch.DSN())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := ch.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("Close() with an idle native connection took %v, want under 6s", took)
	}
}
