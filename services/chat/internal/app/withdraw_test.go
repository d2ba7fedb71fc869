package app_test

import (
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
	"github.com/parley-chat/parley/services/chat/internal/memstore"
)

// TestWithdrawnMessageReadsWithdrawn withdraws a visitor's message through
// one instance and reads the transcript and the export through another: the
// line reads withdrawn, its text is nowhere, the posting is gone from the
// store, and withdrawing again answers the same. Staff may not withdraw it.
// The opening message reads withdrawn where it stands, its event kept, also
// through an instance started from the view and one rebuilt from the store.
func TestWithdrawnMessageReadsWithdrawn(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	v := visitorN(1)
	conv := a.open(t, v, "hello")
	posted, err := a.Post(t.Context(), v, chatapi.PostArgs{Conversation: conv, Text: "my phone is 555-0100"})
	if err != nil {
		t.Fatal(err)
	}
	reply, err := a.Post(t.Context(), agent, chatapi.PostArgs{Conversation: conv, Text: "noted"})
	if err != nil {
		t.Fatal(err)
	}
	before, err := a.messages(t, v, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	opening := before.Messages[0].ID
	withdraw := func(p, msg string) error {
		who := v
		if p == "agent" {
			who = agent
		}
		_, err := b.Withdraw(t.Context(), who, chatapi.WithdrawArgs{Conversation: conv, Message: msg})
		return err
	}
	for _, tt := range []struct {
		who, msg string
		want     error
	}{
		{"agent", posted.ID, conversation.ErrForbidden},
		{"visitor", reply.ID, conversation.ErrForbidden},
		{"visitor", "no-such-message", conversation.ErrMessageNotFound},
	} {
		if err := withdraw(tt.who, tt.msg); !errors.Is(err, tt.want) {
			t.Errorf("Withdraw(%s, %s) = %v, want %v", tt.who, tt.msg, err, tt.want)
		}
	}
	for range 2 {
		if err := withdraw("visitor", posted.ID); err != nil {
			t.Fatalf("Withdraw(own message) = %v", err)
		}
		if err := withdraw("visitor", opening); err != nil {
			t.Fatalf("Withdraw(opening message) = %v", err)
		}
	}
	if rs, err := w.events.Load(t.Context(), tenant, conv, 0); err != nil || len(rs) == 0 || rs[0].Seq != before.Messages[0].Seq {
		t.Errorf("the store lost the opening's event at %d (%v)", before.Messages[0].Seq, err)
	}
	a.follow(t)
	if rs, err := w.events.Load(t.Context(), tenant, conv, posted.Seq-1); err != nil || len(rs) == 0 || rs[0].Seq == posted.Seq {
		t.Errorf("the store still holds the withdrawn posting at %d (%v)", posted.Seq, err)
	}

	restarted := w.start(t)
	rebuilt := (&world{events: w.events, view: &memstore.View{}, profiles: w.profiles, keys: w.keys}).start(t)
	rebuilt.follow(t)
	for name, in := range map[string]*instance{"following": a, "restarted": restarted, "rebuilt": rebuilt} {
		page, err := in.messages(t, supervisor, chatapi.MessagesArgs{Conversation: conv})
		if err != nil {
			t.Fatal(err)
		}
		ms := page.Messages
		for _, m := range ms {
			if m.Text != nil && (*m.Text == "my phone is 555-0100" || *m.Text == "hello") {
				t.Errorf("%s: transcript still shows a withdrawn text: %+v", name, m)
			}
		}
		if len(ms) != 3 {
			t.Fatalf("%s: transcript = %+v, want the opening, the reply and the withdrawn posting", name, ms)
		}
		for i, want := range []struct {
			id  string
			seq uint64
			at  time.Time
		}{{opening, before.Messages[0].Seq, before.Messages[0].At}, {posted.ID, 0, posted.At}} {
			m := ms[2*i]
			if !m.Withdrawn || m.ID != want.id || want.seq != 0 && m.Seq != want.seq || m.Text != nil || m.Author == nil || m.Author.ID != v.ID || !m.At.Equal(want.at) {
				t.Errorf("%s: withdrawn line = %+v, want message %s (seq %d) by %s at %v without text", name, m, want.id, want.seq, v.ID, want.at)
			}
		}
		if ms[1].ID != reply.ID || ms[1].Withdrawn {
			t.Errorf("%s: second line = %+v, want the reply", name, ms[1])
		}
	}
	exp, err := b.export(t, v, chatapi.ExportArgs{Visitor: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	if ms := exp.Conversations[0].Messages; len(ms) != 3 || !ms[0].Withdrawn || ms[0].Text != nil || !ms[2].Withdrawn || ms[2].Text != nil {
		t.Errorf("export = %+v, want the opening and the posting withdrawn, without text", ms)
	}
}

// TestKeyedRepeatOnAnInstanceBehindTheWithdrawal repeats a keyed post
// through an instance that holds the post but not yet its withdrawal,
// whose store checks an append's id before its version, as a replicated
// stream does: the id is of a deleted event, and the repeat still answers
// the post once the instance caught up, and stores nothing.
func TestKeyedRepeatOnAnInstanceBehindTheWithdrawal(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	v := visitorN(1)
	conv := a.open(t, v, "hello")
	args := chatapi.PostArgs{Conversation: conv, Text: "my phone is 555-0100", IdempotencyKey: "k1"}
	first, err := a.Post(t.Context(), v, args)
	if err != nil {
		t.Fatal(err)
	}
	b.follow(t)
	if _, err := a.Withdraw(t.Context(), v, chatapi.WithdrawArgs{Conversation: conv, Message: first.ID}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Post(t.Context(), v, args)
	if err != nil || got != first {
		t.Errorf("Post(k1 again) behind the withdrawal = %+v, %v; want %+v", got, err, first)
	}
	if n := len(w.events.Since(0)); n != 2 {
		t.Errorf("store holds %d events, want 2: the opening and the withdrawal", n)
	}
}
