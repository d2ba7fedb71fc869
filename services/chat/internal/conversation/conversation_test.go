package conversation_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Invalid UTF-8 never survives the JSON of the bus, so the rule is tested
// here, where the text arrives as it is.
func TestValidateText(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		wantErr bool
	}{
		{"plain", "hello", false},
		{"largest", strings.Repeat("x", chatapi.MaxTextBytes), false},
		{"empty", "", true},
		{"blank", " \t\n", true},
		{"too long", strings.Repeat("x", chatapi.MaxTextBytes+1), true},
		{"invalid utf-8", "a\xffb", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := conversation.ValidateText(tt.give)
			var ve *conversation.ValidationError
			if got := errors.As(err, &ve); got != tt.wantErr {
				t.Errorf("ValidateText(%.20q) = %v, want a ValidationError: %t", tt.give, err, tt.wantErr)
			}
		})
	}
}

// TestOpenWithResolvesEraseAfterClose shows the delay recorded at opening:
// the visitor's choice, 0 included, over the tenant's default.
func TestOpenWithResolvesEraseAfterClose(t *testing.T) {
	hours := func(h int) *int { return &h }
	visitor := auth.Principal{Tenant: "t1", ID: "v1", Role: auth.RoleVisitor}
	tests := []struct {
		name      string
		give      *int
		byDefault time.Duration
		want      time.Duration
	}{
		{"neither", nil, 0, 0},
		{"tenant default", nil, 90 * time.Second, 90 * time.Second},
		{"tenant default rounded up to a second", nil, 1500 * time.Millisecond, 2 * time.Second},
		{"visitor's hours", hours(3), 0, 3 * time.Hour},
		{"visitor's hours over the default", hours(3), 10 * time.Second, 3 * time.Hour},
		{"visitor's 0 over the default", hours(0), 10 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := conversation.OpenWith(visitor, "hello", tt.give, tt.byDefault)
			if err != nil {
				t.Fatal(err)
			}
			if got := ch.Payload.(*event.Opened).EraseAfterClose(); got != tt.want {
				t.Errorf("OpenWith(%v, %v) erases %v after close, want %v", tt.give, tt.byDefault, got, tt.want)
			}
		})
	}
}

// TestErasedStaysErased applies an assignment that was on its way when the
// visitor was erased: the conversation keeps no assignee, as a rebuild after
// the erasure, which cannot read the assignment, shows it.
func TestErasedStaysErased(t *testing.T) {
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	env := func(typ event.Type) event.Envelope {
		return event.Envelope{ID: "e-" + string(typ), Type: typ, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at}
	}
	var c conversation.Conversation
	c.Apply(1, env(event.ConversationOpened), nil)
	c.Erase()
	c.Apply(2, env(event.ConversationAssigned), &event.Assigned{Agent: "alice"})
	if !c.Erased || c.Status != conversation.Closed || !c.Assigned || c.Assignee != "" {
		t.Errorf("after erasure and a late assignment: %+v, want erased, closed, assigned to no one readable", c)
	}
	p := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}
	if _, err := c.Post(p, "hello", time.Now(), 60); !errors.Is(err, conversation.ErrErased) {
		t.Errorf("Post() after erasure = %v, want ErrErased", err)
	}
}

func TestPostKeepsToTheMessageLimit(t *testing.T) {
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	visitor := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	// A conversation opened at at, with messages 10s and 20s later: three
	// messages in its first minute.
	var c conversation.Conversation
	c.Apply(1, event.Envelope{Type: event.ConversationOpened, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at}, nil)
	for i, d := range []time.Duration{10 * time.Second, 20 * time.Second} {
		c.Apply(uint64(i+2), event.Envelope{Type: event.MessagePosted, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at.Add(d)}, nil)
	}
	tests := []struct {
		name      string
		now       time.Duration // after at
		perMinute int
		wantRetry time.Duration // 0: allowed
	}{
		{"under the limit", 30 * time.Second, 4, 0},
		{"at the limit", 30 * time.Second, 3, 30 * time.Second},
		{"past the limit", 59 * time.Second, 2, time.Second},
		{"a new window", 60 * time.Second, 3, 0},
	}
	// The chat service's view stores conversations in JSON: one restored
	// from it decides as the folded one.
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var restored conversation.Conversation
	if err := json.Unmarshal(b, &restored); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		for name, c := range map[string]conversation.Conversation{"folded": c, "restored": restored} {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				_, err := c.Post(visitor, "hello", at.Add(tt.now), tt.perMinute)
				var pe *conversation.PaceError
				switch {
				case tt.wantRetry == 0 && err != nil:
					t.Errorf("Post() = %v, want nil", err)
				case tt.wantRetry != 0 && !errors.As(err, &pe):
					t.Errorf("Post() = %v, want a PaceError", err)
				case tt.wantRetry != 0 && (pe.RetryAfter != tt.wantRetry || !errors.Is(err, conversation.ErrTooManyMessages)):
					t.Errorf("Post() = %v retry after %v, want ErrTooManyMessages retry after %v", err, pe.RetryAfter, tt.wantRetry)
				}
			})
		}
	}
}

