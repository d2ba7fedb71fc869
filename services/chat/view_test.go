package chat_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// viewEntry is what the tests read of a CHAT_VIEW entry: the clear part,
// which a rebuild must reproduce byte for byte (the sealed part has a
// random nonce), and whether it has a sealed part.
type viewEntry struct {
	Version uint64          `json:"version"`
	State   json.RawMessage `json:"state"`
	Sealed  bool            `json:"-"`
	// Key is the entry's key, <tenant>.<open|closed>.<visitor>.<id>.
	Key string
}

// readView returns the bucket's conversations by <tenant>.<id>, and its
// applied sequence. A conversation under two keys fails the test.
func readView(t *testing.T, s *natsembed.Server) (map[string]viewEntry, uint64) {
	t.Helper()
	view, applied, err := viewNow(t, s)
	if err != nil {
		t.Fatal(err)
	}
	return view, applied
}

// viewNow is readView of a bucket the service may be writing: a key gone
// between the listing and its read, or a conversation under both keys as
// it moves from open to closed, is an error to poll past.
func viewNow(t *testing.T, s *natsembed.Server) (map[string]viewEntry, uint64, error) {
	t.Helper()
	_, js := natstest.Connect(t, s)
	kv, err := js.KeyValue(t.Context(), stream.ChatViewBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]viewEntry{}
	var applied uint64
	for k := range keys.Keys() {
		e, err := kv.Get(t.Context(), k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, 0, fmt.Errorf("view key %s gone while read", k)
		}
		if err != nil {
			t.Fatal(err)
		}
		switch k {
		case "applied":
			if applied, err = strconv.ParseUint(string(e.Value()), 10, 64); err != nil {
				t.Fatal(err)
			}
			continue
		case "layout", "expiring":
			continue
		}
		var v struct {
			viewEntry
			Sealed []byte `json:"sealed"`
		}
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			t.Fatal(err)
		}
		v.viewEntry.Sealed = v.Sealed != nil
		v.Key = k
		tok := strings.Split(k, ".")
		if len(tok) != 4 {
			t.Fatalf("view key %q is not <tenant>.<status>.<visitor>.<id>", k)
		}
		conv := tok[0] + "." + tok[3]
		if prev, ok := out[conv]; ok {
			return nil, 0, fmt.Errorf("view holds %s under %s and %s", conv, prev.Key, k)
		}
		out[conv] = v.viewEntry
	}
	return out, applied, nil
}

// viewSettled waits until the view holds each conversation at its last
// event in the stream: the service writes the view after the stream.
func viewSettled(t *testing.T, s *natsembed.Server, js jetstream.JetStream, convs ...string) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, "the view holds every event", func() error {
		view, _, err := viewNow(t, s)
		if err != nil {
			return err
		}
		for _, conv := range convs {
			events := storedEvents(t, js, stream.ChatSubject(tenant, conv))
			if got, want := view[tenant+"."+conv].Version, events[len(events)-1].seq; got != want {
				return fmt.Errorf("view of %s at %d, want %d", conv, got, want)
			}
		}
		return nil
	})
}

