package app_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/chat/internal/app"
	"github.com/parley-chat/parley/services/chat/internal/memstore"
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

// TestListShowsWriteOfAnotherInstance opens a conversation through one
// instance and lists the inbox through another whose follower has not
// applied it: the list waits for the follower to get as far as the store
// when it was asked, and shows the conversation.
func TestListShowsWriteOfAnotherInstance(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	v := visitorN(1)
	conv := a.open(t, v, "hi")
	headRead := make(chan struct{}, 1)
	b.onHead = func() {
		select {
		case headRead <- struct{}{}:
		default:
		}
	}
	type listed struct {
		res chatapi.ListResult
		err error
	}
	done := make(chan listed, 1)
	go func() {
		res, err := b.List(t.Context(), v, chatapi.ListArgs{})
		done <- listed{res, err}
	}()
	var got listed
	select {
	case <-headRead:
		// The follower catches up only once the list waits for it.
		b.project(t)
		got = <-done
	case got = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("List() neither returned nor read the store's head")
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	if len(got.res.Conversations) != 1 || got.res.Conversations[0].ID != conv {
		t.Errorf("List() through the other instance = %+v, want [%s]", got.res.Conversations, conv)
	}
}

// TestListDoesNotWaitForRemovedHead lists through an instance whose
// follower never gets to the store's last event, erased before it did: the
// list waits no further than the event before it.
func TestListDoesNotWaitForRemovedHead(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	v, other := visitorN(1), visitorN(2)
	conv := a.open(t, v, "hi")
	b.follow(t)
	a.open(t, other, "erased")
	head, err := w.events.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	b.onHead = func() {
		once.Do(func() {
			if err := w.events.Delete(t.Context(), head); err != nil {
				t.Error(err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res, err := b.List(ctx, supervisor, chatapi.ListArgs{})
	if err != nil {
		t.Fatalf("List() with the head removed before the follower got to it = %v", err)
	}
	if len(res.Conversations) != 1 || res.Conversations[0].ID != conv {
		t.Errorf("List() = %+v, want [%s]", res.Conversations, conv)
	}
}

// TestExportShowsConversationOfAnotherInstance exports a visitor's
// conversations through an instance whose follower has not applied the one
// opened through another.
func TestExportShowsConversationOfAnotherInstance(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	v := visitorN(1)
	conv := a.open(t, v, "hi")
	exp, err := b.export(t, v, chatapi.ExportArgs{Visitor: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(exp.Conversations) != 1 || exp.Conversations[0].ID != conv {
		t.Errorf("Export() through the other instance = %d conversations, want [%s]", len(exp.Conversations), conv)
	}
}

// TestCloseThenOpenOnAnotherInstance: a visitor at the open-conversation
// limit closes one through one instance and opens another through an
// instance that held the closed one open: the open is taken, not refused
// as past the limit.
func TestCloseThenOpenOnAnotherInstance(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	v := visitorN(1)
	var first string
	for i := range privacyapi.DefaultOpenConversationsPerVisitor {
		if id := a.open(t, v, "one of the limit"); i == 0 {
			first = id
		}
	}
	b.follow(t)
	// b learns of the close only by reading the store's head (headStore).
	if _, err := a.Close(t.Context(), v, chatapi.ConversationArgs{Conversation: first}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(t.Context(), v, chatapi.OpenArgs{Text: "after closing one"}); err != nil {
		t.Errorf("Open through the other instance after a close = %v, want it taken", err)
	}
}

// TestRestoreReadsExpiredEntriesOnly restores the open entries of three
// conversations under an hour's retention: one within its expiry is held
// with no read of the store, whatever the store holds; one past it whose
// events the store no longer holds is removed from the view; one past it
// in the view whose conversation took an event since the view was written
// is kept, as the store says.
func TestRestoreReadsExpiredEntriesOnly(t *testing.T) {
	w, now, clock := clockedWorld()
	o := app.Options{Now: clock, Policies: fixedPolicies(time.Hour)}
	a := w.startWith(t, o)
	v := visitorN(1)
	gone := a.open(t, v, "expires")
	later := a.open(t, visitorN(2), "expires in the view only")
	*now = now.Add(40 * time.Minute)
	live := a.open(t, visitorN(3), "within its expiry")
	a.follow(t)
	*now = now.Add(10 * time.Minute)
	// Stored, not written to the view: a crash before the next write.
	if _, err := a.Post(t.Context(), visitorN(2), chatapi.PostArgs{Conversation: later, Text: "still here"}); err != nil {
		t.Fatal(err)
	}

	*now = now.Add(40 * time.Minute) // the first two expired in the view
	events := &readCounter{Store: w.events}
	restored := app.New(events, w.view, w.keys, app.Options{Now: clock, Policies: fixedPolicies(time.Hour), Auditor: &w.audited, Profiles: w.profiles})
	if _, err := restored.Restore(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		id, visitor string
		kept        bool
		reads       int
	}{
		{gone, v.ID, false, 1},
		{later, visitorN(2).ID, true, 1},
		{live, visitorN(3).ID, true, 0},
	} {
		if _, ok, err := w.view.Get(t.Context(), tenant, tt.visitor, tt.id); ok != tt.kept || err != nil {
			t.Errorf("view entry of %s after Restore() found %v, %v; want %v", tt.id, ok, err, tt.kept)
		}
		if got := events.reads(tt.id); got != tt.reads {
			t.Errorf("Restore() read the store for %s %d times, want %d", tt.id, got, tt.reads)
		}
	}
	if got := app.Held(restored); got != 2 {
		t.Errorf("Held() after Restore() = %d, want 2", got)
	}
}

// readCounter is an event store that counts the reads of each
// conversation's events.
type readCounter struct {
	*memstore.Store
	mu sync.Mutex
	n  map[string]int
}

func (s *readCounter) Read(ctx context.Context, tenant, conv string, after uint64, limit int) ([]app.Record, bool, error) {
	s.mu.Lock()
	if s.n == nil {
		s.n = make(map[string]int)
	}
	s.n[conv]++
	s.mu.Unlock()
	return s.Store.Read(ctx, tenant, conv, after, limit)
}

func (s *readCounter) reads(conv string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[conv]
}

// TestStoppingInstanceAnswersWithoutItsFollower: an instance whose
// follower stopped (it drains its last requests as it stops) answers a
// list from what it holds rather than wait, to its deadline, for a
// follower that will not come.
func TestStoppingInstanceAnswersWithoutItsFollower(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	v := visitorN(1)
	b.onHead = func() {} // its follower has stopped: nothing comes
	a.open(t, v, "written as b stops")
	b.Unfollowed()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := b.List(ctx, v, chatapi.ListArgs{Page: chatapi.Page[string]{Limit: 10}}); err != nil {
		t.Errorf("List() on an instance whose follower stopped = %v, want an answer", err)
	}
}