func TestCheckOpen(t *testing.T) {
	tests := []struct {
		open, limit int
		want        error
	}{
		{0, 1, nil},
		{4, 5, nil},
		{5, 5, conversation.ErrTooManyOpen},
		{6, 5, conversation.ErrTooManyOpen},
	}
	for _, tt := range tests {
		if got := conversation.CheckOpen(tt.open, tt.limit); !errors.Is(got, tt.want) || (tt.want == nil) != (got == nil) {
			t.Errorf("CheckOpen(%d, %d) = %v, want %v", tt.open, tt.limit, got, tt.want)
		}
	}
}

// TestStamp stamps a conversation's life through every event type but a
// bot's (TestBotConversation); see checkStamps.
func TestStamp(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	visitor := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	alice := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}
	bob := auth.Principal{Tenant: "demo", ID: "bob", Role: auth.RoleAgent}
	sue := auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor}
	secs := func(s float64) *float64 { return &s }
	hours := 2
	steps := []stampStep{
		{"opened", 0, func(*conversation.Conversation) ([]conversation.Change, error) {
			ch, err := conversation.OpenWith(visitor, "hello", &hours, 0)
			return []conversation.Change{ch}, err
		}, []event.Stamp{{}}},
		{"visitor's message", time.Second, func(c *conversation.Conversation) ([]conversation.Change, error) {
			return c.Post(visitor, "anyone?", at.Add(time.Second), 100)
		}, []event.Stamp{{}}},
		{"agent's first message takes it", 30 * time.Second, func(c *conversation.Conversation) ([]conversation.Change, error) {
			return c.Post(alice, "here", at.Add(30*time.Second), 100)
		}, []event.Stamp{{Assignee: "alice"}, {Assignee: "alice", FirstResponseSeconds: secs(30)}}},
		{"reassigned", 40 * time.Second, func(c *conversation.Conversation) ([]conversation.Change, error) {
			return c.Assign(sue, "bob")
		}, []event.Stamp{{Assignee: "bob", PreviousAssignee: "alice"}}},
		{"second agent's message", 50 * time.Second, func(c *conversation.Conversation) ([]conversation.Change, error) {
			return c.Post(bob, "bob now", at.Add(50*time.Second), 100)
		}, []event.Stamp{{Assignee: "bob"}}},
		{"closed", 90 * time.Second, func(c *conversation.Conversation) ([]conversation.Change, error) {
			return c.Close(bob)
		}, []event.Stamp{{Assignee: "bob", OpenSeconds: secs(90), EraseAfterCloseSeconds: 2 * 3600}}},
		{"rated", 100 * time.Second, func(c *conversation.Conversation) ([]conversation.Change, error) {
			return c.Rate(visitor, 5)
		}, []event.Stamp{{Assignee: "bob"}}},
	}
	checkStamps(t, at, steps)
}

// stampStep is a command of a conversation's life, after its opening, and
// the stamps of the events it appends.
type stampStep struct {
	name   string
	after  time.Duration
	decide func(c *conversation.Conversation) ([]conversation.Change, error)
	want   []event.Stamp
}