// TestViewCaughtUpEqualsRebuild restarts the chat service from a view left
// as a crash mid-update leaves it — the applied sequence far behind, one
// entry older than its conversation — and shows the view and the read
// models it catches up to equal those rebuilt from the stream alone.
func TestViewCaughtUpEqualsRebuild(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID, visitor2.ID)
	unlimited(t, s, tenant)
	first := startChat(t, s)
	c := newClient(t, s)
	_, js := natstest.Connect(t, s)
	kv, err := js.KeyValue(t.Context(), stream.ChatViewBucket)
	if err != nil {
		t.Fatal(err)
	}

	a := c.open(visitor, "a")
	b := c.open(visitor2, "b")
	c.post(agent, a, "taken")
	if _, err := c.postKeyed(visitor2, b, "keyed", "k-0"); err != nil {
		t.Fatal(err)
	}
	// The entry of a as it is now, and the sequence it reflects.
	var stale jetstream.KeyValueEntry
	natstest.Eventually(t, 10*time.Second, "a's entry written", func() error {
		stale, err = kv.Get(t.Context(), tenant+".open."+visitor.ID+"."+a)
		return err
	})
	var staleEntry viewEntry
	if err := json.Unmarshal(stale.Value(), &staleEntry); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		c.post(visitor, a, fmt.Sprint("more ", i))
		if _, err := c.postKeyed(visitor2, b, fmt.Sprint("keyed ", i), fmt.Sprint("k-", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	c.must(supervisor, chatapi.AssignSubject, chatapi.AssignArgs{Conversation: b, Agent: agent2.ID}, nil)
	c.must(visitor, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: a}, nil)
	c.must(visitor, chatapi.RateSubject, chatapi.RateArgs{Conversation: a, Score: 4}, nil)
	d := c.open(visitor, "d")
	viewSettled(t, s, js, a, b, d)
	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	want, _ := readView(t, s)
	if !want[tenant+"."+b].Sealed || !want[tenant+"."+d].Sealed {
		t.Errorf("sealed part in b: %v, in d: %v; want both", want[tenant+"."+b].Sealed, want[tenant+"."+d].Sealed)
	}

	if got := want[tenant+"."+a].Key; got != tenant+".closed."+visitor.ID+"."+a {
		t.Errorf("closed conversation a under key %s", got)
	}
	// A crash between the stream and the view: a's entry, still open, and
	// the applied sequence behind what the stream holds.
	if err := kv.Purge(t.Context(), want[tenant+"."+a].Key); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), stale.Key(), stale.Value()); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "applied", []byte(strconv.FormatUint(staleEntry.Version, 10))); err != nil {
		t.Fatal(err)
	}
	second := startChat(t, s)
	wantList := c.list(supervisor)
	got, applied := readView(t, s)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("view caught up after a crash mismatch (-before the crash +caught up):\n%s", diff)
	}
	if applied < staleEntry.Version {
		t.Errorf("applied = %d, want at least %d", applied, staleEntry.Version)
	}
	// The restored state decides as the folded one: the keys are found,
	// the closed conversation refuses a post.
	if _, err := c.postKeyed(visitor2, b, "keyed 3", "k-4"); err != nil {
		t.Errorf("Post(k-4 again) after restore = %v", err)
	}
	if err := c.call(visitor, chatapi.PostSubject, chatapi.PostArgs{Conversation: a, Text: "x"}, nil); rpc.CodeOf(err) != rpc.CodeConflict {
		t.Errorf("Post(closed) after restore = %v, want %s", err, rpc.CodeConflict)
	}
	if err := second.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}

	// Rebuilt from the stream alone.
	if err := js.DeleteKeyValue(t.Context(), stream.ChatViewBucket); err != nil {
		t.Fatal(err)
	}
	startChat(t, s)
	rebuilt, _ := readView(t, s)
	if diff := cmp.Diff(rebuilt, got); diff != "" {
		t.Errorf("view caught up mismatch (-rebuilt from the stream +caught up):\n%s", diff)
	}
	if diff := cmp.Diff(wantList, c.list(supervisor)); diff != "" {
		t.Errorf("List() mismatch (-caught up +rebuilt):\n%s", diff)
	}
}

// TestViewFollowsErasure erases a visitor while the chat service is down:
// the view it restarts from holds no assignee in the clear at any time, and
// the erased visitor's conversation comes back erased. (A conversation
// erased after closing while chat is down leaves the view by its entry's
// TTL, 30 s after the erasure is due: TestClosedEntryExpiresAtItsErasure
// in internal/app; one an older version wrote with no TTL, at the first
// start of this version: TestViewExpiryMigratedOnce.)
func TestViewFollowsErasure(t *testing.T) {
	dir := t.TempDir()
	s := natstest.Start(t, dir)
	ks := startKeyService(t, s)
	ks.add(t, tenant, visitor.ID, visitor2.ID)
	first := startChat(t, s)
	c := newClient(t, s)
	_, js := natstest.Connect(t, s)

	marker := "agent-" + rand.Text()
	named := principal(tenant, auth.RoleAgent, marker)
	conv := c.open(visitor, "erase me")
	last := c.post(named, conv, "assigned to the named agent")
	wantErased := chatapi.Summary{}
	c.must(supervisor, chatapi.GetSubject, chatapi.ConversationArgs{Conversation: conv}, &wantErased)
	wantErased.Status, wantErased.Assignee = chatapi.StatusClosed, nil
	viewSettled(t, s, js, conv)
	if view, _ := readView(t, s); !view[tenant+"."+conv].Sealed {
		t.Errorf("view of %s holds no sealed assignee", conv)
	}
	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	natstest.Eventually(t, 10*time.Second, "the last event reaches the store files", func() error {
		if !storeHolds(t, dir, last.ID)[last.ID] {
			return fmt.Errorf("no file under %s holds event id %s", dir, last.ID)
		}
		return nil
	})

	ks.erase(tenant, visitor.ID)
	startChat(t, s)

	var got chatapi.Summary
	c.must(supervisor, chatapi.GetSubject, chatapi.ConversationArgs{Conversation: conv}, &got)
	if diff := cmp.Diff(wantErased, got); diff != "" {
		t.Errorf("Get(erased visitor's) after restart mismatch (-want +got):\n%s", diff)
	}
	if found := storeHolds(t, dir, marker); len(found) > 0 {
		t.Errorf("store files hold the assignee in the clear")
	}
}

