package jetstream_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/jetstream"
	"github.com/parley-chat/parley/services/privacy/internal/storetest"
)

// connect returns JetStream on a server of the test's own holding the
// named streams.
func connect(t *testing.T, names ...string) natsjs.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	if err := stream.Ensure(t.Context(), js, stream.Options{}, names...); err != nil {
		t.Fatal(err)
	}
	return js
}

func TestKeyStore(t *testing.T) {
	storetest.KeyStore(t, func(t *testing.T, kekID string) app.KeyStore {
		ks, err := jetstream.NewKeyStore(t.Context(), connect(t, stream.Keys), kekID)
		if err != nil {
			t.Fatal(err)
		}
		return ks
	})
}

func TestChatLog(t *testing.T) {
	storetest.ChatLog(t, func(t *testing.T) (app.ChatLog, func(event.Envelope) uint64) {
		js := connect(t, stream.Chat)
		return jetstream.NewChatLog(js), func(e event.Envelope) uint64 {
			ack, err := js.PublishMsg(t.Context(), e.Msg(stream.ChatSubject(e.Tenant, e.Aggregate)))
			if err != nil {
				t.Fatal(err)
			}
			return ack.Sequence
		}
	})
}

func TestEventLog(t *testing.T) {
	storetest.EventLog(t, func(t *testing.T) app.EventLog {
		return jetstream.NewEventLog(connect(t, stream.Privacy))
	})
}

func TestErasureRecords(t *testing.T) {
	storetest.ErasureRecords(t, func(t *testing.T) app.ErasureRecords {
		r, err := jetstream.NewErasureRecords(t.Context(), connect(t), stream.Options{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return r
	})
}

func TestAudit(t *testing.T) {
	storetest.Audit(t, func(t *testing.T) (app.AuditLog, app.CheckpointStore) {
		js := connect(t, stream.Audit, stream.AuditCheckpoints)
		l, err := jetstream.NewAuditLog(t.Context(), js)
		if err != nil {
			t.Fatal(err)
		}
		c, err := jetstream.NewCheckpoints(t.Context(), js)
		if err != nil {
			t.Fatal(err)
		}
		return l, c
	})
}

func TestExpiries(t *testing.T) {
	storetest.Expiries(t, func(t *testing.T) (app.ExpiryScheduler, func(string, string) (time.Time, bool)) {
		js := connect(t, stream.Schedules)
		return jetstream.NewExpirySchedules(js), func(tenant, visitor string) (time.Time, bool) {
			s, err := js.Stream(t.Context(), stream.Schedules)
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.GetLastMsgForSubject(t.Context(), "schedule.expire-subject."+tenant+"."+visitor)
			if err != nil {
				return time.Time{}, false
			}
			at, err := time.Parse(time.RFC3339, strings.TrimPrefix(m.Header.Get(natsjs.ScheduleHeader), "@at "))
			return at, err == nil
		}
	})
}

func TestSessions(t *testing.T) {
	storetest.Sessions(t, func(t *testing.T) app.SessionStore {
		_, js := natstest.Connect(t, natstest.Start(t, ""))
		s, err := jetstream.NewSessionStore(t.Context(), js, stream.Options{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestIntegrations(t *testing.T) {
	storetest.Integrations(t, func(t *testing.T) app.IntegrationStore {
		s, err := jetstream.NewIntegrationStore(t.Context(), connect(t), stream.Options{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
