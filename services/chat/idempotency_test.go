package chat_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// postKeyed posts text with an idempotency key, as p.
func (c client) postKeyed(p auth.Principal, conv, text, key string) (chatapi.PostResult, error) {
	var res chatapi.PostResult
	err := c.call(p, chatapi.PostSubject, chatapi.PostArgs{Conversation: conv, Text: text, IdempotencyKey: key}, &res)
	return res, err
}

// sendAndForget sends a request nobody waits for the answer of: a client
// whose call timed out, or whose connection dropped, after sending.
func (c client) sendAndForget(p auth.Principal, subject string, args any) {
	c.t.Helper()
	b, err := json.Marshal(rpc.Request[any]{Principal: p, Args: args})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.nc.PublishRequest(subject, c.nc.NewRespInbox(), b); err != nil {
		c.t.Fatal(err)
	}
}

func TestPostRepeatedWithKeyStoresOnce(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID)
	first := startChat(t, s)
	startChat(t, s)
	c := newClient(t, s)
	_, js := natstest.Connect(t, s)
	conv := c.open(visitor, "hello")
	subject := stream.ChatSubject(tenant, conv)

	// A retry after a success: the queue group spreads the calls over
	// both instances.
	want, err := c.postKeyed(visitor, conv, "once", "retry-1")
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		got, err := c.postKeyed(visitor, conv, "once", "retry-1")
		if err != nil {
			t.Fatalf("Post(same key) error = %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Post(same key) mismatch (-first +again):\n%s", diff)
		}
	}

	// Concurrent posts with one key.
	const concurrent = 10
	results := make([]chatapi.PostResult, concurrent)
	errs := make([]error, concurrent)
	var wg sync.WaitGroup
	for i := range concurrent {
		wg.Go(func() { results[i], errs[i] = c.postKeyed(visitor, conv, "at once", "race-1") })
	}
	wg.Wait()
	for i := range concurrent {
		if errs[i] != nil {
			t.Fatalf("concurrent Post(same key) #%d error = %v", i, errs[i])
		}
		if diff := cmp.Diff(results[0], results[i]); diff != "" {
			t.Errorf("concurrent Post(same key) #%d mismatch (-#0 +#%d):\n%s", i, i, diff)
		}
	}

	// A post whose caller got no answer, stored meanwhile, then retried
	// while its first attempt may still be on its way.
	for i := range 5 {
		key := fmt.Sprintf("lost-%d", i)
		c.sendAndForget(visitor, chatapi.PostSubject, chatapi.PostArgs{Conversation: conv, Text: "lost", IdempotencyKey: key})
		if _, err := c.postKeyed(visitor, conv, "lost", key); err != nil {
			t.Fatalf("Post(retry of a lost post) error = %v", err)
		}
	}
	natstest.Eventually(t, 10*time.Second, "every lost post stored", func() error {
		if n := len(storedEvents(t, js, subject)); n != 1+1+1+5 {
			return fmt.Errorf("%d events stored", n)
		}
		return nil
	})

	// The key survives a restart: the read models rebuild its index.
	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	startChat(t, s)
	for range 2 {
		got, err := c.postKeyed(visitor, conv, "once", "retry-1")
		if err != nil || got != want {
			t.Errorf("Post(same key) after a restart = %+v, %v; want %+v", got, err, want)
		}
	}

	want1 := []string{"visitor/v1: hello", "visitor/v1: once", "visitor/v1: at once"}
	for range 5 {
		want1 = append(want1, "visitor/v1: lost")
	}
	if diff := cmp.Diff(want1, texts(c.messages(visitor, conv))); diff != "" {
		t.Errorf("transcript mismatch (-want +got):\n%s", diff)
	}
	if n := len(storedEvents(t, js, subject)); n != len(want1) {
		t.Errorf("%d events stored, want %d", n, len(want1))
	}
}

