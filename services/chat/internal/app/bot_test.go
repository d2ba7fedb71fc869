package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
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

// faq is the bot the tests register.
var faq = auth.Principal{Tenant: tenant, ID: "faq", Role: auth.RoleBot}

// registeredFAQ returns a registry holding faq alone.
func registeredFAQ() *registry {
	return &registry{bots: map[string]bool{privacyapi.IntegrationKey(faq.Tenant, faq.ID): true}}
}

func (r *registry) Registered(_ context.Context, tenant, id string) (bool, error) {
	r.lookups++
	return r.bots[privacyapi.IntegrationKey(tenant, id)], nil
}

// TestAssignToBot assigns a conversation to a bot: refused, naming bot_id,
// when none of that id is registered or both an agent and a bot are named;
// the registry read once per assignment, and not at all for one that
// changes nothing. The bot then posts as itself, reads no list or summary
// (nor a transcript, with no consent kept), and hands off with a summary
// that leaves out the visitor's profile. Deleted, it is refused its post,
// transcript read and hand-off alike.
func TestAssignToBot(t *testing.T) {
	w := newWorld()
	reg := registeredFAQ()
	in := w.startWith(t, app.Options{Bots: reg})
	ctx := t.Context()
	visitor := visitorN(1)
	conv := in.open(t, visitor, "hello")
	if _, err := in.PutProfile(ctx, visitor, chatapi.ProfileArgs{Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	for _, args := range []chatapi.AssignArgs{
		{Conversation: conv, Bot: "nobody"},
		{Conversation: conv, Bot: faq.ID, Agent: "a1"},
	} {
		var ve *conversation.ValidationError
		if _, err := in.Assign(ctx, supervisor, args); !errors.As(err, &ve) || ve.Field != "bot_id" {
			t.Errorf("Assign(%+v) = %v, want a ValidationError naming bot_id", args, err)
		}
	}
	reg.lookups = 0
	sum, err := in.Assign(ctx, supervisor, chatapi.AssignArgs{Conversation: conv, Bot: faq.ID})
	if err != nil || sum.Assignee == nil || *sum.Assignee != "bot:faq" {
		t.Fatalf("Assign(bot faq) = %+v, %v; want assigned to bot:faq", sum, err)
	}
	if _, err := in.Assign(ctx, supervisor, chatapi.AssignArgs{Conversation: conv, Bot: faq.ID}); err != nil || reg.lookups != 1 {
		t.Errorf("Assign(bot faq) again = %v after %d lookups, want nil after 1", err, reg.lookups)
	}

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
	if _, err := in.messages(t, faq, chatapi.MessagesArgs{Conversation: conv}); !errors.Is(err, app.ErrNoConsent) {
		t.Errorf("Messages(bot) with no consent kept = %v, want ErrNoConsent", err)
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
	// Deleted, the bot is stopped at once, though its token lives on.
	if _, err := in.Assign(ctx, supervisor, chatapi.AssignArgs{Conversation: conv, Bot: faq.ID}); err != nil {
		t.Fatal(err)
	}
	delete(reg.bots, privacyapi.IntegrationKey(faq.Tenant, faq.ID))
	if _, err := in.Post(ctx, faq, chatapi.PostArgs{Conversation: conv, Text: "still here?"}); !errors.Is(err, conversation.ErrForbidden) {
		t.Errorf("Post(deleted bot) = %v, want ErrForbidden", err)
	}
	if _, err := in.messages(t, faq, chatapi.MessagesArgs{Conversation: conv}); !errors.Is(err, conversation.ErrForbidden) {
		t.Errorf("Messages(deleted bot) = %v, want ErrForbidden", err)
	}
	if _, err := in.HandOff(ctx, faq, chatapi.ConversationArgs{Conversation: conv}); !errors.Is(err, conversation.ErrForbidden) {
		t.Errorf("HandOff(deleted bot) = %v, want ErrForbidden", err)
	}
	if sum, err := in.Get(ctx, supervisor, chatapi.ConversationArgs{Conversation: conv}); err != nil || sum.Assignee == nil || *sum.Assignee != "bot:faq" {
		t.Errorf("Get(supervisor) after the deleted bot's hand-off = %+v, %v; want still assigned to bot:faq", sum, err)
	}
}

// TestNoBotsKept refuses every assignment to a bot when the service knows
// of no registry.
func TestNoBotsKept(t *testing.T) {
	in := newWorld().start(t)
	conv := in.open(t, visitorN(1), "hello")
	var ve *conversation.ValidationError
	if _, err := in.Assign(t.Context(), supervisor, chatapi.AssignArgs{Conversation: conv, Bot: faq.ID}); !errors.As(err, &ve) || ve.Field != "bot_id" {
		t.Errorf("Assign(bot) without a registry = %v, want a ValidationError naming bot_id", err)
	}
}

// consents is the visitors' ai consent as the privacy service holds it
// now, counting the questions.
type consents struct {
	mu    sync.Mutex
	ai    map[string]bool // by visitor
	asked int
}

func (c *consents) AI(_ context.Context, _, visitor string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked++
	return c.ai[visitor]
}

func (c *consents) set(visitor string, ai bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ai[visitor] = ai
}

// TestBotReadsTranscriptRedacted has a bot assigned after the opening read
// the visitor's question: only while their ai consent holds, asked on every
// page; every text redacted, no profile, no audit entry; the visitor and
// staff still read the original. A hand-off stays in the transcript as a
// line by whoever asked, after which the bot reads nothing.
func TestBotReadsTranscriptRedacted(t *testing.T) {
	w := newWorld()
	reg := registeredFAQ()
	ai := &consents{ai: map[string]bool{}}
	in := w.startWith(t, app.Options{Bots: reg, Consents: ai})
	ctx := t.Context()
	visitor := visitorN(1)
	const question = "mail ada.lovelace@example.com, card 4111 1111 1111 1111, iban GB82 WEST 1234 5698 7654 32, phone +44 20 7946 0958, ip 203.0.113.7"
	const redacted = "mail [email], card [card], iban [iban], phone [phone], ip [ip]"
	conv := in.open(t, visitor, question)
	if _, err := in.PutProfile(ctx, visitor, chatapi.ProfileArgs{Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.messages(t, faq, chatapi.MessagesArgs{Conversation: conv}); !errors.Is(err, conversation.ErrForbidden) {
		t.Errorf("Messages(bot) before its assignment = %v, want ErrForbidden", err)
	}
	if _, err := in.Assign(ctx, supervisor, chatapi.AssignArgs{Conversation: conv, Bot: faq.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.messages(t, faq, chatapi.MessagesArgs{Conversation: conv}); !errors.Is(err, app.ErrNoConsent) || ai.asked != 1 {
		t.Errorf("Messages(bot) without ai consent = %v after %d questions, want ErrNoConsent after 1", err, ai.asked)
	}

	ai.set(visitor.ID, true)
	audited := w.audited.len()
	res, err := in.messages(t, faq, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatalf("Messages(bot) with ai consent = %v", err)
	}
	if len(res.Messages) != 1 || res.Messages[0].Text == nil || *res.Messages[0].Text != redacted || res.VisitorProfile != nil {
		t.Errorf("Messages(bot) = %+v, want the opening only, reading %q, and no profile", res, redacted)
	}
	if got := w.audited.len(); got != audited {
		t.Errorf("a bot's read left %d audit entries, want none", got-audited)
	}
	for _, p := range []auth.Principal{visitor, supervisor} {
		res, err := in.messages(t, p, chatapi.MessagesArgs{Conversation: conv})
		if err != nil || len(res.Messages) != 1 || *res.Messages[0].Text != question || res.VisitorProfile == nil {
			t.Errorf("Messages(%s) = %+v, %v; want the original text and the profile", p.Role, res, err)
		}
	}

	ai.set(visitor.ID, false)
	if _, err := in.messages(t, faq, chatapi.MessagesArgs{Conversation: conv}); !errors.Is(err, app.ErrNoConsent) {
		t.Errorf("Messages(bot) after the consent was withdrawn = %v, want ErrNoConsent", err)
	}
	ai.set(visitor.ID, true)
	if _, err := in.HandOff(ctx, visitor, chatapi.ConversationArgs{Conversation: conv}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.messages(t, faq, chatapi.MessagesArgs{Conversation: conv}); !errors.Is(err, conversation.ErrForbidden) {
		t.Errorf("Messages(bot) after the hand-off = %v, want ErrForbidden", err)
	}
	res, err = in.messages(t, visitor, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	want := event.Author{Role: "visitor", ID: visitor.ID}
	if len(res.Messages) != 2 {
		t.Fatalf("the transcript after the hand-off = %+v, want the opening and the hand-off", res.Messages)
	}
	if h := res.Messages[1]; !h.HandedOff || h.Text != nil || h.Author == nil || *h.Author != want || h.At.IsZero() {
		t.Errorf("the hand-off's line = %+v, want handed_off by %+v, with its time and no text", h, want)
	}
	if res.Messages[0].HandedOff {
		t.Errorf("the opening reads handed_off: %+v", res.Messages[0])
	}
}

// TestBotPageMeasuredRedacted shows a bot's page bounded by its texts as
// redacted, placeholders longer than what they replace ("[ip]" for "::1"):
// texts that fill a page as written overflow it redacted, so the bot's
// page stops earlier, within chatapi.PageBytes.
func TestBotPageMeasuredRedacted(t *testing.T) {
	w := newWorld()
	reg := registeredFAQ()
	in := w.startWith(t, app.Options{Bots: reg, Consents: &consents{ai: map[string]bool{visitorN(1).ID: true}}})
	ctx := t.Context()
	visitor := visitorN(1)
	conv := in.open(t, visitor, "hello")
	if _, err := in.Assign(ctx, supervisor, chatapi.AssignArgs{Conversation: conv, Bot: faq.ID}); err != nil {
		t.Fatal(err)
	}
	// 60,000 bytes each, 75,000 redacted: four fit a page as written
	// (240,000 bytes), three redacted.
	text := strings.Repeat("::1 ", 15000)
	for range 4 {
		if _, err := in.Post(ctx, faq, chatapi.PostArgs{Conversation: conv, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := in.Messages(ctx, visitor, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	var res chatapi.MessagesResult
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Messages) != 5 || res.Next != nil {
		t.Fatalf("the visitor's page holds %d messages, next %v; want all 5, no next", len(res.Messages), res.Next)
	}
	raw, err = in.Messages(ctx, faq, chatapi.MessagesArgs{Conversation: conv})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Messages) != 4 || res.Next == nil || *res.Next != res.Messages[3].Seq {
		t.Errorf("the bot's page holds %d messages, next %v; want 4 and a next page after the last", len(res.Messages), res.Next)
	}
	if len(raw) > chatapi.PageBytes+1024 {
		t.Errorf("the bot's page is %d bytes, want within chatapi.PageBytes (%d) and its envelope", len(raw), chatapi.PageBytes)
	}
	for _, m := range res.Messages[1:] {
		if m.Text == nil || strings.Contains(*m.Text, "::1") {
			t.Fatalf("the bot's page holds an unredacted text")
		}
	}
}