// checkStamps runs steps on a conversation opened at at as the chat
// service appends them — decide, stamp, apply — and checks what each event
// is stamped with; the same from a conversation restored from the view's
// JSON before each command.
func checkStamps(t *testing.T, at time.Time, steps []stampStep) {
	t.Helper()
	for _, restore := range []bool{false, true} {
		var c conversation.Conversation
		seq := uint64(0)
		for _, st := range steps {
			if restore {
				b, err := json.Marshal(c)
				if err != nil {
					t.Fatal(err)
				}
				c = conversation.Conversation{}
				if err := json.Unmarshal(b, &c); err != nil {
					t.Fatal(err)
				}
			}
			changes, err := st.decide(&c)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			var got []event.Stamp
			for _, ch := range changes {
				c.Stamp(ch, at.Add(st.after))
				got = append(got, *event.StampOf(ch.Payload))
				seq++
				c.Apply(seq, event.Envelope{Type: ch.Type, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at.Add(st.after)}, ch.Payload)
			}
			if diff := cmp.Diff(st.want, got); diff != "" {
				t.Errorf("%s (restored: %v): stamps mismatch (-want +got):\n%s", st.name, restore, diff)
			}
		}
	}
}

// TestWithdraw shows who may withdraw which message: only the visitor who
// wrote it, the opening one too (its withdrawal says so), also once closed,
// and a second time changes nothing.
func TestWithdraw(t *testing.T) {
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	visitor := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	mine := conversation.Written{ID: "m1", Author: event.Author{Role: "visitor", ID: "v1"}, At: at}
	fold := func(closed, erased bool) conversation.Conversation {
		var c conversation.Conversation
		c.Apply(1, event.Envelope{ID: "c1", Type: event.ConversationOpened, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at}, nil)
		if closed {
			c.Apply(2, event.Envelope{ID: "e2", Type: event.ConversationClosed, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at}, nil)
		}
		if erased {
			c.Erase()
		}
		return c
	}
	with := func(f func(*conversation.Written)) conversation.Written {
		w := mine
		f(&w)
		return w
	}
	tests := []struct {
		name    string
		closed  bool
		erased  bool
		p       auth.Principal
		give    conversation.Written
		want    int
		wantErr error
	}{
		{"own message", false, false, visitor, mine, 1, nil},
		{"own message once closed", true, false, visitor, mine, 1, nil},
		{"withdrawn already", false, false, visitor, with(func(w *conversation.Written) { w.Withdrawn = true }), 0, nil},
		{"opening message", false, false, visitor, with(func(w *conversation.Written) { w.Opening = true }), 1, nil},
		{"no such message", false, false, visitor, conversation.Written{}, 0, conversation.ErrMessageNotFound},
		{"an agent's message", false, false, visitor, with(func(w *conversation.Written) { w.Author = event.Author{Role: "agent", ID: "v1"} }), 0, conversation.ErrForbidden},
		{"staff", false, false, auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor}, mine, 0, conversation.ErrForbidden},
		{"another visitor", false, false, auth.Principal{Tenant: "demo", ID: "v2", Role: auth.RoleVisitor}, mine, 0, conversation.ErrForbidden},
		{"erased", false, true, visitor, mine, 0, conversation.ErrErased},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fold(tt.closed, tt.erased)
			got, err := c.Withdraw(tt.p, tt.give)
			if !errors.Is(err, tt.wantErr) || len(got) != tt.want {
				t.Fatalf("Withdraw(%v, %+v) = %v, %v; want %d changes, %v", tt.p, tt.give, got, err, tt.want, tt.wantErr)
			}
			if tt.want == 1 {
				w := got[0].Payload.(*event.Withdrawn)
				if got[0].Type != event.MessageWithdrawn || w.Message != "m1" || !w.PostedAt.Equal(at) || w.Opening != tt.give.Opening {
					t.Errorf("Withdraw() = %+v %+v, want the withdrawal of m1 posted at %v, opening %v", got[0], w, at, tt.give.Opening)
				}
			}
		})
	}
}

