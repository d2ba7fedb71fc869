package chat_test

import (
	"testing"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
)

// TestBusUnavailableIsUnavailable takes JetStream away under a running
// chat service, as a stream without a leader does for a while: commands
// answer CodeUnavailable (the gateway's 503 with Retry-After), never
// internal, and work again once it is back.
func TestBusUnavailableIsUnavailable(t *testing.T) {
	s := natstest.Start(t, t.TempDir())
	ks := startKeyService(t, s)
	ks.add(t, tenant, visitor.ID)
	startChat(t, s)
	c := newClient(t, s)
	conv := c.open(visitor, "hello")

	if err := s.DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	err := c.call(visitor, chatapi.PostSubject, chatapi.PostArgs{Conversation: conv, Text: "while away"}, nil)
	if rpc.CodeOf(err) != rpc.CodeUnavailable {
		t.Errorf("Post() without JetStream error = %v, want code %s", err, rpc.CodeUnavailable)
	}
	err = c.call(visitor, chatapi.OpenSubject, chatapi.OpenArgs{Text: "while away"}, nil)
	if rpc.CodeOf(err) != rpc.CodeUnavailable {
		t.Errorf("Open() without JetStream error = %v, want code %s", err, rpc.CodeUnavailable)
	}
}
