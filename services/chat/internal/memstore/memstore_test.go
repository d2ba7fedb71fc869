package memstore_test

import (
	"testing"
	"time"

	"github.com/parley-chat/parley/services/chat/internal/app"
	"github.com/parley-chat/parley/services/chat/internal/app/storetest"
	"github.com/parley-chat/parley/services/chat/internal/memstore"
)

func TestEventStore(t *testing.T) {
	storetest.EventStore(t, func(*testing.T) app.EventStore { return &memstore.Store{Now: time.Now} })
}

func TestView(t *testing.T) {
	storetest.View(t, func(*testing.T) app.View { return &memstore.View{} })
}

func TestProfileStore(t *testing.T) {
	storetest.ProfileStore(t, func(*testing.T) app.ProfileStore { return &memstore.Profiles{} })
}
