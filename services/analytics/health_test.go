package analytics_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chserver/chtest"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/services/analytics"
)

// An ingester without its ANALYTICS stream is a dead consumer: Ready and
// the service's pings say so, naming it, and once it has kept failing for
// GiveUp, Run returns the error.
func TestDeadConsumerMakesAnalyticsNotReady(t *testing.T) {
	ch := chtest.Start(t)
	ns := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, ns)
	s := analytics.New(analytics.Deps{NC: nc, Log: slog.New(slog.DiscardHandler), ClickHouseDSN: ch.DSN(), GiveUp: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	natstest.Eventually(t, 30*time.Second, "Ready naming the consumer", func() error {
		if err := s.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "ingest") {
			return errors.New(errText(err))
		}
		return nil
	})
	if err := rpc.Ping(t.Context(), nc, analyticsapi.MetricsSubject); rpc.CodeOf(err) != rpc.CodeUnavailable {
		t.Errorf("Ping() = %v, want %v", err, rpc.CodeUnavailable)
	}
	if err := natstest.Returns(t, 30*time.Second, "the consumer should have given up", done); err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Errorf("Run() = %v, want the consumer's error", err)
	}
}

func errText(err error) string {
	if err == nil {
		return "ready"
	}
	return err.Error()
}

// Ready is what `parley all`'s /readyz and the analytics port's report:
// once it answers nil, a metric is answered, not refused as unavailable
// because the schema is still being migrated (`parley demo` takes a 503
// for analytics being off).
func TestReadyOnlyOnceMetricsAnswer(t *testing.T) {
	ch := chtest.Start(t)
	nc, _ := analyticsStream(t)
	s := analytics.New(analytics.Deps{NC: nc, Log: slog.New(slog.DiscardHandler), ClickHouseDSN: ch.DSN()})
	_, stop := run(t, s)
	t.Cleanup(func() { stop() })

	natstest.Eventually(t, 30*time.Second, "Ready()", func() error { return s.Ready(t.Context()) })
	day := time.Now().UTC().Truncate(24 * time.Hour)
	args := analyticsapi.MetricsArgs{Tenant: "acme", Metric: analyticsapi.MetricConversations, From: day, To: day.Add(24 * time.Hour), Interval: analyticsapi.IntervalDay}
	err := rpc.Call(t.Context(), nc, analyticsapi.MetricsSubject, rpc.Request[analyticsapi.MetricsArgs]{
		Principal: auth.Principal{Tenant: args.Tenant, ID: "ana", Role: auth.RoleAnalyst}, Args: args,
	}, nil)
	if err != nil {
		t.Errorf("Metrics() right after Ready() = nil: %v, want an answer", err)
	}
}