// TestOpeningWithdrawnFolds shows the fold keeping the withdrawal of the
// opening message, which readers show withdrawn from: a posting's
// withdrawal does not set it, the view's encoding keeps it, and an erasure
// leaves it unread, as a rebuild, which cannot open the withdrawal, would.
func TestOpeningWithdrawnFolds(t *testing.T) {
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	env := func(id string, typ event.Type) event.Envelope {
		return event.Envelope{ID: id, Type: typ, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at}
	}
	var c conversation.Conversation
	c.Apply(1, env("e1", event.ConversationOpened), nil)
	c.Apply(2, env("e2", event.MessagePosted), &event.Posted{Author: event.Author{Role: "visitor", ID: "v1"}})
	c.Apply(3, env("e3", event.MessageWithdrawn), &event.Withdrawn{Message: "e2", PostedAt: at})
	if c.OpeningWithdrawn {
		t.Fatal("a posting's withdrawal set OpeningWithdrawn")
	}
	c.Apply(4, env("e4", event.MessageWithdrawn), &event.Withdrawn{Message: "e1", PostedAt: at, Opening: true})
	if !c.OpeningWithdrawn {
		t.Fatal("the opening's withdrawal did not set OpeningWithdrawn")
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var restored conversation.Conversation
	if err := json.Unmarshal(b, &restored); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, restored, cmp.AllowUnexported(conversation.Conversation{})); diff != "" {
		t.Errorf("restored from %s mismatch (-want +got):\n%s", b, diff)
	}
	restored.Erase()
	var rebuilt conversation.Conversation
	rebuilt.Apply(1, env("e1", event.ConversationOpened), nil)
	rebuilt.Apply(4, env("e4", event.MessageWithdrawn), nil)
	rebuilt.Erase()
	if restored.OpeningWithdrawn || rebuilt.OpeningWithdrawn {
		t.Errorf("erased: OpeningWithdrawn = %v, rebuilt %v; want false", restored.OpeningWithdrawn, rebuilt.OpeningWithdrawn)
	}
}

func TestCheckProfile(t *testing.T) {
	visitor := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	tests := []struct {
		name      string
		p         auth.Principal
		give      chatapi.ProfileArgs
		want      chatapi.ProfileArgs
		wantField string
		wantErr   error
	}{
		{"name and e-mail", visitor, chatapi.ProfileArgs{Name: " Ada Lovelace ", Email: "ada@example.com"}, chatapi.ProfileArgs{Name: "Ada Lovelace", Email: "ada@example.com"}, "", nil},
		{"name only", visitor, chatapi.ProfileArgs{Name: "Zoë"}, chatapi.ProfileArgs{Name: "Zoë"}, "", nil},
		{"e-mail only", visitor, chatapi.ProfileArgs{Email: "a.b+c@example.co.uk"}, chatapi.ProfileArgs{Email: "a.b+c@example.co.uk"}, "", nil},
		{"longest name", visitor, chatapi.ProfileArgs{Name: strings.Repeat("é", chatapi.MaxNameRunes)}, chatapi.ProfileArgs{Name: strings.Repeat("é", chatapi.MaxNameRunes)}, "", nil},
		{"neither", visitor, chatapi.ProfileArgs{Name: "  "}, chatapi.ProfileArgs{}, "name", nil},
		{"name too long", visitor, chatapi.ProfileArgs{Name: strings.Repeat("x", chatapi.MaxNameRunes+1)}, chatapi.ProfileArgs{}, "name", nil},
		{"control character", visitor, chatapi.ProfileArgs{Name: "Ada\x00"}, chatapi.ProfileArgs{}, "name", nil},
		{"invalid UTF-8", visitor, chatapi.ProfileArgs{Name: "a\xffb"}, chatapi.ProfileArgs{}, "name", nil},
		{"not an address", visitor, chatapi.ProfileArgs{Email: "ada at example"}, chatapi.ProfileArgs{}, "email", nil},
		{"address with a display name", visitor, chatapi.ProfileArgs{Email: "Ada <ada@example.com>"}, chatapi.ProfileArgs{}, "email", nil},
		{"two addresses", visitor, chatapi.ProfileArgs{Email: "a@example.com, b@example.com"}, chatapi.ProfileArgs{}, "email", nil},
		{"address too long", visitor, chatapi.ProfileArgs{Email: strings.Repeat("a", chatapi.MaxEmailBytes) + "@example.com"}, chatapi.ProfileArgs{}, "email", nil},
		{"staff", auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}, chatapi.ProfileArgs{Name: "Alice"}, chatapi.ProfileArgs{}, "", conversation.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := conversation.CheckProfile(tt.p, tt.give)
			var ve *conversation.ValidationError
			switch {
			case tt.wantField != "":
				if !errors.As(err, &ve) || ve.Field != tt.wantField {
					t.Errorf("CheckProfile(%+v) = %v, want a ValidationError of %s", tt.give, err, tt.wantField)
				}
			case !errors.Is(err, tt.wantErr):
				t.Errorf("CheckProfile(%+v) = %v, want %v", tt.give, err, tt.wantErr)
			case err == nil && got != tt.want:
				t.Errorf("CheckProfile(%+v) = %+v, want %+v", tt.give, got, tt.want)
			}
		})
	}
}

