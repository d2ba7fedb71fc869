package app_test

import (
	"testing"

	"github.com/parley-chat/parley/pkg/chatapi"
)

// The reads of an instance whose follower has not applied another
// instance's write: each shows the write all the same.

// TestWithdrawnOpeningOnAnotherInstance withdraws a conversation's opening
// message through one instance and reads the transcript, and the visitor's
// export, through another that held the conversation before: neither shows
// the opening's text.
func TestWithdrawnOpeningOnAnotherInstance(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	v := visitorN(1)
	conv := a.open(t, v, "secret opening")
	b.follow(t)
	before, err := b.messages(t, v, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Withdraw(t.Context(), v, chatapi.WithdrawArgs{Conversation: conv, Message: before.Messages[0].ID}); err != nil {
		t.Fatal(err)
	}
	page, err := b.messages(t, v, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	if m := page.Messages[0]; !m.Withdrawn || m.Text != nil {
		t.Errorf("Messages() through the other instance: opening withdrawn=%v text=%q, want withdrawn and no text", m.Withdrawn, deref(m.Text))
	}
	exp, err := b.export(t, v, chatapi.ExportArgs{Visitor: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	if m := exp.Conversations[0].Messages[0]; !m.Withdrawn || m.Text != nil {
		t.Errorf("Export() through the other instance: opening withdrawn=%v text=%q, want withdrawn and no text", m.Withdrawn, deref(m.Text))
	}
}