func TestOpenRepeatedWithKey(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID, visitor2.ID)
	startChat(t, s)
	startChat(t, s)
	c := newClient(t, s)

	open := func(p auth.Principal, text, key string) (string, error) {
		var res chatapi.OpenResult
		err := c.call(p, chatapi.OpenSubject, chatapi.OpenArgs{Text: text, IdempotencyKey: key}, &res)
		return res.ID, err
	}
	c.sendAndForget(visitor, chatapi.OpenSubject, chatapi.OpenArgs{Text: "hi", IdempotencyKey: "open-1"})
	const concurrent = 6
	got := make([]string, concurrent)
	errs := make([]error, concurrent)
	var wg sync.WaitGroup
	for i := range concurrent {
		wg.Go(func() { got[i], errs[i] = open(visitor, "hi", "open-1") })
	}
	wg.Wait()
	for i := range concurrent {
		if errs[i] != nil || got[i] != got[0] {
			t.Fatalf("Open(same key) #%d = %q, %v; want %q", i, got[i], errs[i], got[0])
		}
	}
	natstest.Eventually(t, 10*time.Second, "one conversation", func() error {
		if n := len(c.list(visitor)); n != 1 {
			return fmt.Errorf("%d conversations listed", n)
		}
		return nil
	})
	// Another visitor's key of the same name is theirs.
	other, err := open(visitor2, "hi", "open-1")
	if err != nil || other == got[0] {
		t.Errorf("Open(another visitor, same key) = %q, %v; want a conversation of their own", other, err)
	}
}

func TestKeyReusedForAnotherRequest(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID)
	startChat(t, s)
	c := newClient(t, s)
	conv := c.open(visitor, "hello")
	other := c.open(visitor, "another")
	if _, err := c.postKeyed(visitor, conv, "first", "k1"); err != nil {
		t.Fatal(err)
	}
	var opened chatapi.OpenResult
	c.must(visitor, chatapi.OpenSubject, chatapi.OpenArgs{Text: "opening", IdempotencyKey: "k2"}, &opened)

	tests := []struct {
		name string
		call func() error
	}{
		{"other text", func() error { _, err := c.postKeyed(visitor, conv, "second", "k1"); return err }},
		{"other conversation", func() error { _, err := c.postKeyed(visitor, other, "first", "k1"); return err }},
		{"a post with an opening's key", func() error { _, err := c.postKeyed(visitor, opened.ID, "opening", "k2"); return err }},
		{"an opening with other text", func() error {
			return c.call(visitor, chatapi.OpenSubject, chatapi.OpenArgs{Text: "other", IdempotencyKey: "k2"}, nil)
		}},
		{"a malformed key", func() error { _, err := c.postKeyed(visitor, conv, "x", "has space"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); rpc.CodeOf(err) != rpc.CodeInvalid {
				t.Errorf("error = %v, want code %s", err, rpc.CodeInvalid)
			}
		})
	}
	if diff := cmp.Diff([]string{"visitor/v1: hello", "visitor/v1: first"}, texts(c.messages(visitor, conv))); diff != "" {
		t.Errorf("transcript mismatch (-want +got):\n%s", diff)
	}
}

// startWithDuplicateWindow starts a server whose CHAT stream forgets
// the ids of its events after window, and the key service, which holds
// visitor's keys.
func startWithDuplicateWindow(t *testing.T, window time.Duration) *natsembed.Server {
	t.Helper()
	s := natstest.Start(t, "")
	_, js := natstest.Connect(t, s)
	cfg, err := stream.Config(stream.Chat, stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Duplicates = window
	if _, err := js.CreateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	startKeyService(t, s).add(t, tenant, visitor.ID)
	return s
}

// TestKeyedRepeatPastDuplicateWindow repeats keyed requests after CHAT's
// duplicate window has forgotten their ids, behind more keyed posts than
// the index holds exactly: each still answers what it stored, and nothing
// is stored twice. The window only turns away a key reused elsewhere
// (TestKeyReusedForAnotherRequest), which is why CHAT's may be short.
func TestKeyedRepeatPastDuplicateWindow(t *testing.T) {
	const window = 200 * time.Millisecond
	s := startWithDuplicateWindow(t, window)
	startChat(t, s)
	c := newClient(t, s)

	openArgs := chatapi.OpenArgs{Text: "hello", IdempotencyKey: "open-1"}
	var opened chatapi.OpenResult
	c.must(visitor, chatapi.OpenSubject, openArgs, &opened)
	first, err := c.postKeyed(visitor, opened.ID, "first", "k1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := c.postKeyed(visitor, opened.ID, fmt.Sprint("more ", i), fmt.Sprint("more-", i)); err != nil {
			t.Fatal(err)
		}
	}
	stored := time.Now()
	natstest.Until(t, 10*time.Second, "CHAT's duplicate window passed", func() bool { return time.Since(stored) > 2*window })

	var again chatapi.OpenResult
	c.must(visitor, chatapi.OpenSubject, openArgs, &again)
	if again.ID != opened.ID {
		t.Errorf("Open(same key) past the window = %q, want %q", again.ID, opened.ID)
	}
	got, err := c.postKeyed(visitor, opened.ID, "first", "k1")
	if err != nil {
		t.Fatalf("Post(same key) past the window error = %v", err)
	}
	if diff := cmp.Diff(first, got); diff != "" {
		t.Errorf("Post(same key) past the window mismatch (-first +again):\n%s", diff)
	}
	if n := len(c.messages(visitor, opened.ID)); n != 22 {
		t.Errorf("transcript holds %d messages, want 22: the opening and 21 posts, each once", n)
	}
}

