package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestRemoveOrphansReadsToTheEnd has the removal of orphaned consumers fail
// at the first (its user may list CHAT's consumers but not delete them)
// while more are listed: it returns the failure, and leaves no goroutine
// of the listing behind, which sends each consumer whether or not anyone
// still reads.
func TestRemoveOrphansReadsToTheEnd(t *testing.T) {
	// Registered first, so checked last: after the server and the
	// connections below are closed.
	t.Cleanup(func() { goleak.VerifyNone(t) })
	srv := natstest.StartWith(t, natsembed.Options{Users: []*server.User{
		{Username: "admin", Password: "admin"},
		{Username: "lister", Password: "lister", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"$JS.API.STREAM.INFO." + stream.Chat, "$JS.API.CONSUMER.LIST." + stream.Chat}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
		}},
	}})
	_, admin := natstest.Connect(t, srv, nats.UserInfo("admin", "admin"))
	_, lister := natstest.Connect(t, srv, nats.UserInfo("lister", "lister"))
	ctx := t.Context()
	if err := stream.Ensure(ctx, admin, stream.Options{}, stream.Chat); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		tenant, id := "acme", fmt.Sprintf("gone-%d", i)
		if _, err := admin.CreateConsumer(ctx, stream.Chat, jetstream.ConsumerConfig{
			Durable: ConsumerName(tenant, id), Metadata: map[string]string{metaTenant: tenant, metaID: id},
		}); err != nil {
			t.Fatal(err)
		}
	}
	ints := WatchIntegrations(ctx, admin, slog.New(slog.DiscardHandler), -1, func(error) {})
	t.Cleanup(func() { _ = ints.Close() })
	<-ints.Tried()
	d := &Deliverer{js: lister, ints: ints}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := d.removeOrphans(rctx); err == nil {
		t.Fatal("removeOrphans() with deletes refused = nil, want the refusal")
	}
}
