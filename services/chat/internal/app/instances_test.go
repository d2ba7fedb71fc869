package app_test

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/chat/internal/app"
)

// The reads of an instance whose follower has not applied another
// instance's write: each shows the write all the same.

// TestWithdrawnOpeningOnAnotherInstance withdraws a conversation's opening
// message through one instance and reads the transcript, and the visitor's
// export, through another that held the conversation before: neither shows
// the opening's text.
func TestWithdrawnOpeningOnAnotherInstance(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	v := visitorN(1)
	conv := a.open(t, v, "secret opening")
	b.follow(t)
	before, err := b.messages(t, v, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Withdraw(t.Context(), v, chatapi.WithdrawArgs{Conversation: conv, Message: before.Messages[0].ID}); err != nil {
		t.Fatal(err)
	}
	page, err := b.messages(t, v, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	if m := page.Messages[0]; !m.Withdrawn || m.Text != nil {
		t.Errorf("Messages() through the other instance: opening withdrawn=%v text=%q, want withdrawn and no text", m.Withdrawn, deref(m.Text))
	}
	exp, err := b.export(t, v, chatapi.ExportArgs{Visitor: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	if m := exp.Conversations[0].Messages[0]; !m.Withdrawn || m.Text != nil {
		t.Errorf("Export() through the other instance: opening withdrawn=%v text=%q, want withdrawn and no text", m.Withdrawn, deref(m.Text))
	}
}

// retention is app.Policies giving every tenant a retention that can be
// shortened.
type retention struct{ seconds atomic.Int64 }

func (r *retention) Get(string) privacyapi.Settings {
	return privacyapi.Settings{RetentionSeconds: int(r.seconds.Load())}
}

// TestShortenedRetentionDoesNotContend posts to a conversation after a
// shortened retention removed its last event before the earlier ones: the
// append expecting the removed event is refused and the catch-up finds
// nothing new, so the post expects the last event the store holds instead
// of losing every try.
func TestShortenedRetentionDoesNotContend(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	w := newWorld()
	w.events.Now = clock
	var kept retention
	kept.seconds.Store(30 * 24 * 3600)
	in := w.startWith(t, app.Options{Policies: &kept, Now: clock})
	v := visitorN(1)
	conv := in.open(t, v, "kept a month")
	kept.seconds.Store(1)
	now = now.Add(2 * time.Second)
	if _, err := in.Post(t.Context(), v, chatapi.PostArgs{Conversation: conv, Text: "kept a second"}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if _, err := in.Post(t.Context(), v, chatapi.PostArgs{Conversation: conv, Text: "after it expired"}); err != nil {
		t.Fatalf("Post() after the last event expired = %v, want nil", err)
	}
	page, err := in.messages(t, v, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range page.Messages {
		got = append(got, deref(m.Text))
	}
	if want := []string{"kept a month", "after it expired"}; !slices.Equal(got, want) {
		t.Errorf("Messages() = %q, want %q", got, want)
	}
	if in.conflicts != 0 {
		t.Errorf("conflicts = %d, want 0: no other writer", in.conflicts)
	}
}