// TestErasureCompletedAtStart erases a visitor while the chat service is
// down, as one stopped in the middle of the erasure's work leaves it, or
// less: the next start writes their open conversation to the view as
// closed, with no sealed assignee, and removes their profile from
// PROFILES, though no one reads it; another visitor's stays.
func TestErasureCompletedAtStart(t *testing.T) {
	s, ks := startKeyed(t, visitor.ID, visitor2.ID)
	first := startChat(t, s)
	c := newClient(t, s)
	_, js := natstest.Connect(t, s)

	conv := c.open(visitor, "erase me")
	c.post(agent, conv, "assigned")
	for _, v := range []auth.Principal{visitor, visitor2} {
		c.must(v, chatapi.ProfilePutSubject, chatapi.ProfileArgs{Name: "name of " + v.ID}, nil)
	}
	viewSettled(t, s, js, conv)
	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	ks.erase(tenant, visitor.ID)
	startChat(t, s)

	profiles, err := js.Stream(t.Context(), stream.Profiles)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "the erasure completed", func() error {
		view, _, err := viewNow(t, s)
		if err != nil {
			return err
		}
		if e := view[tenant+"."+conv]; !strings.HasPrefix(e.Key, tenant+".closed.") || e.Sealed {
			return fmt.Errorf("view of the erased visitor's conversation %+v, want closed, no sealed assignee", e)
		}
		return profilesHeld(t, profiles, map[string]uint64{visitor.ID: 0, visitor2.ID: 1})
	})
}

// profilesHeld checks how many messages PROFILES holds of each visitor.
func profilesHeld(t *testing.T, profiles jetstream.Stream, want map[string]uint64) error {
	t.Helper()
	for v, n := range want {
		info, err := profiles.Info(t.Context(), jetstream.WithSubjectFilter(stream.ProfileSubject(tenant, v)))
		if err != nil {
			return err
		}
		if got := info.State.Subjects[stream.ProfileSubject(tenant, v)]; got != n {
			return fmt.Errorf("PROFILES holds %d messages of visitor %s, want %d", got, v, n)
		}
	}
	return nil
}

