package app_test

import (
	"errors"
	"testing"

	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// TestWithdrawnMessageReadsWithdrawn withdraws a visitor's message through
// one instance and reads the transcript and the export through another: the
// line reads withdrawn, its text is nowhere, the posting is gone from the
// store, and withdrawing again answers the same. Staff may not withdraw it.
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
		{"visitor", opening, conversation.ErrOpeningMessage},
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
	}
	if rs, err := w.events.Load(t.Context(), tenant, conv, posted.Seq-1); err != nil || len(rs) == 0 || rs[0].Seq == posted.Seq {
		t.Errorf("the store still holds the withdrawn posting at %d (%v)", posted.Seq, err)
	}

	page, err := a.messages(t, supervisor, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	var withdrawn int
	for _, m := range page.Messages {
		if m.Text != nil && *m.Text == "my phone is 555-0100" {
			t.Errorf("transcript still shows the withdrawn text: %+v", m)
		}
		if m.Withdrawn {
			withdrawn++
			if m.ID != posted.ID || m.Text != nil || m.Author == nil || m.Author.ID != v.ID || !m.At.Equal(posted.At) {
				t.Errorf("withdrawn line = %+v, want message %s by %s at %v without text", m, posted.ID, v.ID, posted.At)
			}
		}
	}
	if len(page.Messages) != 3 || withdrawn != 1 {
		t.Errorf("transcript = %d lines, %d withdrawn; want opening, reply and one withdrawn", len(page.Messages), withdrawn)
	}
	exp, err := b.Export(t.Context(), v, chatapi.ExportArgs{Visitor: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	if ms := exp.Conversations[0].Messages; len(ms) != 3 || !ms[2].Withdrawn || ms[2].Text != nil {
		t.Errorf("export = %+v, want the withdrawn line last, without text", ms)
	}
}
