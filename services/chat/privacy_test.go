package chat_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/rpc"
)

// storeHolds reports which of needles occur in any file under dir.
func storeHolds(t *testing.T, dir string, needles ...string) map[string]bool {
	t.Helper()
	found := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				found[n] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestNoPlaintextAtRest(t *testing.T) {
	dir := t.TempDir()
	s := natstest.Start(t, dir)
	ks := startKeyService(t, s)
	ks.add(t, tenant, visitor.ID)
	in := startChat(t, s)
	c := newClient(t, s)

	markers := make([]string, 6)
	for i := range markers {
		markers[i] = "marker-" + rand.Text()
	}
	conv := c.open(visitor, "hello "+markers[0])
	var last chatapi.PostResult
	for i, m := range markers[1:] {
		author := visitor
		if i%2 == 0 {
			author = agent
		}
		last = c.post(author, conv, fmt.Sprintf("message %d: %s", i, m))
	}
	if got := len(c.messages(visitor, conv)); got != len(markers) {
		t.Fatalf("len(Messages()) = %d, want %d", got, len(markers))
	}

	// The clear routing metadata reaching the files proves they hold the
	// events, so the absence of the markers means something.
	natstest.Eventually(t, 10*time.Second, "the last event reaches the store files", func() error {
		if !storeHolds(t, dir, last.ID)[last.ID] {
			return fmt.Errorf("no file under %s holds event id %s", dir, last.ID)
		}
		return nil
	})
	if found := storeHolds(t, dir, markers...); len(found) > 0 {
		t.Errorf("store files hold message text in the clear: %v", found)
	}
	logs := in.logs.Bytes()
	for _, m := range markers {
		if bytes.Contains(logs, []byte(m)) {
			t.Errorf("logs hold message text %s", m)
		}
	}
}

func TestErasedVisitorReadsAsErased(t *testing.T) {
	s, ks := startKeyed(t, visitor.ID, visitor2.ID)
	in := startChat(t, s)
	c := newClient(t, s)

	conv := c.open(visitor, "please erase me")
	c.post(agent, conv, "sure")
	kept := c.open(visitor2, "keep me")
	before := c.messages(supervisor, conv)

	ks.erase(tenant, visitor.ID)
	in.keys.Evict(personkey.Erased{Tenant: tenant, Person: visitor.ID})

	// Who wrote a message was sealed with its text, so it goes too.
	want := []chatapi.Message{
		{ID: before[0].ID, Seq: before[0].Seq, At: before[0].At, Erased: true},
		{ID: before[1].ID, Seq: before[1].Seq, At: before[1].At, Erased: true},
	}
	if diff := cmp.Diff(want, c.messages(supervisor, conv)); diff != "" {
		t.Errorf("Messages() after erasure mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"visitor/v2: keep me"}, texts(c.messages(admin, kept))); diff != "" {
		t.Errorf("Messages() of another visitor mismatch (-want +got):\n%s", diff)
	}
	// So does whom it was assigned to: the agent who had it, and every
	// other agent of the tenant, as for an unassigned one, see it erased in
	// their inbox and its transcript.
	for _, a := range []auth.Principal{agent, agent2} {
		if diff := cmp.Diff(want, c.messages(a, conv)); diff != "" {
			t.Errorf("Messages() by agent %s after erasure mismatch (-want +got):\n%s", a.ID, diff)
		}
		var got chatapi.Summary
		c.must(a, chatapi.GetSubject, chatapi.ConversationArgs{Conversation: conv}, &got)
		if got.Status != chatapi.StatusClosed || got.Assignee != nil {
			t.Errorf("Get() by agent %s after erasure = %+v, want closed, unassigned", a.ID, got)
		}
		listed := false
		for _, s := range c.list(a) {
			listed = listed || s.ID == conv
		}
		if !listed {
			t.Errorf("List() by agent %s after erasure does not hold the erased conversation", a.ID)
		}
	}

	commands := []struct {
		name    string
		as      auth.Principal
		subject string
		args    any
	}{
		{"post", agent, chatapi.PostSubject, chatapi.PostArgs{Conversation: conv, Text: "x"}},
		{"close", supervisor, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: conv}},
		{"assign", supervisor, chatapi.AssignSubject, chatapi.AssignArgs{Conversation: conv, Agent: agent2.ID}},
		{"open", visitor, chatapi.OpenSubject, chatapi.OpenArgs{Text: "x"}},
	}
	for _, tt := range commands {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.call(tt.as, tt.subject, tt.args, nil); rpc.CodeOf(err) != rpc.CodeGone {
				t.Errorf("%s after erasure = %v, want code %s", tt.subject, err, rpc.CodeGone)
			}
		})
	}

	// The summary stays, made of clear metadata, closed: nothing more can
	// happen in it.
	var sum chatapi.Summary
	c.must(supervisor, chatapi.GetSubject, chatapi.ConversationArgs{Conversation: conv}, &sum)
	if sum.Status != chatapi.StatusClosed || sum.Assignee != nil || sum.CreatedAt.IsZero() || !sum.LastMessageAt.Equal(before[1].At) {
		t.Errorf("Get() after erasure = %+v, want closed, unassigned, with its times", sum)
	}

	// A new instance rebuilding from the stream shows the same.
	if err := in.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	startChat(t, s)
	if diff := cmp.Diff(want, c.messages(supervisor, conv)); diff != "" {
		t.Errorf("Messages() after erasure and restart mismatch (-want +got):\n%s", diff)
	}
	var rebuilt chatapi.Summary
	c.must(supervisor, chatapi.GetSubject, chatapi.ConversationArgs{Conversation: conv}, &rebuilt)
	if diff := cmp.Diff(sum, rebuilt); diff != "" {
		t.Errorf("Get() after erasure and restart mismatch (-before +after):\n%s", diff)
	}
}

// TestRebuildPassesUnreadableKeys restarts the chat service while the key
// service has a visitor's keys but cannot read them: the rebuild must not
// wait for them for ever, and every other conversation is served.
func TestRebuildPassesUnreadableKeys(t *testing.T) {
	s, ks := startKeyed(t, visitor.ID, visitor2.ID)
	in := startChat(t, s)
	c := newClient(t, s)
	stuck := c.open(visitor, "unreadable soon")
	c.post(agent, stuck, "taken")
	kept := c.open(visitor2, "still readable")
	if err := in.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}

	ks.makeUnreadable(tenant, visitor.ID)
	startChat(t, s)
	if diff := cmp.Diff([]string{"visitor/v2: still readable"}, texts(c.messages(admin, kept))); diff != "" {
		t.Errorf("Messages() of a readable visitor after the rebuild mismatch (-want +got):\n%s", diff)
	}
	var sum chatapi.Summary
	c.must(supervisor, chatapi.GetSubject, chatapi.ConversationArgs{Conversation: stuck}, &sum)
	if sum.Status != chatapi.StatusOpen || sum.Assignee != nil {
		t.Errorf("Get() of the unreadable visitor's conversation = %+v, want open, its assignee unread", sum)
	}
}
