package jetstream_test

import (
	"log/slog"
	"testing"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/chat/internal/app"
	"github.com/parley-chat/parley/services/chat/internal/app/storetest"
	"github.com/parley-chat/parley/services/chat/internal/jetstream"
)

func TestEventStore(t *testing.T) {
	storetest.EventStore(t, func(t *testing.T) app.EventStore {
		_, js := natstest.Connect(t, natstest.Start(t, ""))
		s, err := jetstream.Open(t.Context(), js, stream.Options{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestView(t *testing.T) {
	storetest.View(t, func(t *testing.T) app.View {
		_, js := natstest.Connect(t, natstest.Start(t, ""))
		v, err := jetstream.OpenView(t.Context(), js, stream.Options{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return v
	})
}
