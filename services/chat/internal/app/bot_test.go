package app_test

import (
	"context"
	"errors"
	"testing"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/chat/internal/app"
	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// registry is the bots a tenant registered, as the INTEGRATIONS bucket
// holds them, counting the lookups.
type registry struct {
	bots    map[string]bool // by privacyapi.IntegrationKey
	lookups int
}

func (r *registry) Registered(_ context.Context, tenant, id string) (bool, error) {
	r.lookups++
	return r.bots[privacyapi.IntegrationKey(tenant, id)], nil
}

// TestAssignToBot assigns a conversation to a bot: refused, naming bot_id,
// when none of that id is registered or both an agent and a bot are named;
// the registry read once per assignment, and not at all for one that
// changes nothing. The bot then posts as itself, reads nothing, and hands
// off with a summary that leaves out the visitor's profile.
func TestAssignToBot(t *testing.T) {
	w := newWorld()
	reg := &registry{bots: map[string]bool{privacyapi.IntegrationKey(tenant, "faq"): true}}
	in := w.startWith(t, app.Options{Bots: reg})
	ctx := t.Context()
	visitor := visitorN(1)
	conv := in.open(t, visitor, "hello")
	if _, err := in.PutProfile(ctx, visitor, chatapi.ProfileArgs{Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	for _, args := range []chatapi.AssignArgs{
		{Conversation: conv, Bot: "nobody"},
		{Conversation: conv, Bot: "faq", Agent: "a1"},
	} {
		var ve *conversation.ValidationError
		if _, err := in.Assign(ctx, supervisor, args); !errors.As(err, &ve) || ve.Field != "bot_id" {
			t.Errorf("Assign(%+v) = %v, want a ValidationError naming bot_id", args, err)
		}
	}
	reg.lookups = 0
	sum, err := in.Assign(ctx, supervisor, chatapi.AssignArgs{Conversation: conv, Bot: "faq"})
	if err != nil || sum.Assignee == nil || *sum.Assignee != "bot:faq" {
		t.Fatalf("Assign(bot faq) = %+v, %v; want assigned to bot:faq", sum, err)
	}
	if _, err := in.Assign(ctx, supervisor, chatapi.AssignArgs{Conversation: conv, Bot: "faq"}); err != nil || reg.lookups != 1 {
		t.Errorf("Assign(bot faq) again = %v after %d lookups, want nil after 1", err, reg.lookups)
	}

	faq := auth.Principal{Tenant: tenant, ID: "faq", Role: auth.RoleBot}
	if _, err := in.Post(ctx, faq, chatapi.PostArgs{Conversation: conv, Text: "how may I help?"}); err != nil {
		t.Fatalf("Post(bot) = %v", err)
	}
	res, err := in.messages(t, visitor, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	if last := res.Messages[len(res.Messages)-1]; last.Author == nil || *last.Author != (event.Author{Role: "bot", ID: "faq"}) {
		t.Errorf("the bot's message reads author %+v, want role bot, id faq", last.Author)
	}
	if _, err := in.messages(t, faq, chatapi.MessagesArgs{Conversation: conv}); !errors.Is(err, conversation.ErrForbidden) {
		t.Errorf("Messages(bot) = %v, want ErrForbidden", err)
	}
	if _, err := in.List(ctx, faq, chatapi.ListArgs{}); !errors.Is(err, conversation.ErrForbidden) {
		t.Errorf("List(bot) = %v, want ErrForbidden", err)
	}
	if _, err := in.Get(ctx, faq, chatapi.ConversationArgs{Conversation: conv}); !errors.Is(err, conversation.ErrForbidden) {
		t.Errorf("Get(bot) = %v, want ErrForbidden", err)
	}
	sum, err = in.HandOff(ctx, faq, chatapi.ConversationArgs{Conversation: conv})
	if err != nil || sum.Assignee != nil || sum.VisitorProfile != nil {
		t.Errorf("HandOff(bot) = %+v, %v; want unassigned, without the visitor's profile", sum, err)
	}
	if sum, err = in.Get(ctx, visitor, chatapi.ConversationArgs{Conversation: conv}); err != nil || sum.VisitorProfile == nil {
		t.Errorf("Get(visitor) = %+v, %v; want their profile", sum, err)
	}
}

// TestNoBotsKept refuses every assignment to a bot when the service knows
// of no registry.
func TestNoBotsKept(t *testing.T) {
	in := newWorld().start(t)
	conv := in.open(t, visitorN(1), "hello")
	var ve *conversation.ValidationError
	if _, err := in.Assign(t.Context(), supervisor, chatapi.AssignArgs{Conversation: conv, Bot: "faq"}); !errors.As(err, &ve) || ve.Field != "bot_id" {
		t.Errorf("Assign(bot) without a registry = %v, want a ValidationError naming bot_id", err)
	}
}