// TestProfileKeptAtStart checks that the removal of erased visitors'
// profiles at start removes only those: a visitor whose keys are missing
// without an erasure keeps theirs, as does one the key service fails for,
// for a moment or for good, while the erased visitor's goes.
func TestProfileKeptAtStart(t *testing.T) {
	tests := []struct {
		name string
		// give is what befalls visitor before chat starts again; down
		// makes the key service unavailable until the start has waited on
		// it.
		give     func(ks *keyService)
		down     bool
		wantDone string
	}{
		{"keys not found", func(ks *keyService) { ks.drop(tenant, visitor.ID) }, false, `"removed":1}`},
		{"keys unreadable", func(ks *keyService) { ks.makeUnreadable(tenant, visitor.ID) }, false, `"removed":1}`},
		{"key service fails for good", func(ks *keyService) { ks.breakFor(tenant, visitor.ID) }, false, `"removed":1,"skipped":1}`},
		{"key service unavailable", func(*keyService) {}, true, `"removed":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ks := startKeyed(t, visitor.ID, visitor2.ID)
			first := startChat(t, s)
			c := newClient(t, s)
			_, js := natstest.Connect(t, s)
			for _, v := range []auth.Principal{visitor, visitor2} {
				c.must(v, chatapi.ProfilePutSubject, chatapi.ProfileArgs{Name: "name of " + v.ID}, nil)
			}
			if err := first.stop(); err != nil {
				t.Fatalf("Run() = %v, want nil", err)
			}
			ks.erase(tenant, visitor2.ID)
			tt.give(ks)
			ks.setDown(tt.down)
			in := startChat(t, s)
			profiles, err := js.Stream(t.Context(), stream.Profiles)
			if err != nil {
				t.Fatal(err)
			}

			if tt.down {
				natstest.Eventually(t, 10*time.Second, "the start waits on the key service", func() error {
					if !bytes.Contains(in.logs.Bytes(), []byte("remove an erased visitor's profile")) {
						return errors.New("no retry logged")
					}
					return nil
				})
				if err := profilesHeld(t, profiles, map[string]uint64{visitor.ID: 1, visitor2.ID: 1}); err != nil {
					t.Errorf("while the key service is unavailable: %v", err)
				}
				ks.setDown(false)
			}
			natstest.Eventually(t, 10*time.Second, "the removal done", func() error {
				for line := range bytes.Lines(in.logs.Bytes()) {
					if bytes.Contains(line, []byte("removed erased visitors' profiles")) {
						if !bytes.Contains(line, []byte(tt.wantDone)) {
							t.Fatalf("log of the removal %s, want it to end %s", line, tt.wantDone)
						}
						return nil
					}
				}
				return errors.New("not logged")
			})
			if err := profilesHeld(t, profiles, map[string]uint64{visitor.ID: 1, visitor2.ID: 0}); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestProfileKeptOnReadWithoutKeys checks that a read of a profile whose
// visitor's keys are missing, with no erasure, shows none but keeps it.
func TestProfileKeptOnReadWithoutKeys(t *testing.T) {
	s, ks := startKeyed(t, visitor.ID)
	first := startChat(t, s)
	c := newClient(t, s)
	_, js := natstest.Connect(t, s)
	c.open(visitor, "hello")
	c.must(visitor, chatapi.ProfilePutSubject, chatapi.ProfileArgs{Name: "name"}, nil)
	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	ks.drop(tenant, visitor.ID)
	startChat(t, s)

	list := c.list(admin)
	if len(list) != 1 || list[0].VisitorProfile != nil {
		t.Fatalf("list as admin = %+v, want one conversation, no profile shown", list)
	}
	profiles, err := js.Stream(t.Context(), stream.Profiles)
	if err != nil {
		t.Fatal(err)
	}
	if err := profilesHeld(t, profiles, map[string]uint64{visitor.ID: 1}); err != nil {
		t.Error(err)
	}
}

// TestViewExpiryMigratedOnce starts chat on a CHAT_VIEW written by a version
// before entries expired by themselves, holding many closed conversations:
// the start reads no list of CHAT's subjects; the pass beside it removes a
// closed entry written with no TTL whose events are gone and gives one
// whose events remain its TTL, then records that it is done; a later start
// skips it, leaving an entry written with no TTL since as it is.
func TestViewExpiryMigratedOnce(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID)
	first := startChat(t, s)
	c := newClient(t, s)
	nc, js := natstest.Connect(t, s)
	var convs []string
	for range 20 {
		conv := c.open(visitor, "closed")
		c.must(visitor, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: conv}, nil)
		convs = append(convs, conv)
	}
	viewSettled(t, s, js, convs...)
	kv, err := js.KeyValue(t.Context(), stream.ChatViewBucket)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "the first start's pass recorded", func() error {
		_, err := kv.Get(t.Context(), "expiring")
		return err
	})
	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	chatStream, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	// olden writes conv's closed entry as an older version did, with no
	// TTL, and with gone removes its events, as an erasure no instance
	// heard of does.
	olden := func(conv string, gone bool) string {
		t.Helper()
		key := closedKey(tenant, visitor.ID, conv)
		raw, err := rawView(t, s, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), key, raw); err != nil {
			t.Fatal(err)
		}
		if ttl, err := viewTTL(t, s, key); ttl != 0 || err != nil {
			t.Fatalf("Nats-TTL of %s written as an older version = %v, %v; want none", key, ttl, err)
		}
		for _, e := range storedEvents(t, js, stream.ChatSubject(tenant, conv)) {
			if !gone {
				break
			}
			if err := chatStream.SecureDeleteMsg(t.Context(), e.seq); err != nil {
				t.Fatal(err)
			}
		}
		return key
	}
	erased, kept := olden(convs[0], true), olden(convs[1], false)
	if err := kv.Delete(t.Context(), "expiring"); err != nil {
		t.Fatal(err)
	}

	// Every request for CHAT's info a start makes, to see that it lists
	// no subjects.
	infos, err := nc.SubscribeSync("$JS.API.STREAM.INFO." + stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	second := startChat(t, s)
	// Every request made before it was ready is pending once a round trip
	// made after it is done.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := infos.NextMsg(0)
		if err != nil {
			break
		}
		var req struct {
			Filter string `json:"subjects_filter"`
		}
		if json.Unmarshal(m.Data, &req) == nil && strings.ContainsAny(req.Filter, "*>") {
			t.Errorf("the start asked for CHAT's subjects under %q, want none listed", req.Filter)
		}
	}
	if err := infos.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "the pass done", func() error {
		if _, err := rawView(t, s, erased); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("entry %s whose events are gone: %v, want removed", erased, err)
		}
		if ttl, err := viewTTL(t, s, kept); err != nil || ttl < 364*24*time.Hour {
			return fmt.Errorf("Nats-TTL of %s = %v, %v; want its conversation's expiry, a year", kept, ttl, err)
		}
		_, err := kv.Get(t.Context(), "expiring")
		return err
	})
	if err := second.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}

	late := olden(convs[2], true)
	third := startChat(t, s)
	natstest.Until(t, 10*time.Second, "the pass skipped", func() bool {
		return bytes.Contains(third.logs.Bytes(), []byte("given their TTL at an earlier start"))
	})
	if ttl, err := viewTTL(t, s, late); ttl != 0 || err != nil {
		t.Errorf("entry %s written with no TTL after the pass: Nats-TTL %v, %v; want kept as it is", late, ttl, err)
	}
}
