// Package storetest is the conformance suite of the chat service's ports to
// storage, app.EventStore and app.View: every adapter runs it, as every
// Watermill Pub/Sub runs Watermill's, so that the use cases tested on the
// in-memory adapters hold on JetStream too.
package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/chat/internal/app"
)

const tenant = "acme"

// fixture makes the events of the suite.
type fixture struct {
	t   *testing.T
	key seal.Key
	at  time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	k, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, key: k, at: time.Now().UTC().Truncate(time.Millisecond)}
}

// event returns a new message of conversation conv, with id when set.
func (f *fixture) event(conv, id, text string) event.Envelope {
	f.t.Helper()
	if id == "" {
		id = event.NewID()
	}
	f.at = f.at.Add(time.Millisecond)
	e, err := event.NewWithID(id, f.key, event.MessagePosted, tenant, "v1", conv, f.at, event.Posted{Text: text})
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

// EventStore runs the conformance suite of app.EventStore against the
// stores open returns, a new empty one for each test.
func EventStore(t *testing.T, open func(t *testing.T) app.EventStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s app.EventStore, f *fixture)
	}{
		{"AppendExpectsLastSequenceOfConversation", appendExpectsVersion},
		{"ReadsOneConversationInOrder", readsOneConversation},
		{"ReadsInBatches", readsInBatches},
		{"ReadsLongPages", readsLongPages},
		{"ResendOfStoredEvent", resendOfStoredEvent},
		{"IDOfAnotherEventInConversation", idOfAnotherEvent},
		{"IDInAnotherConversation", idInAnotherConversation},
		{"IDOfDeletedEvent", idOfDeletedEvent},
		{"TTLSetsExpiry", ttlSetsExpiry},
		{"ExpiredLastEventIsNotLast", expiredLastIsNotLast},
		{"HeadAndNext", headAndNext},
		{"DeleteRemovesOneEvent", deleteRemovesOneEvent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t), newFixture(t))
		})
	}
}

func mustAppend(t *testing.T, s app.EventStore, e event.Envelope, version uint64) uint64 {
	t.Helper()
	seq, err := s.Append(t.Context(), e, version, 0)
	if err != nil {
		t.Fatalf("Append(%s after %d) = %v", e.Aggregate, version, err)
	}
	return seq
}

// appendExpectsVersion: an append names the sequence of the conversation's
// last event (0: none) and is refused with ErrStale otherwise; other
// conversations' appends do not move it.
func appendExpectsVersion(t *testing.T, s app.EventStore, f *fixture) {
	ctx := t.Context()
	first := mustAppend(t, s, f.event("c1", "", "one"), 0)
	if first == 0 {
		t.Fatal("Append() = sequence 0, want > 0")
	}
	if _, err := s.Append(ctx, f.event("c1", "", "again first"), 0, 0); !errors.Is(err, app.ErrStale) {
		t.Errorf("Append(expecting none) to a conversation with events = %v, want ErrStale", err)
	}
	other := mustAppend(t, s, f.event("c2", "", "elsewhere"), 0)
	second := mustAppend(t, s, f.event("c1", "", "two"), first)
	if second <= other {
		t.Errorf("sequences %d then %d: want increasing across conversations", other, second)
	}
	if _, err := s.Append(ctx, f.event("c1", "", "stale"), first, 0); !errors.Is(err, app.ErrStale) {
		t.Errorf("Append(after %d) when the last is %d = %v, want ErrStale", first, second, err)
	}
	if _, err := s.Append(ctx, f.event("c1", "", "ahead"), second+100, 0); !errors.Is(err, app.ErrStale) {
		t.Errorf("Append(after %d) when the last is %d = %v, want ErrStale", second+100, second, err)
	}
}

