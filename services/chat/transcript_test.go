package chat_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestTranscriptReadFromStore posts more than a page of messages to one
// conversation, interleaved with another's, and reads them back as posted,
// in order, from the instance that wrote them, after its restart, and from
// an instance that never saw them written: transcripts are read from the
// store, not from what an instance remembers.
func TestTranscriptReadFromStore(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID, visitor2.ID)
	unlimited(t, s, tenant)
	first := startChat(t, s)
	c := newClient(t, s)

	long := c.open(visitor, "m0")
	other := c.open(visitor2, "o0")
	want := []string{"visitor/v1: m0"}
	wantOther := []string{"visitor/v2: o0"}
	for i := 1; i <= chatapi.PageItems+20; i++ {
		author := visitor
		if i%3 == 0 {
			author = agent // the first assigns the conversation: an event that is no message
		}
		text := fmt.Sprint("m", i)
		c.post(author, long, text)
		want = append(want, fmt.Sprintf("%s/%s: %s", author.Role, author.ID, text))
		if i%50 == 0 {
			c.post(visitor2, other, text)
			wantOther = append(wantOther, "visitor/v2: "+text)
		}
	}
	check := func(when string) {
		t.Helper()
		got := c.messages(supervisor, long)
		if diff := cmp.Diff(want, texts(got)); diff != "" {
			t.Errorf("Messages(long) %s mismatch (-want +got):\n%s", when, diff)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Seq <= got[i-1].Seq {
				t.Errorf("Messages(long) %s: seq %d after %d", when, got[i].Seq, got[i-1].Seq)
			}
		}
		if diff := cmp.Diff(wantOther, texts(c.messages(visitor2, other))); diff != "" {
			t.Errorf("Messages(other) %s mismatch (-want +got):\n%s", when, diff)
		}
	}
	check("as written")
	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	startChat(t, s)
	check("after a restart")
	startChat(t, s) // a second instance, which never saw the posts written
	c.post(visitor, long, "last")
	want = append(want, "visitor/v1: last")
	check("with a second instance")
}

// TestKeyRememberedPastTheRecentOnes repeats posts whose keys an instance
// no longer indexes exactly (it keeps the last few per conversation and
// finds older ones in the store), before and after a restart: each answers
// the message it stored, and nothing is stored twice.
func TestKeyRememberedPastTheRecentOnes(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID)
	unlimited(t, s, tenant)
	first := startChat(t, s)
	c := newClient(t, s)
	_, js := natstest.Connect(t, s)
	conv := c.open(visitor, "hello")

	const posts = 60
	want := make([]chatapi.PostResult, posts)
	for i := range posts {
		var err error
		if want[i], err = c.postKeyed(visitor, conv, fmt.Sprint("text ", i), fmt.Sprint("key-", i)); err != nil {
			t.Fatal(err)
		}
	}
	repeat := func(when string) {
		t.Helper()
		for _, i := range []int{0, 1, posts / 2, posts - 1} {
			got, err := c.postKeyed(visitor, conv, fmt.Sprint("text ", i), fmt.Sprint("key-", i))
			if err != nil || got != want[i] {
				t.Errorf("Post(key-%d again) %s = %+v, %v; want %+v", i, when, got, err, want[i])
			}
		}
		_, err := c.postKeyed(visitor, conv, "another text", "key-0")
		if rpc.CodeOf(err) != rpc.CodeInvalid {
			t.Errorf("Post(key-0, another text) %s error = %v, want code %s", when, err, rpc.CodeInvalid)
		}
		if n := len(storedEvents(t, js, stream.ChatSubject(tenant, conv))); n != 1+posts {
			t.Errorf("%s: %d events stored, want %d", when, n, 1+posts)
		}
	}
	repeat("while running")
	if err := first.stop(); err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	startChat(t, s)
	repeat("after a restart")
	if _, err := c.postKeyed(visitor, conv, "new", "key-new"); err != nil {
		t.Errorf("Post(new key) = %v", err)
	}
}
