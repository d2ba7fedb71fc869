package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

// upstreams are subjects of the calls the gateway makes, one per service
// that answers them: chat, privacy, and privacy's key service.
var upstreams = []string{chatapi.OpenSubject, privacyapi.RegisterVisitorSubject, personkey.GetSubject}

// PingServices reports whether the services the gateway calls answer on
// nc: an instance of chat and one of privacy that is well (pkg/rpc Ping).
// Its error names the first that does not.
func PingServices(ctx context.Context, nc *nats.Conn) error {
	if err := rpc.Ping(ctx, nc, upstreams...); err != nil {
		return fmt.Errorf("services: %w", err)
	}
	return nil
}

const (
	// upstreamTimeout bounds one round of pings: a service that does not
	// answer within it is as good as gone for a request.
	upstreamTimeout = time.Second
	// upstreamTTL is how long a round's answer stands: /readyz, which load
	// balancers may call often, then costs the bus a few requests a second
	// at most. A failure stands for upstreamFailTTL only: a service that
	// was starting is seen ready at once rather than a second later, and
	// pings to services that are not there fail without a round trip.
	upstreamTTL     = time.Second
	upstreamFailTTL = 100 * time.Millisecond
)

// upstreamCheck is PingServices, cached for upstreamTTL. Safe for
// concurrent use: callers arriving while a round runs wait for its answer.
type upstreamCheck struct {
	nc  *nats.Conn
	now func() time.Time

	mu  sync.Mutex
	at  time.Time // when err was found; zero before the first round
	err error
}

// newUpstreamCheck checks over nc on the clock now; nil means time.Now.
func newUpstreamCheck(nc *nats.Conn, now func() time.Time) *upstreamCheck {
	if now == nil {
		now = time.Now
	}
	return &upstreamCheck{nc: nc, now: now}
}

func (c *upstreamCheck) check(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ttl := upstreamTTL
	if c.err != nil {
		ttl = upstreamFailTTL
	}
	if !c.at.IsZero() && c.now().Sub(c.at) < ttl {
		return c.err
	}
	pctx, cancel := context.WithTimeout(ctx, upstreamTimeout)
	defer cancel()
	err := PingServices(pctx, c.nc)
	if ctx.Err() != nil {
		// The caller went away: that says nothing of the services.
		return err
	}
	c.at, c.err = c.now(), err
	return err
}
