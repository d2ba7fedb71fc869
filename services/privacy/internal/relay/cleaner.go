package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

// eraseTimeout bounds the wait for the analytics service's deletion, so an
// erasure answers within its own deadline whatever ClickHouse does.
const eraseTimeout = 3 * time.Second

// Cleaner asks the analytics service to delete an erased subject's rows.
// It implements app.AnalyticsCleaner.
type Cleaner struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// NewCleaner returns a cleaner calling over nc and storing through js.
func NewCleaner(nc *nats.Conn, js jetstream.JetStream) *Cleaner {
	return &Cleaner{nc: nc, js: js}
}

// Prepare stores the deletion request in the ANALYTICS stream, behind every
// fact of the subject relayed so far: the analytics service performs it
// when it gets there, even if Erase never reaches it. The request's
// Nats-Msg-Id is derived from the pseudonym, so a repeated erasure stores
// it once.
func (c *Cleaner) Prepare(ctx context.Context, tenant, pseudonym string) error {
	data, err := json.Marshal(analyticsapi.EraseArgs{Tenant: tenant, Pseudonym: pseudonym})
	if err != nil {
		return err
	}
	m := nats.NewMsg(analyticsapi.Subject(tenant, analyticsapi.KindErasure))
	m.Header.Set(jetstream.MsgIDHeader, "erasure:"+pseudonym)
	m.Data = data
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("store analytics erasure: %w", err)
	}
	return nil
}

// Erase asks the analytics service to delete the rows now and returns how
// many facts it deleted.
func (c *Cleaner) Erase(ctx context.Context, tenant, pseudonym string) (int64, error) {
	timeout := eraseTimeout
	if dl, ok := ctx.Deadline(); ok {
		// Leave the erasure time to record its completion.
		timeout = min(timeout, time.Until(dl)-time.Second)
	}
	if timeout <= 0 {
		return 0, context.DeadlineExceeded
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var res analyticsapi.EraseResult
	req := rpc.Request[analyticsapi.EraseArgs]{
		Principal: auth.System(tenant, privacyapi.Service),
		Args:      analyticsapi.EraseArgs{Tenant: tenant, Pseudonym: pseudonym},
	}
	if err := rpc.Call(ctx, c.nc, analyticsapi.EraseSubject, req, &res); err != nil {
		return 0, err
	}
	return res.RowsDeleted, nil
}
