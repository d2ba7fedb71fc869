package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/chat/internal/app"
	"github.com/parley-chat/parley/services/chat/internal/memstore"
)

// lostAck is an event store that stores the next append and answers it
// as refused, as a replicated stream does when the append's
// acknowledgement is lost while it changes leaders and the resend is
// refused for the version the first one took.
type lostAck struct {
	*memstore.Store
	armed bool
}

func (s *lostAck) Append(ctx context.Context, e event.Envelope, version uint64, ttl time.Duration) (uint64, error) {
	seq, err := s.Store.Append(ctx, e, version, ttl)
	if err != nil || !s.armed {
		return seq, err
	}
	s.armed = false
	return 0, fmt.Errorf("append after %d: %w", version, app.ErrStale)
}

// TestPostStoredButRefusedIsNotStoredAgain posts without an idempotency
// key to a store that stores the post and answers it refused: the post is
// answered with the event stored, and stored once.
func TestPostStoredButRefusedIsNotStoredAgain(t *testing.T) {
	w := newWorld()
	store := &lostAck{Store: w.events}
	in := app.New(store, w.view, w.keys, app.Options{Auditor: &w.audited, Profiles: w.profiles})
	v := visitorN(1)
	res, err := in.Open(t.Context(), v, chatapi.OpenArgs{Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	store.armed = true
	posted, err := in.Post(t.Context(), v, chatapi.PostArgs{Conversation: res.ID, Text: "once"})
	if err != nil {
		t.Fatalf("Post() = %v, want the stored event", err)
	}
	var stored []app.Record
	for _, r := range w.events.Since(0) {
		if r.Event.Type == event.MessagePosted {
			stored = append(stored, r)
		}
	}
	if len(stored) != 1 {
		t.Fatalf("store holds the post %d times, want once", len(stored))
	}
	if posted.Seq != stored[0].Seq || posted.ID != stored[0].Event.ID {
		t.Errorf("Post() = id %s seq %d, want the stored %s seq %d", posted.ID, posted.Seq, stored[0].Event.ID, stored[0].Seq)
	}
}
