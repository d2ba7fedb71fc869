package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
)

// defaultHealthAddrs are the --health-addr defaults of the services that
// serve no API: distinct, so that every service can run on one machine
// beside the gateway's 8080.
var defaultHealthAddrs = map[string]string{
	"chat":      "127.0.0.1:8081",
	"privacy":   "127.0.0.1:8082",
	"analytics": "127.0.0.1:8083",
}

// readyTimeout bounds one readiness check, below the probes' timeout.
const readyTimeout = 2 * time.Second

var (
	errBusDown  = errors.New("not connected to nats")
	errStopping = errors.New("stopping")
)

// busReady is a service's readiness: connected to NATS, and then whatever
// ready says.
func busReady(nc *nats.Conn, ready func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if !nc.IsConnected() {
			return errBusDown
		}
		return ready(ctx)
	}
}

// healthHandler serves a service's operations endpoints: /healthz answers
// while the process does, /readyz while ready says nil and stopping is
// open, /metrics what gatherer gathers. A change of readiness is logged
// once, with its reason.
func healthHandler(log *slog.Logger, gatherer prometheus.Gatherer, ready func(context.Context) error, stopping <-chan struct{}) http.Handler {
	var (
		mu   sync.Mutex
		last = "unknown"
	)
	note := func(err error) {
		state := "ready"
		if err != nil {
			state = err.Error()
		}
		mu.Lock()
		defer mu.Unlock()
		if state == last {
			return
		}
		last = state
		if err != nil {
			log.Warn("not ready", "err", err)
		} else {
			log.Info("ready")
		}
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		err := errStopping
		select {
		case <-stopping:
		default:
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			err = ready(ctx)
			cancel()
		}
		note(err)
		if err != nil {
			// RFC 9457, as every error Parley answers over HTTP. The reason
			// is for operators: this port is not public.
			w.Header().Set("Content-Type", "application/problem+json")
			writeStatus(w, http.StatusServiceUnavailable, map[string]any{
				"type": "about:blank", "title": "Service Unavailable", "status": http.StatusServiceUnavailable,
				"detail": "not ready: " + err.Error(),
			})
			return
		}
		writeStatus(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	m.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return m
}

func writeStatus(w http.ResponseWriter, status int, body any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// runWithHealth runs service and serves h on ln meanwhile. Once ctx ends,
// /readyz answers not ready while service drains; the server stops when
// service returns, or service stops when the server fails.
func runWithHealth(ctx context.Context, ln net.Listener, h http.Handler, service func(context.Context) error) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		// Its messages could name a client address.
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	g, gctx := errgroup.WithContext(ctx)
	served := make(chan struct{})
	g.Go(func() error {
		defer close(served)
		return service(gctx)
	})
	g.Go(func() error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return fmt.Errorf("serve health: %w", err)
		case <-served:
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}
