package memory_test

import (
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
	"github.com/parley-chat/parley/services/privacy/internal/storetest"
)

func TestKeyStore(t *testing.T) {
	storetest.KeyStore(t, func(_ *testing.T, kekID string) app.KeyStore { return memory.NewKeyStore(kekID) })
}

func TestEventLog(t *testing.T) {
	storetest.EventLog(t, func(*testing.T) app.EventLog { return memory.NewEventLog() })
}

func TestAudit(t *testing.T) {
	storetest.Audit(t, func(*testing.T) (app.AuditLog, app.CheckpointStore) {
		return memory.NewAuditLog(), memory.NewCheckpoints()
	})
}

func TestExpiries(t *testing.T) {
	storetest.Expiries(t, func(*testing.T) (app.ExpiryScheduler, func(string, string) (time.Time, bool)) {
		s := memory.NewExpirySchedules()
		return s, s.At
	})
}

func TestSessions(t *testing.T) {
	storetest.Sessions(t, func(*testing.T) app.SessionStore { return memory.NewSessionStore() })
}

func TestChatLog(t *testing.T) {
	storetest.ChatLog(t, func(*testing.T) (app.ChatLog, func(event.Envelope) uint64) {
		l := new(memory.ChatLog)
		return l, l.Append
	})
}

func TestIntegrations(t *testing.T) {
	storetest.Integrations(t, func(*testing.T) app.IntegrationStore { return memory.NewIntegrationStore() })
}

func TestErasureRecords(t *testing.T) {
	storetest.ErasureRecords(t, func(*testing.T) app.ErasureRecords { return memory.NewErasureRecords() })
}