// TestBotConversation stamps a bot's part in a conversation (see
// checkStamps): assigned to the bot, the bot answers (no first response: a
// bot is no staff), the visitor asks for a person, which unassigns the bot
// (asking again changes nothing), and an agent takes it.
func TestBotConversation(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	visitor := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	faq := auth.Principal{Tenant: "demo", ID: "faq", Role: auth.RoleBot}
	alice := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}
	sue := auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor}
	secs := func(s float64) *float64 { return &s }
	checkStamps(t, at, []stampStep{
		{"opened", 0, func(*conversation.Conversation) ([]conversation.Change, error) {
			ch, err := conversation.OpenWith(visitor, "hello", nil, 0)
			return []conversation.Change{ch}, err
		}, []event.Stamp{{}}},
		{"assigned to the bot", time.Second, func(c *conversation.Conversation) ([]conversation.Change, error) {
			return c.AssignBot(sue, "faq")
		}, []event.Stamp{{Assignee: "bot:faq"}}},
		{"the bot answers", 2 * time.Second, func(c *conversation.Conversation) ([]conversation.Change, error) {
			return c.Post(faq, "try turning it off and on", at.Add(2*time.Second), 100)
		}, []event.Stamp{{Assignee: "bot:faq"}}},
		{"the visitor asks for a person", 3 * time.Second, func(c *conversation.Conversation) ([]conversation.Change, error) {
			return c.HandOff(visitor)
		}, []event.Stamp{{PreviousAssignee: "bot:faq"}}},
		{"asking again changes nothing", 4 * time.Second, func(c *conversation.Conversation) ([]conversation.Change, error) {
			return c.HandOff(visitor)
		}, nil},
		{"an agent takes it", 10 * time.Second, func(c *conversation.Conversation) ([]conversation.Change, error) {
			return c.Post(alice, "I am a person", at.Add(10*time.Second), 100)
		}, []event.Stamp{{Assignee: "alice"}, {Assignee: "alice", FirstResponseSeconds: secs(10)}}},
	})
}

