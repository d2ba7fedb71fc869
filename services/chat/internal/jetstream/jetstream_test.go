package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/seal"
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

// TestViewUpgradesLayout opens a CHAT_VIEW written in the older layouts: one
// key per conversation, and entries with no sealed part. They and the
// applied sequence go, so the service rebuilds it from CHAT, while an entry
// of this layout, written by an instance that upgraded first, stays.
func TestViewUpgradesLayout(t *testing.T) {
	ctx := t.Context()
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := stream.CreateBuckets(ctx, js, stream.Options{}, stream.ChatViewBucket); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, stream.ChatViewBucket)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"acme.c1":           `{"tenant":"acme","id":"c1"}`,
		"applied":           "42",
		"acme.open.v2.c2":   `{"tenant":"acme","id":"c2","visitor":"v2","version":7,"state":{},"sealed":"AAAA"}`,
		"acme.closed.v3.c3": `{"tenant":"acme","id":"c3","visitor":"v3","version":8,"state":{"conv":{"rated":true,"score":4}}}`,
	} {
		if _, err := kv.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	v, err := jetstream.OpenView(ctx, js, stream.Options{}, log)
	if err != nil {
		t.Fatal(err)
	}
	var loaded []string
	applied, err := v.Load(ctx, func(e app.ViewEntry) error {
		loaded = append(loaded, e.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if applied != 0 || len(loaded) != 1 || loaded[0] != "c2" {
		t.Errorf("Load() after the upgrade = %v, applied %d; want [c2], 0", loaded, applied)
	}
	for _, k := range []string{"acme.c1", "acme.closed.v3.c3"} {
		if _, err := kv.Get(ctx, k); err == nil {
			t.Errorf("the older layout's entry %s is still there", k)
		}
	}
	if got := strings.Count(logs.String(), "older layout"); got != 1 || !strings.Contains(logs.String(), "removed=3") {
		t.Errorf("OpenView() on the older layouts logged %q; want the rebuild said once, removed=3", logs.String())
	}
	// Opened again, the bucket is in this layout: nothing more is removed.
	if err := v.Applied(ctx, 9); err != nil {
		t.Fatal(err)
	}
	again, err := jetstream.OpenView(ctx, js, stream.Options{}, log)
	if err != nil {
		t.Fatal(err)
	}
	if applied, err := again.Load(ctx, func(app.ViewEntry) error { return nil }); err != nil || applied != 9 {
		t.Errorf("Load() on reopening = applied %d, %v; want 9", applied, err)
	}
}

// TestViewNewBucketRebuildsNothing opens CHAT_VIEW where there was none, as
// a first start does: there is nothing of an older layout to rebuild, and
// the log does not say there was.
func TestViewNewBucketRebuildsNothing(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	var logs bytes.Buffer
	if _, err := jetstream.OpenView(t.Context(), js, stream.Options{}, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "layout") {
		t.Errorf("OpenView() on a new bucket logged %q; want no word of a layout", logs.String())
	}
}

func TestProfileStore(t *testing.T) {
	storetest.ProfileStore(t, func(t *testing.T) app.ProfileStore {
		_, js := natstest.Connect(t, natstest.Start(t, ""))
		p, err := jetstream.OpenProfiles(t.Context(), js, stream.Options{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
}

// TestResendAnsweredWithAReplicaBehind resends a stored event while a copy
// of CHAT that lacks it answers direct gets too, as a replica behind its
// leader does (one thawed after a freeze, say): a mirror started past it,
// serving direct gets for CHAT. JetStream drops the resend as a duplicate;
// Append must read what is stored at its sequence from the leader and
// answer that sequence, not take the event for removed (ErrDuplicateID,
// which a request with an Idempotency-Key answers 422).
func TestResendAnsweredWithAReplicaBehind(t *testing.T) {
	s, js, key := openStore(t)
	e, err := event.New(key, event.MessagePosted, "acme", "v1", "c1", time.Now(), event.Posted{Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := s.Append(t.Context(), e, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The mirror serves direct gets once it copied an event: one after e.
	if _, err := js.CreateStream(t.Context(), natsjs.StreamConfig{
		Name: "BEHIND", Mirror: &natsjs.StreamSource{Name: stream.Chat, OptStartSeq: seq + 1}, MirrorDirect: true,
	}); err != nil {
		t.Fatal(err)
	}
	later, err := event.New(key, event.MessagePosted, "acme", "v1", "c2", time.Now(), event.Posted{Text: "later"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(t.Context(), later, 0, 0); err != nil {
		t.Fatal(err)
	}
	chat, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	// The direct gets of CHAT go to either, at random.
	natstest.Until(t, 10*time.Second, "a direct get answered by the copy behind", func() bool {
		_, err := chat.GetMsg(t.Context(), seq)
		return errors.Is(err, natsjs.ErrMsgNotFound)
	})
	// Expecting its own sequence, the resend passes a single server's
	// check of the version and meets the id's (a replicated stream checks
	// the id first).
	for range 20 {
		if got, err := s.Append(t.Context(), e, seq, 0); got != seq || err != nil {
			t.Fatalf("Append(the stored event again) = %d, %v; want %d, nil", got, err, seq)
		}
	}
}

// TestLongReadLeavesNoConsumer reads a page long enough to be read through
// a consumer: the consumer, whose delete the read does not wait for, is
// gone soon after, well before the server would remove it as inactive.
func TestLongReadLeavesNoConsumer(t *testing.T) {
	s, js, key := openStore(t)
	var v uint64
	for range 300 {
		e, err := event.New(key, event.MessagePosted, "acme", "v1", "c1", time.Now(), event.Posted{Text: "hello"})
		if err != nil {
			t.Fatal(err)
		}
		if v, err = s.Append(t.Context(), e, v, 0); err != nil {
			t.Fatal(err)
		}
	}
	rs, more, err := s.Read(t.Context(), "acme", "c1", 0, 500)
	if err != nil || len(rs) != 300 || more {
		t.Fatalf("Read(limit 500) of 300 = %d records, more %v, %v; want 300, false", len(rs), more, err)
	}
	chat, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "the reader's consumer deleted", func() error {
		info, err := chat.Info(t.Context())
		if err != nil {
			return err
		}
		if n := info.State.Consumers; n > 0 {
			return fmt.Errorf("%d consumers", n)
		}
		return nil
	})
}

// openStore opens the event store on an embedded server of its own and
// makes a key to seal its events under.
func openStore(t *testing.T) (*jetstream.Store, natsjs.JetStream, seal.Key) {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	s, err := jetstream.Open(t.Context(), js, stream.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	key, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return s, js, key
}

// The follower reads all of CHAT on a filter the server takes for none,
// CHAT's own subject: any other ("chat.>") has the server match each
// block's subjects for every event it delivers.
func TestFollowFiltersOnTheStreamsSubject(t *testing.T) {
	s, js, _ := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Follow(ctx, 1, discard{}, func() {}) }()
	chat, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "the follower's consumer", func() error {
		var filters [][]string
		for info := range chat.ListConsumers(t.Context()).Info() {
			filters = append(filters, append([]string{info.Config.FilterSubject}, info.Config.FilterSubjects...))
		}
		if len(filters) != 1 {
			return fmt.Errorf("%d consumers", len(filters))
		}
		if f := strings.Join(filters[0], " "); strings.TrimSpace(f) != stream.ChatSubjects {
			t.Fatalf("follower's filter %q, want %q", f, stream.ChatSubjects)
		}
		return nil
	})
	cancel()
	if err := natstest.Returns(t, 10*time.Second, "cancellation", done); err != nil {
		t.Fatal(err)
	}
}

// discard is a jetstream.Follower that applies nothing.
type discard struct{}

func (discard) Project(context.Context, app.Record) error { return nil }
func (discard) Skip(uint64)                               {}

// TestViewEntriesExpire writes entries with and without an expiry
// (app.ViewEntry.Expires) and runs nothing else: the bucket drops the one
// due by itself; one rewritten with a later expiry, as a conversation's
// new event extends its retention, stays past its first expiry, and so
// does one with none, whose events never expire. An entry written over
// the revision it had before it expired is written afresh.
func TestViewEntriesExpire(t *testing.T) {
	ctx := t.Context()
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	v, err := jetstream.OpenView(ctx, js, stream.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := js.Stream(ctx, stream.BucketStream(stream.ChatViewBucket))
	if err != nil {
		t.Fatal(err)
	}
	entry := func(id string, version uint64, expires time.Time) app.ViewEntry {
		return app.ViewEntry{Tenant: "acme", ID: id, Visitor: "v1", Version: version, State: []byte(`{}`), Expires: expires}
	}
	put := func(e app.ViewEntry) uint64 {
		t.Helper()
		rev, err := v.Put(ctx, e)
		if err != nil {
			t.Fatalf("Put(%s at %d) = %v", e.ID, e.Version, err)
		}
		return rev
	}
	// ttl is the Nats-TTL the entry's last write carries, 0 for none.
	ttl := func(id string) time.Duration {
		t.Helper()
		m, err := bucket.GetLastMsgForSubject(ctx, "$KV."+stream.ChatViewBucket+".acme.closed.v1."+id)
		if err != nil {
			t.Fatalf("the entry %s: %v", id, err)
		}
		h := m.Header.Get(natsjs.MsgTTLHeader)
		if h == "" {
			return 0
		}
		d, err := time.ParseDuration(h)
		if err != nil {
			t.Fatalf("Nats-TTL of %s = %q: %v", id, h, err)
		}
		return d
	}

	first := time.Now().Add(time.Second)
	ext := entry("extended", 2, time.Now().Add(time.Hour))
	ext.Rev = put(entry("extended", 1, first))
	put(ext)
	put(entry("forever", 1, time.Time{}))
	// Due a second after extended's first write: once it is gone, that
	// write's TTL has run out too.
	dueRev := put(entry("due", 1, first.Add(time.Second)))
	if got := ttl("due"); got < time.Second || got > 2*time.Second {
		t.Errorf("Nats-TTL of an entry due in 2 s = %v, want 1 s to 2 s", got)
	}
	if got := ttl("extended"); got < 59*time.Minute || got > time.Hour {
		t.Errorf("Nats-TTL of an entry rewritten due in an hour = %v, want about an hour", got)
	}
	if got := ttl("forever"); got != 0 {
		t.Errorf("Nats-TTL of an entry that never expires = %v, want none", got)
	}

	natstest.Eventually(t, 15*time.Second, "the due entry leaves the bucket", func() error {
		if _, ok, err := v.Get(ctx, "acme", "v1", "due"); err != nil || ok {
			return fmt.Errorf("Get(due) = %v, %v; want none", ok, err)
		}
		return nil
	})
	var listed []string
	if err := v.Closed(ctx, "acme", "", func(k app.ClosedKey) error {
		listed = append(listed, k.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	if want := []string{"extended", "forever"}; !slices.Equal(listed, want) {
		t.Errorf("Closed() once the due entry expired = %v, want %v", listed, want)
	}
	for id, version := range map[string]uint64{"extended": 2, "forever": 1} {
		if e, ok, err := v.Get(ctx, "acme", "v1", id); err != nil || !ok || e.Version != version {
			t.Errorf("Get(%s) once the due entry expired = version %d, %v, %v; want version %d", id, e.Version, ok, err, version)
		}
	}

	// Written over the revision read before it expired, as an instance
	// holding the conversation would.
	again := entry("due", 2, time.Now().Add(time.Hour))
	again.Rev = dueRev
	put(again)
	if e, ok, err := v.Get(ctx, "acme", "v1", "due"); err != nil || !ok || e.Version != 2 {
		t.Errorf("Get(due) written again after it expired = version %d, %v, %v; want version 2", e.Version, ok, err)
	}
}

// TestViewBucketWithoutTTL opens a CHAT_VIEW defined with no per-message
// TTL, which this version's definition never was: entries are written
// without one, rather than refused, and the open says so.
func TestViewBucketWithoutTTL(t *testing.T) {
	ctx := t.Context()
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	if _, err := js.CreateKeyValue(ctx, natsjs.KeyValueConfig{Bucket: stream.ChatViewBucket, History: 1}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	v, err := jetstream.OpenView(ctx, js, stream.Options{}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "without a TTL") {
		t.Errorf("OpenView() on a bucket with no TTL logged %q; want it said", logs.String())
	}
	e := app.ViewEntry{Tenant: "acme", ID: "c1", Visitor: "v1", Version: 1, State: []byte(`{}`), Expires: time.Now().Add(time.Hour)}
	rev, err := v.Put(ctx, e)
	if err != nil {
		t.Fatalf("Put(with an expiry) = %v", err)
	}
	e.Version, e.Rev = 2, rev
	if _, err := v.Put(ctx, e); err != nil {
		t.Fatalf("Put(rewritten with an expiry) = %v", err)
	}
}