// deleteRemovesOneEvent: a deleted event is read no more, the others are,
// the conversation's last sequence still fences appends, and deleting it
// again, or what never was, is no error.
func deleteRemovesOneEvent(t *testing.T, s app.EventStore, f *fixture) {
	ctx := t.Context()
	first := f.event("c1", "", "one")
	v1 := mustAppend(t, s, first, 0)
	v2 := mustAppend(t, s, f.event("c1", "", "two"), v1)
	last := f.event("c1", "", "three")
	v3 := mustAppend(t, s, last, v2)
	for range 2 {
		if err := s.Delete(ctx, v2); err != nil {
			t.Fatalf("Delete(%d) = %v", v2, err)
		}
	}
	if err := s.Delete(ctx, v3+1000); err != nil {
		t.Errorf("Delete(a sequence never stored) = %v, want nil", err)
	}
	got, err := s.Load(ctx, tenant, "c1", 0)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, "Load(c1) after deleting its second event", got, []app.Record{{Seq: v1, Event: first}, {Seq: v3, Event: last}})
	if _, err := s.Append(ctx, f.event("c1", "", "stale"), v2, 0); !errors.Is(err, app.ErrStale) {
		t.Errorf("Append(after the deleted %d) = %v, want ErrStale", v2, err)
	}
	mustAppend(t, s, f.event("c1", "", "four"), v3)
}

// readsOneConversation: Read and Load return one conversation's events
// after a sequence, oldest first, as appended, and nothing of others.
func readsOneConversation(t *testing.T, s app.EventStore, f *fixture) {
	ctx := t.Context()
	var want []app.Record
	var v1, v2 uint64
	for i := range 5 {
		e := f.event("c1", "", fmt.Sprint("m", i))
		v1 = mustAppend(t, s, e, v1)
		want = append(want, app.Record{Seq: v1, Event: e})
		v2 = mustAppend(t, s, f.event("c2", "", fmt.Sprint("other ", i)), v2)
	}
	got, err := s.Load(ctx, tenant, "c1", 0)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, "Load(c1, 0)", got, want)
	got, err = s.Load(ctx, tenant, "c1", want[2].Seq)
	if err != nil {
		t.Fatal(err)
	}
	sameRecords(t, "Load(c1, third)", got, want[3:])
	rs, more, err := s.Read(ctx, tenant, "c1", v1, 10)
	if err != nil || len(rs) != 0 || more {
		t.Errorf("Read(c1 after its last) = %d records, more %v, %v; want none", len(rs), more, err)
	}
	rs, more, err = s.Read(ctx, tenant, "none", 0, 10)
	if err != nil || len(rs) != 0 || more {
		t.Errorf("Read(conversation without events) = %d records, more %v, %v; want none", len(rs), more, err)
	}
	rs, _, err = s.Read(ctx, "other", "c1", 0, 10)
	if err != nil || len(rs) != 0 {
		t.Errorf("Read(c1 of another tenant) = %d records, %v; want none", len(rs), err)
	}
}

// readsInBatches: Read returns at most limit events and tells whether more
// follow; reading on from the last returned reads everything once.
func readsInBatches(t *testing.T, s app.EventStore, f *fixture) {
	var want []app.Record
	var v uint64
	for i := range 7 {
		e := f.event("c1", "", fmt.Sprint("m", i))
		v = mustAppend(t, s, e, v)
		want = append(want, app.Record{Seq: v, Event: e})
	}
	var got []app.Record
	var after uint64
	for reads := 0; ; reads++ {
		if reads > len(want) {
			t.Fatal("Read() does not come to an end")
		}
		rs, more, err := s.Read(t.Context(), tenant, "c1", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) > 3 {
			t.Fatalf("Read(limit 3) = %d records", len(rs))
		}
		got = append(got, rs...)
		if !more || len(rs) == 0 {
			break
		}
		after = rs[len(rs)-1].Seq
	}
	sameRecords(t, "Read() in batches of 3", got, want)
	rs, more, err := s.Read(t.Context(), tenant, "c1", 0, 7)
	if err != nil || len(rs) != 7 || more {
		t.Errorf("Read(limit 7) of 7 = %d records, more %v, %v; want 7, false", len(rs), more, err)
	}
}