// TestKeyedPostRepeatedAfterWithdrawal repeats a keyed post after its
// visitor withdrew the message, whose posting's event is then deleted:
// within CHAT's duplicate window and past it, through two instances,
// behind more keyed posts than the index holds exactly, after a restart
// and after a rebuild of the view from the stream. Each repeat answers
// what the post first answered — also with another text, which the
// withdrawal no longer tells — and nothing is stored again.
func TestKeyedPostRepeatedAfterWithdrawal(t *testing.T) {
	const window = 200 * time.Millisecond
	s := startWithDuplicateWindow(t, window)
	_, js := natstest.Connect(t, s)
	unlimited(t, s, tenant)
	a, b := startChat(t, s), startChat(t, s)
	c := newClient(t, s)
	conv := c.open(visitor, "hello")

	first, err := c.postKeyed(visitor, conv, "my phone is 555-0100", "k1")
	if err != nil {
		t.Fatal(err)
	}
	c.must(visitor, chatapi.WithdrawSubject, chatapi.WithdrawArgs{Conversation: conv, Message: first.ID}, nil)
	withdrawn := time.Now()

	repeat := func(when string) {
		t.Helper()
		for _, text := range []string{"my phone is 555-0100", "my phone is 555-0100", "another text", "my phone is 555-0100"} {
			got, err := c.postKeyed(visitor, conv, text, "k1")
			if err != nil {
				t.Fatalf("Post(k1, %q) %s error = %v", text, when, err)
			}
			if diff := cmp.Diff(first, got); diff != "" {
				t.Errorf("Post(k1, %q) %s mismatch (-first +again):\n%s", text, when, diff)
			}
		}
	}
	repeat("within the duplicate window")
	natstest.Until(t, 10*time.Second, "CHAT's duplicate window passed", func() bool { return time.Since(withdrawn) > 2*window })
	repeat("past the duplicate window")
	const more = 20 // the posting and its withdrawal leave the recent keys
	for i := range more {
		if _, err := c.postKeyed(visitor, conv, fmt.Sprint("more ", i), fmt.Sprint("more-", i)); err != nil {
			t.Fatal(err)
		}
	}
	repeat("behind more keyed posts")

	if err := a.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	restarted := startChat(t, s)
	repeat("after a restart")

	for _, in := range []*instance{b, restarted} {
		if err := in.stop(); err != nil {
			t.Fatalf("Run() = %v, want nil", err)
		}
	}
	if err := js.DeleteKeyValue(t.Context(), stream.ChatViewBucket); err != nil {
		t.Fatal(err)
	}
	startChat(t, s)
	repeat("after a rebuild from the stream")

	if n := len(storedEvents(t, js, stream.ChatSubject(tenant, conv))); n != 1+1+more {
		t.Errorf("%d events stored, want %d: the opening, the withdrawal and the other posts", n, 1+1+more)
	}
	ms := c.messages(visitor, conv)
	if len(ms) != 1+1+more || ms[1].ID != first.ID || !ms[1].Withdrawn {
		t.Errorf("transcript = %v, want the opening, the withdrawn message and %d more", texts(ms), more)
	}
}