// TestBotMayOnlyAnswer shows what a bot may do: post in, and hand off, a
// conversation assigned to it while it is open, and read its transcript;
// nothing else, nowhere else.
func TestBotMayOnlyAnswer(t *testing.T) {
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	faq := auth.Principal{Tenant: "demo", ID: "faq", Role: auth.RoleBot}
	fold := func(assignee string, closed bool) conversation.Conversation {
		var c conversation.Conversation
		env := func(typ event.Type) event.Envelope {
			return event.Envelope{Type: typ, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at}
		}
		c.Apply(1, env(event.ConversationOpened), &event.Opened{Visitor: "v1", Text: "hi"})
		if assignee != "" {
			c.Apply(2, env(event.ConversationAssigned), &event.Assigned{Agent: assignee})
		}
		if closed {
			c.Apply(3, env(event.ConversationClosed), &event.Closed{})
		}
		return c
	}
	acts := []struct {
		name string
		do   func(c *conversation.Conversation) error
	}{
		{"post", func(c *conversation.Conversation) error { _, err := c.Post(faq, "hello", at, 100); return err }},
		{"hand off", func(c *conversation.Conversation) error { _, err := c.HandOff(faq); return err }},
		{"read", func(c *conversation.Conversation) error { return c.CanRead(faq) }},
		{"see", func(c *conversation.Conversation) error { return c.CanSee(faq) }},
		{"type", func(c *conversation.Conversation) error { return c.CanType(faq) }},
		{"close", func(c *conversation.Conversation) error { _, err := c.Close(faq); return err }},
		{"assign to itself", func(c *conversation.Conversation) error { _, err := c.AssignBot(faq, "faq"); return err }},
		{"assign to an agent", func(c *conversation.Conversation) error { _, err := c.Assign(faq, "alice"); return err }},
		{"rate", func(c *conversation.Conversation) error { _, err := c.Rate(faq, 5); return err }},
		{"withdraw", func(c *conversation.Conversation) error { return c.CanWithdraw(faq) }},
	}
	states := []struct {
		name     string
		assignee string
		closed   bool
		// allowed are the acts that pass; errs, by act, what the others
		// answer instead of ErrForbidden.
		allowed map[string]bool
		errs    map[string]error
	}{
		{"assigned to it", event.BotAssignee("faq"), false, map[string]bool{"post": true, "hand off": true, "read": true}, nil},
		{"assigned to it, closed", event.BotAssignee("faq"), true, map[string]bool{"read": true}, map[string]error{"post": conversation.ErrClosed, "hand off": conversation.ErrClosed}},
		{"assigned to another bot", event.BotAssignee("sales"), false, nil, nil},
		{"assigned to an agent named as the bot", "faq", false, nil, nil},
		{"unassigned", "", false, nil, nil},
	}
	for _, st := range states {
		for _, act := range acts {
			t.Run(st.name+"/"+act.name, func(t *testing.T) {
				c := fold(st.assignee, st.closed)
				err := act.do(&c)
				want := error(conversation.ErrForbidden)
				if st.allowed[act.name] {
					want = nil
				} else if e, ok := st.errs[act.name]; ok {
					want = e
				}
				if !errors.Is(err, want) || (want == nil) != (err == nil) {
					t.Errorf("%s by the bot = %v, want %v", act.name, err, want)
				}
			})
		}
	}
	var c conversation.Conversation
	if c = fold(event.BotAssignee("faq"), false); c.Listed(faq) {
		t.Error("Listed(bot) = true, want a bot to have no inbox")
	}
	if err := conversation.CheckActor(faq); !errors.Is(err, conversation.ErrForbidden) {
		t.Errorf("CheckActor(bot) = %v, want ErrForbidden: a bot reads no list or export", err)
	}
}

// TestAssignToBot shows who may assign a conversation to a bot, and that
// agents do not see it in their inbox until it is handed off.
func TestAssignToBot(t *testing.T) {
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	var c conversation.Conversation
	c.Apply(1, event.Envelope{Type: event.ConversationOpened, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at}, &event.Opened{Visitor: "v1", Text: "hi"})
	tests := []struct {
		name    string
		p       auth.Principal
		bot     string
		wantErr error
	}{
		{"supervisor", auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor}, "faq", nil},
		{"admin", auth.Principal{Tenant: "demo", ID: "ada", Role: auth.RoleAdmin}, "faq", nil},
		{"agent", auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}, "faq", conversation.ErrForbidden},
		{"visitor", auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}, "faq", conversation.ErrForbidden},
		{"another tenant", auth.Principal{Tenant: "acme", ID: "sue", Role: auth.RoleSupervisor}, "faq", conversation.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.AssignBot(tt.p, tt.bot)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("AssignBot(%v, %q) = %v, want %v", tt.p, tt.bot, err, tt.wantErr)
			}
			if err == nil && (len(got) != 1 || got[0].Payload.(*event.Assigned).Agent != "bot:faq") {
				t.Errorf("AssignBot(%v, %q) = %+v, want one assignment to bot:faq", tt.p, tt.bot, got)
			}
		})
	}
	sue := auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor}
	var ve *conversation.ValidationError
	if _, err := c.AssignBot(sue, "no:such"); !errors.As(err, &ve) || ve.Field != "bot_id" {
		t.Errorf("AssignBot(%q) = %v, want a ValidationError naming bot_id", "no:such", err)
	}
	c.Apply(2, event.Envelope{Type: event.ConversationAssigned, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at}, &event.Assigned{Agent: "bot:faq"})
	alice := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}
	if c.Listed(alice) {
		t.Error("Listed(agent) = true for a conversation assigned to a bot, want false")
	}
	if _, err := c.Post(alice, "mine", at, 100); !errors.Is(err, conversation.ErrForbidden) {
		t.Errorf("Post(agent) in a bot's conversation = %v, want ErrForbidden", err)
	}
	c.Apply(3, event.Envelope{Type: event.ConversationHandedOff, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at}, nil)
	if !c.Listed(alice) {
		t.Error("Listed(agent) = false after the hand-off, want every agent to see it")
	}
}