// readsLongPages: pages of hundreds of events, among another
// conversation's, are whole and in order, as short ones are (the JetStream
// store reads them in three ways: by one direct get, by two, or by a
// direct get and a consumer).
func readsLongPages(t *testing.T, s app.EventStore, f *fixture) {
	var want []app.Record
	var v1, v2 uint64
	for i := range 450 {
		e := f.event("c1", "", fmt.Sprint("m", i))
		v1 = mustAppend(t, s, e, v1)
		want = append(want, app.Record{Seq: v1, Event: e})
		if i%3 == 0 {
			v2 = mustAppend(t, s, f.event("c2", "", fmt.Sprint("other ", i)), v2)
		}
	}
	tests := []struct {
		after    int
		limit    int
		want     []app.Record
		wantMore bool
	}{
		{0, 500, want, false},
		{0, 250, want[:250], true},
		{250, 300, want[250:], false},
		{100, 350, want[100:], false},
		{50, 349, want[50:399], true},
		{350, 300, want[350:], false},
		{445, 300, want[445:], false},
		{300, 200, want[300:], false},
	}
	for _, tt := range tests {
		var after uint64
		if tt.after > 0 {
			after = want[tt.after-1].Seq
		}
		rs, more, err := s.Read(t.Context(), tenant, "c1", after, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("Read(after the %dth, limit %d)", tt.after, tt.limit)
		sameRecords(t, what, rs, tt.want)
		if more != tt.wantMore {
			t.Errorf("%s: more %v, want %v", what, more, tt.wantMore)
		}
	}
}

// resendOfStoredEvent: an append of an event the store holds already (a
// retry after a lost acknowledgement) stores nothing more, and either
// answers its sequence or, the conversation having moved on, ErrStale.
func resendOfStoredEvent(t *testing.T, s app.EventStore, f *fixture) {
	e := f.event("c1", "", "once")
	seq := mustAppend(t, s, e, 0)
	got, err := s.Append(t.Context(), e, 0, 0)
	if err != nil && !errors.Is(err, app.ErrStale) || err == nil && got != seq {
		t.Errorf("Append(resend) = %d, %v; want %d or ErrStale", got, err, seq)
	}
	rs, err := s.Load(t.Context(), tenant, "c1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Errorf("conversation holds %d events after a resend, want 1", len(rs))
	}
}

// idOfAnotherEvent: another event with the id of one the conversation
// holds (a repeated request, decided again) is ErrStale: the conversation
// moved on.
func idOfAnotherEvent(t *testing.T, s app.EventStore, f *fixture) {
	id := event.DerivedID("key")
	seq := mustAppend(t, s, f.event("c1", id, "first"), 0)
	if _, err := s.Append(t.Context(), f.event("c1", id, "second"), seq, 0); !errors.Is(err, app.ErrStale) {
		t.Errorf("Append(another event of a stored id) = %v, want ErrStale", err)
	}
}

// idInAnotherConversation: an id that another conversation holds is
// ErrDuplicateID.
func idInAnotherConversation(t *testing.T, s app.EventStore, f *fixture) {
	id := event.DerivedID("key")
	mustAppend(t, s, f.event("c1", id, "first"), 0)
	if _, err := s.Append(t.Context(), f.event("c2", id, "elsewhere"), 0, 0); !errors.Is(err, app.ErrDuplicateID) {
		t.Errorf("Append(id of another conversation) = %v, want ErrDuplicateID", err)
	}
	rs, err := s.Load(t.Context(), tenant, "c2", 0)
	if err != nil || len(rs) != 0 {
		t.Errorf("Load(c2) = %d records, %v; want none", len(rs), err)
	}
}

// idOfDeletedEvent: the id of an event Delete removed (a withdrawn
// message's posting), appended again expecting the conversation's last
// event, is ErrDuplicateID while the store remembers the id (JetStream's
// duplicate window): there is no event to answer from.
func idOfDeletedEvent(t *testing.T, s app.EventStore, f *fixture) {
	id := event.DerivedID("key")
	posted := mustAppend(t, s, f.event("c1", id, "first"), 0)
	last := mustAppend(t, s, f.event("c1", "", "after"), posted)
	if err := s.Delete(t.Context(), posted); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(t.Context(), f.event("c1", id, "again"), last, 0); !errors.Is(err, app.ErrDuplicateID) {
		t.Errorf("Append(id of a deleted event) = %v, want ErrDuplicateID", err)
	}
}

// ttlSetsExpiry: an event appended with a ttl reads with the expiry it
// gives, counted from the event's time; one without, with none.
func ttlSetsExpiry(t *testing.T, s app.EventStore, f *fixture) {
	ctx := t.Context()
	e := f.event("c1", "", "kept an hour")
	seq, err := s.Append(ctx, e, 0, time.Hour+time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, f.event("c1", "", "kept"), seq)
	rs, err := s.Load(ctx, tenant, "c1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("Load() = %d records, want 2", len(rs))
	}
	if want := e.At.Add(time.Hour); !rs[0].Expires.Equal(want) {
		t.Errorf("Expires with a ttl of 1h = %v, want %v", rs[0].Expires, want)
	}
	if !rs[1].Expires.IsZero() {
		t.Errorf("Expires without a ttl = %v, want zero", rs[1].Expires)
	}
}

// expiredLastIsNotLast: events expire each by its own ttl, so a later one
// can be removed before an earlier one (a tenant shortened its retention).
// Last then names the earlier one, an append expecting the removed one is
// refused and one expecting Last is stored. The store removes the event,
// so the test waits for it: a second or two.
func expiredLastIsNotLast(t *testing.T, s app.EventStore, f *fixture) {
	ctx := t.Context()
	kept, err := s.Append(ctx, f.event("c1", "", "kept an hour"), 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := s.Append(ctx, f.event("c1", "", "kept a second"), kept, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if last, err := s.Last(ctx, tenant, "c1"); err != nil || last != gone {
		t.Fatalf("Last() = %d, %v; want %d", last, err, gone)
	}
	natstest.Eventually(t, 10*time.Second, "the event kept a second removed", func() error {
		last, err := s.Last(ctx, tenant, "c1")
		if err == nil && last != kept {
			err = fmt.Errorf("Last() = %d, want %d", last, kept)
		}
		return err
	})
	if last, err := s.Last(ctx, tenant, "c2"); err != nil || last != 0 {
		t.Errorf("Last(a conversation without events) = %d, %v; want 0", last, err)
	}
	if _, err := s.Append(ctx, f.event("c1", "", "stale"), gone, 0); !errors.Is(err, app.ErrStale) {
		t.Errorf("Append(after the expired %d) = %v, want ErrStale", gone, err)
	}
	mustAppend(t, s, f.event("c1", "", "after the kept one"), kept)
}

// headAndNext: Head is the sequence of the last event stored, of any
// conversation (0: none), also once it is removed; Next is the first event
// held after a sequence, of any conversation (0: none).
func headAndNext(t *testing.T, s app.EventStore, f *fixture) {
	ctx := t.Context()
	check := func(what string, got uint64, err error, want uint64) {
		t.Helper()
		if err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", what, got, err, want)
		}
	}
	h, err := s.Head(ctx)
	check("Head() of an empty store", h, err, 0)
	n, err := s.Next(ctx, 0)
	check("Next(0) of an empty store", n, err, 0)
	v1 := mustAppend(t, s, f.event("c1", "", "one"), 0)
	v2 := mustAppend(t, s, f.event("c2", "", "two"), 0)
	h, err = s.Head(ctx)
	check("Head()", h, err, v2)
	n, err = s.Next(ctx, 0)
	check("Next(0)", n, err, v1)
	n, err = s.Next(ctx, v1)
	check(fmt.Sprintf("Next(%d)", v1), n, err, v2)
	if err := s.Delete(ctx, v2); err != nil {
		t.Fatal(err)
	}
	h, err = s.Head(ctx)
	check("Head() after deleting the last event", h, err, v2)
	n, err = s.Next(ctx, v1)
	check(fmt.Sprintf("Next(%d) after deleting the last event", v1), n, err, 0)
}

// sameRecords fails the test unless got holds want's events at their
// sequences, in order.
func sameRecords(t *testing.T, what string, got, want []app.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s = %d records, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.Event.ID != w.Event.ID || g.Event.Type != w.Event.Type || g.Event.Tenant != w.Event.Tenant ||
			g.Event.Person != w.Event.Person || g.Event.Aggregate != w.Event.Aggregate || !g.Event.At.Equal(w.Event.At) ||
			string(g.Event.Body) != string(w.Event.Body) || g.Event.Idempotency != w.Event.Idempotency {
			t.Errorf("%s: record %d = seq %d %s %s, want seq %d %s %s", what, i, g.Seq, g.Event.Type, g.Event.ID, w.Seq, w.Event.Type, w.Event.ID)
		}
	}
}
