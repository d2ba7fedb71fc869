package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
)

// TestUpstreamFailureStandsBriefly: a round that found a service missing
// stands for upstreamFailTTL only, so services that were starting are seen
// ready at once, while a round that found them all stands upstreamTTL.
func TestUpstreamFailureStandsBriefly(t *testing.T) {
	s := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, s)
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	c := newUpstreamCheck(nc, func() time.Time { return now })
	if err := c.check(t.Context()); err == nil {
		t.Fatal("check with no service running = nil, want an error")
	}
	fail := func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("not for this test") }
	var routes []rpc.Route
	for _, subject := range upstreams {
		routes = append(routes, rpc.Route{Subject: subject, Handler: rpc.Handle(fail)})
	}
	served, err := rpc.Serve(t.Context(), nc, slog.New(slog.DiscardHandler), rpc.Service{Name: "upstreams", Queue: "test", Groups: []rpc.Group{{Routes: routes}}})
	if err != nil {
		t.Fatal(err)
	}
	// A readiness probe a moment later, every 10th of the time a success
	// stands, sees the services that came up meanwhile.
	now = now.Add(upstreamTTL / 10)
	if err := c.check(t.Context()); err != nil {
		t.Errorf("check %v after a failure, the services up = %v, want nil", upstreamTTL/10, err)
	}
	served.Stop()
	now = now.Add(upstreamTTL - time.Millisecond)
	if err := c.check(t.Context()); err != nil {
		t.Errorf("check within upstreamTTL of a success = %v, want the success", err)
	}
}
