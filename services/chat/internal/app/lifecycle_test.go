package app_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/chat/internal/app"
	"github.com/parley-chat/parley/services/chat/internal/conversation"
	"github.com/parley-chat/parley/services/chat/internal/memstore"
)

// TestErasedVisitorListedClosed erases a visitor with open conversations:
// the instance lists them closed at once, the View holds them closed, and
// a restart neither loads them as open nor loses them from the list.
func TestErasedVisitorListedClosed(t *testing.T) {
	w := newWorld()
	in := w.start(t)
	v := visitorN(1)
	a, b := in.open(t, v, "a"), in.open(t, v, "b")
	kept := in.open(t, visitorN(2), "kept")
	in.follow(t)
	w.keys.erase(tenant, v.ID)
	if err := in.EraseVisitor(t.Context(), tenant, v.ID); err != nil {
		t.Fatal(err)
	}
	want := []string{kept, b, a}
	if got := in.list(t, supervisor, chatapi.StatusClosed, 10); !cmp.Equal(got, want[1:]) {
		t.Errorf("List(closed) after erasure = %v, want %v", got, want[1:])
	}
	var open []string
	if _, err := w.view.Load(t.Context(), func(e app.ViewEntry) error {
		open = append(open, e.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(open, []string{kept}) {
		t.Errorf("View's open entries after erasure = %v, want [%s]", open, kept)
	}
	again := w.start(t)
	if got := app.Held(again.Service); got != 1 {
		t.Errorf("restarted instance holds %d conversations, want the 1 open one", got)
	}
	if diff := cmp.Diff(want, again.list(t, supervisor, "", 10)); diff != "" {
		t.Errorf("List() after restart mismatch (-want +got):\n%s", diff)
	}
	_, err := again.Post(t.Context(), v, chatapi.PostArgs{Conversation: a, Text: "x"})
	if !errors.Is(err, conversation.ErrErased) {
		t.Errorf("Post(erased visitor's) = %v, want ErrErased", err)
	}
}

// clockedWorld returns a world whose store, and the instances started
// with clock, read the time now points at: 2026-01-01 until a test moves
// it.
func clockedWorld() (w *world, now *time.Time, clock func() time.Time) {
	w = newWorld()
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock = func() time.Time { return t }
	w.events.Now = clock
	return w, &t, clock
}

// fixedPolicies gives every tenant one retention.
type fixedPolicies time.Duration

func (p fixedPolicies) Get(string) privacyapi.Settings {
	return privacyapi.Settings{RetentionSeconds: int(time.Duration(p) / time.Second)}
}

// TestExpiredClosedConversationsLeave lets the retention of closed
// conversations that no instance holds pass: they leave the list, the
// visitor's export, and are not found.
func TestExpiredClosedConversationsLeave(t *testing.T) {
	w := newWorld()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	in := w.startWith(t, app.Options{Now: clock, Policies: fixedPolicies(time.Hour)})
	v := visitorN(1)
	conv := in.open(t, v, "short")
	if _, err := in.Close(t.Context(), v, chatapi.ConversationArgs{Conversation: conv}); err != nil {
		t.Fatal(err)
	}
	in.follow(t)
	later := w.startWith(t, app.Options{Now: clock, Policies: fixedPolicies(time.Hour)})
	if got := later.list(t, v, "", 10); !cmp.Equal(got, []string{conv}) {
		t.Fatalf("List() within retention = %v, want [%s]", got, conv)
	}
	ex, err := later.export(t, v, chatapi.ExportArgs{Visitor: v.ID})
	if err != nil || len(ex.Conversations) != 1 {
		t.Fatalf("Export() within retention = %d conversations, %v; want 1", len(ex.Conversations), err)
	}

	now = now.Add(2 * time.Hour)
	again := w.startWith(t, app.Options{Now: clock, Policies: fixedPolicies(time.Hour)})
	if got := again.list(t, supervisor, "", 10); len(got) != 0 {
		t.Errorf("List() past retention = %v, want none", got)
	}
	ex, err = again.export(t, v, chatapi.ExportArgs{Visitor: v.ID})
	if err != nil || len(ex.Conversations) != 0 {
		t.Errorf("Export() past retention = %d conversations, %v; want none", len(ex.Conversations), err)
	}
	if _, err := again.Get(t.Context(), v, chatapi.ConversationArgs{Conversation: conv}); !errors.Is(err, conversation.ErrNotFound) {
		t.Errorf("Get() past retention = %v, want ErrNotFound", err)
	}
}

// TestOpenConversationsExpire lets the retention of an open conversation
// pass while an instance holds it: its view entry was written to expire
// viewGrace after its events, and ExpireOpen drops it from memory and the
// view, reading the store for it alone; a conversation with a later event
// stays.
func TestOpenConversationsExpire(t *testing.T) {
	w, now, clock := clockedWorld()
	in := w.startWith(t, app.Options{Now: clock, Policies: fixedPolicies(time.Hour)})
	v := visitorN(1)
	gone := in.open(t, v, "short")
	*now = now.Add(time.Minute)
	kept := in.open(t, visitorN(2), "later")
	in.follow(t)
	e, ok, err := w.view.Get(t.Context(), tenant, v.ID, gone)
	if err != nil || !ok {
		t.Fatalf("Get(%s) = %v, %v; want the entry", gone, ok, err)
	}
	if want := now.Add(-time.Minute + time.Hour + app.ViewGrace); !e.Expires.Equal(want) {
		t.Errorf("entry Expires = %v, want %v: the events' expiry and the grace", e.Expires, want)
	}

	*now = now.Add(time.Hour - 30*time.Second)
	if err := in.ExpireOpen(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := w.view.Get(t.Context(), tenant, v.ID, gone); ok {
		t.Errorf("the entry of %s is still in the view once its events expired", gone)
	}
	if _, ok, _ := w.view.Get(t.Context(), tenant, visitorN(2).ID, kept); !ok {
		t.Errorf("the entry of %s left the view before its events expired", kept)
	}
	if got := app.Held(in.Service); got != 1 {
		t.Errorf("Held() after ExpireOpen = %d, want 1", got)
	}
}

// TestClosedEntryExpiresAtItsErasure closes a conversation its visitor
// asked to have erased two hours after closing, under a year's retention:
// its view entry is written to go by itself viewGrace after that erasure
// is due, so that an erasure no instance heard of (its broadcast lost)
// leaves no entry the visitor's key still opens; one with no erasure
// after closing goes with its events.
func TestClosedEntryExpiresAtItsErasure(t *testing.T) {
	w, now, clock := clockedWorld()
	const retention = 365 * 24 * time.Hour
	in := w.startWith(t, app.Options{Now: clock, Policies: fixedPolicies(retention)})
	v := visitorN(1)
	hours := 2
	erased, err := in.Open(t.Context(), v, chatapi.OpenArgs{Text: "erase me soon", EraseAfterCloseHours: &hours})
	if err != nil {
		t.Fatal(err)
	}
	kept := in.open(t, v, "keep me")
	// Another visitor's, closed by their erasure while open: no erasure
	// after closing comes, and the entry stays as long as its events.
	other := visitorN(2)
	left, err := in.Open(t.Context(), other, chatapi.OpenArgs{Text: "erase me with my visitor", EraseAfterCloseHours: &hours})
	if err != nil {
		t.Fatal(err)
	}
	openedAt := *now
	*now = now.Add(time.Minute)
	for _, id := range []string{erased.ID, kept} {
		if _, err := in.Close(t.Context(), v, chatapi.ConversationArgs{Conversation: id}); err != nil {
			t.Fatal(err)
		}
	}
	in.follow(t)
	w.keys.erase(tenant, other.ID)
	if err := in.EraseVisitor(t.Context(), tenant, other.ID); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		visitor, id string
		want        time.Time
	}{
		{v.ID, erased.ID, now.Add(2*time.Hour + app.ViewGrace)},
		{v.ID, kept, now.Add(retention + app.ViewGrace)}, // from its last event, the close
		{other.ID, left.ID, openedAt.Add(retention + app.ViewGrace)},
	} {
		id, want := c.id, c.want
		e, ok, err := w.view.Get(t.Context(), tenant, c.visitor, id)
		if err != nil || !ok {
			t.Fatalf("Get(%s) = %v, %v; want the entry", id, ok, err)
		}
		if !e.Expires.Equal(want) {
			t.Errorf("entry of %s Expires = %v, want %v", id, e.Expires, want)
		}
	}
}

// TestCrashBetweenViewWritesLosesNothing applies events the view is not
// written with yet — posts, an assignment, a close, the withdrawal of an
// opening message, a new conversation —
// and starts again from the view as a crash then leaves it: the instance
// lists and decides as one started from a view rebuilt from the store
// alone, and the view it writes equals that one.
func TestCrashBetweenViewWritesLosesNothing(t *testing.T) {
	w := newWorld()
	in := w.start(t)
	v1, v2 := visitorN(1), visitorN(2)
	a, b := in.open(t, v1, "a"), in.open(t, v2, "b")
	in.follow(t)
	for i := range 5 {
		if _, err := in.Post(t.Context(), v1, chatapi.PostArgs{Conversation: a, Text: "more", IdempotencyKey: fmt.Sprint("k", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := in.Assign(t.Context(), supervisor, chatapi.AssignArgs{Conversation: a, Agent: agent.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Close(t.Context(), v2, chatapi.ConversationArgs{Conversation: b}); err != nil {
		t.Fatal(err)
	}
	first, err := in.messages(t, v2, chatapi.MessagesArgs{Conversation: b})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Withdraw(t.Context(), v2, chatapi.WithdrawArgs{Conversation: b, Message: first.Messages[0].ID}); err != nil {
		t.Fatal(err)
	}
	c := in.open(t, visitorN(3), "c")
	in.project(t)
	if _, applied := viewOf(t, w.view); applied >= in.followed {
		t.Fatalf("view applied %d after the crash, want behind %d", applied, in.followed)
	}

	again := w.start(t)
	again.follow(t)
	rebuilt := (&world{events: w.events, view: &memstore.View{}, profiles: w.profiles, keys: w.keys}).start(t)
	rebuilt.follow(t)
	if diff := cmp.Diff(rebuilt.list(t, supervisor, "", 10), again.list(t, supervisor, "", 10)); diff != "" {
		t.Errorf("List() mismatch (-rebuilt +caught up):\n%s", diff)
	}
	got, applied := viewOf(t, w.view)
	want, _ := viewOf(t, rebuilt.w.view)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("view mismatch (-rebuilt +caught up):\n%s", diff)
	}
	if applied != again.followed {
		t.Errorf("view applied = %d, want %d", applied, again.followed)
	}
	// The idempotency index came through: a key posted again is the same post.
	_, err = again.Post(t.Context(), v1, chatapi.PostArgs{Conversation: a, Text: "more", IdempotencyKey: "k4"})
	if err != nil {
		t.Errorf("Post(k4 again) after the crash = %v", err)
	}
	if _, err := again.Post(t.Context(), v2, chatapi.PostArgs{Conversation: b, Text: "x"}); !errors.Is(err, conversation.ErrClosed) {
		t.Errorf("Post(closed) after the crash = %v, want ErrClosed", err)
	}
	if _, err := again.Get(t.Context(), supervisor, chatapi.ConversationArgs{Conversation: c}); err != nil {
		t.Errorf("Get(opened before the crash) = %v", err)
	}
}

// TestPacedViewWriteGivesWay writes the view paced over an hour: it writes
// its first entry at once and the others later, while an erasure and a
// write that may not wait (the one at ready or at stop) are not held up by
// it: the erasure waits for a step's writes only, and the unpaced write
// has the paced one write the rest at once, so that the view it leaves is
// the one an unpaced write gives.
func TestPacedViewWriteGivesWay(t *testing.T) {
	w := newWorld()
	in := w.start(t)
	v := visitorN(1)
	convs := []string{in.open(t, v, "a"), in.open(t, visitorN(2), "b"), in.open(t, visitorN(3), "c")}
	in.project(t)
	paced := make(chan error, 1)
	go func() { paced <- in.WriteView(t.Context(), time.Hour) }()
	natstest.Until(t, 30*time.Second, "the paced write's first entry", func() bool {
		got, _ := viewOf(t, w.view)
		return len(got) == 1
	})
	erased := make(chan error, 1)
	go func() {
		w.keys.erase(tenant, v.ID)
		erased <- in.EraseVisitor(t.Context(), tenant, v.ID)
	}()
	select {
	case err := <-erased:
		if err != nil {
			t.Fatalf("EraseVisitor() = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("EraseVisitor() waits for the paced write of the view")
	}
	unpaced := make(chan error, 1)
	go func() { unpaced <- in.WriteView(t.Context(), 0) }()
	for _, c := range []chan error{unpaced, paced} {
		select {
		case err := <-c:
			if err != nil {
				t.Fatalf("WriteView() = %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("WriteView(0) waits for the paced write of the view")
		}
	}
	got, applied := viewOf(t, w.view)
	if len(got) != len(convs) || applied != in.followed {
		t.Errorf("view after the writes = %d entries applied to %d, want %d applied to %d", len(got), applied, len(convs), in.followed)
	}
	if got[convs[0]].Open {
		t.Errorf("view of the erased visitor's conversation is open, want closed")
	}
}

// viewEntry is what a rebuild reproduces of a view entry: all but the
// sealed assignee's bytes, whose nonce is random, and the revision.
type viewEntry struct {
	Version uint64
	State   string
	Open    bool
	Sealed  bool
}

// viewOf returns the view's entries by conversation id, and its applied
// sequence.
func viewOf(t *testing.T, v *memstore.View) (map[string]viewEntry, uint64) {
	t.Helper()
	out := map[string]viewEntry{}
	add := func(e app.ViewEntry) error {
		out[e.ID] = viewEntry{Version: e.Version, State: string(e.State), Open: e.Open, Sealed: e.Assignee != nil}
		return nil
	}
	applied, err := v.Load(t.Context(), add)
	if err != nil {
		t.Fatal(err)
	}
	err = v.Closed(t.Context(), "", "", func(k app.ClosedKey) error {
		e, ok, err := v.Get(t.Context(), k.Tenant, k.Visitor, k.ID)
		if err != nil || !ok {
			return fmt.Errorf("closed entry %s: %v, found %v", k.ID, err, ok)
		}
		return add(e)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, applied
}

// TestMigrateExpiry gives closed entries written with no expiry, as
// versions before entries expired by themselves wrote them, theirs once:
// one past it is removed, decided from the entry alone; one whose events
// the store no longer holds is removed; one whose events remain is
// rewritten to expire with them. A second call does nothing.
func TestMigrateExpiry(t *testing.T) {
	w := newWorld()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	w.events.Now = clock
	o := app.Options{Now: clock, Policies: fixedPolicies(time.Hour)}
	in := w.startWith(t, o)
	v := visitorN(1)
	closed := func() string {
		t.Helper()
		id := in.open(t, v, "closed")
		if _, err := in.Close(t.Context(), v, chatapi.ConversationArgs{Conversation: id}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	expired := closed()
	now = now.Add(50 * time.Minute)
	erased, kept := closed(), closed()
	in.follow(t)
	for _, id := range []string{expired, erased, kept} {
		e, ok, err := w.view.Get(t.Context(), tenant, v.ID, id)
		if err != nil || !ok {
			t.Fatalf("Get(%s) = %v, %v; want the entry", id, ok, err)
		}
		e.Expires = time.Time{} // as an older version wrote it
		if _, err := w.view.Put(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := w.events.Load(t.Context(), tenant, erased, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := w.events.Delete(t.Context(), r.Seq); err != nil {
			t.Fatal(err)
		}
	}

	now = now.Add(20 * time.Minute) // past the first one's expiry only
	events := &readCounter{Store: w.events}
	s := app.New(events, w.view, w.keys, app.Options{Now: clock, Policies: fixedPolicies(time.Hour), Auditor: &w.audited, Profiles: w.profiles})
	if ran, err := s.MigrateExpiry(t.Context()); !ran || err != nil {
		t.Fatalf("MigrateExpiry() = %v, %v; want it run", ran, err)
	}
	for _, tt := range []struct {
		id    string
		want  time.Time // the entry's expiry; zero: removed
		reads int
	}{
		{expired, time.Time{}, 0},
		{erased, time.Time{}, 1},
		{kept, now.Add(-20*time.Minute + time.Hour + app.ViewGrace), 1},
	} {
		e, ok, err := w.view.Get(t.Context(), tenant, v.ID, tt.id)
		if err != nil || ok != !tt.want.IsZero() || !e.Expires.Equal(tt.want) {
			t.Errorf("entry of %s after MigrateExpiry() found %v expiring %v, %v; want found %v expiring %v",
				tt.id, ok, e.Expires, err, !tt.want.IsZero(), tt.want)
		}
		if got := events.reads(tt.id); got != tt.reads {
			t.Errorf("MigrateExpiry() read the store for %s %d times, want %d", tt.id, got, tt.reads)
		}
	}
	if ran, err := s.MigrateExpiry(t.Context()); ran || err != nil {
		t.Errorf("MigrateExpiry() again = %v, %v; want it skipped", ran, err)
	}
}
