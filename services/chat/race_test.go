package chat_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// Two instances serve the same conversation while many posts race to it:
// every accepted post is stored exactly once, in one order both instances
// agree on, and losing writers caught up and retried.
func TestInstancesRacingOnOneConversation(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID)
	unlimited(t, s, tenant)
	instances := []*instance{startChat(t, s), startChat(t, s)}
	conv := newClient(t, s).open(visitor, "race")

	const clients, writers, posts = 2, 10, 10 // 200 posts
	var (
		mu       sync.Mutex
		accepted = map[string]chatapi.PostResult{} // text → result
		refused  int
		wg       sync.WaitGroup
	)
	for cl := range clients {
		c := newClient(t, s)
		for w := range writers {
			wg.Go(func() {
				for i := range posts {
					text := fmt.Sprintf("c%d-w%d-%d", cl, w, i)
					var res chatapi.PostResult
					err := c.call(visitor, chatapi.PostSubject, chatapi.PostArgs{Conversation: conv, Text: text}, &res)
					mu.Lock()
					switch {
					case err == nil:
						accepted[text] = res
					case rpc.CodeOf(err) == rpc.CodeConflict:
						refused++
					default:
						t.Errorf("Post(%s) = %v, want success or %s", text, err, rpc.CodeConflict)
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(accepted) == 0 {
		t.Fatalf("no post accepted, %d refused", refused)
	}
	t.Logf("%d posts accepted, %d refused as contended", len(accepted), refused)

	// The stream holds the opening and exactly the accepted posts, in
	// strictly increasing sequence.
	_, js := natstest.Connect(t, s)
	subject := stream.ChatSubject(tenant, conv)
	stored := storedEvents(t, js, subject)
	if got, want := len(stored), 1+len(accepted); got != want {
		t.Fatalf("%s holds %d events, want %d (the opening and every accepted post)", subject, got, want)
	}
	wantIDs := map[string]bool{}
	for _, r := range accepted {
		wantIDs[r.ID] = true
	}
	var last uint64
	for i, m := range stored {
		if m.seq <= last {
			t.Errorf("event %d has sequence %d after %d", i, m.seq, last)
		}
		last = m.seq
		if i == 0 {
			continue
		}
		if m.env.Type != event.MessagePosted || !wantIDs[m.env.ID] {
			t.Errorf("event %d (%s %s) is not an accepted post", i, m.env.Type, m.env.ID)
		}
		delete(wantIDs, m.env.ID)
	}

	// Both instances converge on the transcript in stream order. Requests
	// reach a random instance of the queue group, so many answers in a row
	// that agree come from both.
	type line struct {
		seq  uint64
		text string
	}
	var want []line
	for text, r := range accepted {
		want = append(want, line{r.Seq, text})
	}
	slices.SortFunc(want, func(a, b line) int { return int(a.seq) - int(b.seq) })
	wantTexts := []string{"race"}
	for _, l := range want {
		wantTexts = append(wantTexts, l.text)
	}
	c := newClient(t, s)
	agreed := 0
	natstest.Eventually(t, 10*time.Second, "transcripts converge", func() error {
		var got []string
		for _, m := range c.messages(supervisor, conv) {
			got = append(got, *m.Text)
		}
		if diff := cmp.Diff(wantTexts, got); diff != "" {
			agreed = 0
			return fmt.Errorf("Messages() mismatch (-want +got):\n%s", diff)
		}
		if agreed++; agreed < 20 {
			return fmt.Errorf("only %d answers in a row agree", agreed)
		}
		return nil
	})

	var conflicts float64
	for _, in := range instances {
		conflicts += in.conflicts(t)
	}
	t.Logf("%v appends lost the race", conflicts)
	if conflicts == 0 {
		t.Error("parley_chat_append_conflicts_total = 0 on both instances, want > 0")
	}
}

type storedEvent struct {
	seq uint64
	env event.Envelope
}

// storedEvents reads every event on subject.
func storedEvents(t *testing.T, js jetstream.JetStream, subject string) []storedEvent {
	t.Helper()
	ctx := t.Context()
	st, err := js.Stream(ctx, stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.State.Subjects[subject])
	cons, err := js.OrderedConsumer(ctx, stream.Chat, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(n)
	if err != nil {
		t.Fatal(err)
	}
	var out []storedEvent
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		env, err := event.Parse(m.Subject(), m.Headers(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, storedEvent{md.Sequence.Stream, env})
	}
	if err := batch.Error(); err != nil {
		t.Fatal(err)
	}
	if len(out) != n {
		t.Fatalf("fetched %d events of %s, want %d", len(out), subject, n)
	}
	return out
}

// Two writers post in turn to one conversation, each through any of two
// instances (the queue group picks one at random), and read it back at
// once: no post is refused, no append loses a race (each instance decides
// on the conversation as the store holds it, not as its consumer has got
// to), and every read, through either instance, shows the post just
// answered.
func TestPacedWritersAcrossInstances(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID)
	unlimited(t, s, tenant)
	instances := []*instance{startChat(t, s), startChat(t, s)}
	c := newClient(t, s)
	conv := c.open(visitor, "paced")
	writers := []auth.Principal{visitor, agent}
	for i := range 100 {
		p := writers[i%2]
		text := fmt.Sprintf("%s-%d", p.ID, i)
		var res chatapi.PostResult
		if err := c.call(p, chatapi.PostSubject, chatapi.PostArgs{Conversation: conv, Text: text}, &res); err != nil {
			t.Fatalf("Post(%s) = %v, want success", text, err)
		}
		var page chatapi.MessagesResult
		c.must(supervisor, chatapi.MessagesSubject, chatapi.MessagesArgs{Conversation: conv, Page: chatapi.Page[uint64]{After: res.Seq - 1}}, &page)
		if len(page.Messages) == 0 || page.Messages[0].ID != res.ID {
			t.Fatalf("Messages() right after Post(%s) does not start with it: %+v", text, page.Messages)
		}
		var sum chatapi.Summary
		c.must(p, chatapi.GetSubject, chatapi.ConversationArgs{Conversation: conv}, &sum)
		if !sum.LastMessageAt.Equal(res.At) {
			t.Fatalf("Get() right after Post(%s): last_message_at %v, want %v", text, sum.LastMessageAt, res.At)
		}
	}
	var conflicts float64
	for _, in := range instances {
		conflicts += in.conflicts(t)
	}
	if conflicts != 0 {
		t.Errorf("parley_chat_append_conflicts_total = %v over both instances, want 0 for paced writers", conflicts)
	}
}
