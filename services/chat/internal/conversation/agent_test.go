package conversation_test

import (
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

func TestAvailabilityTakes(t *testing.T) {
	two := 2
	tests := []struct {
		name     string
		give     conversation.Availability
		open     int
		themself bool
		want     error
	}{
		{"never set", conversation.Availability{}, 100, false, nil},
		{"online, room left", conversation.Availability{Presence: conversation.Online, MaxOpen: &two}, 1, false, nil},
		{"away", conversation.Availability{Presence: conversation.Away}, 0, false, conversation.ErrAgentAway},
		{"away, taking it themself", conversation.Availability{Presence: conversation.Away}, 0, true, nil},
		{"at capacity", conversation.Availability{MaxOpen: &two}, 2, false, conversation.ErrAgentFull},
		{"at capacity, taking it themself", conversation.Availability{MaxOpen: &two}, 2, true, conversation.ErrAgentFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give.Takes(tt.open, tt.themself); !errors.Is(err, tt.want) {
				t.Errorf("Takes(%d, %v) = %v, want %v", tt.open, tt.themself, err, tt.want)
			}
		})
	}
}

// TestCanTypeAsPostAllows: whoever may post may type, and no one else.
func TestCanTypeAsPostAllows(t *testing.T) {
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	env := func(typ event.Type) event.Envelope {
		return event.Envelope{ID: "e-" + string(typ), Type: typ, Tenant: "demo", Person: "v1", Aggregate: "c1", At: at}
	}
	var unassigned, assigned, closed conversation.Conversation
	for _, c := range []*conversation.Conversation{&unassigned, &assigned, &closed} {
		c.Apply(1, env(event.ConversationOpened), nil)
	}
	assigned.Apply(2, env(event.ConversationAssigned), &event.Assigned{Agent: "alice"})
	closed.Apply(2, env(event.ConversationClosed), nil)
	visitor := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	alice := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}
	bob := auth.Principal{Tenant: "demo", ID: "bob", Role: auth.RoleAgent}
	sue := auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor}
	other := auth.Principal{Tenant: "demo", ID: "v2", Role: auth.RoleVisitor}
	tests := []struct {
		name string
		c    conversation.Conversation
		p    auth.Principal
		want error
	}{
		{"visitor", assigned, visitor, nil},
		{"any agent while unassigned", unassigned, bob, nil},
		{"the assigned agent", assigned, alice, nil},
		{"another agent", assigned, bob, conversation.ErrForbidden},
		{"a supervisor, who does not post", assigned, sue, conversation.ErrForbidden},
		{"another visitor", assigned, other, conversation.ErrForbidden},
		{"closed", closed, visitor, conversation.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.CanType(tt.p)
			if !errors.Is(err, tt.want) {
				t.Errorf("CanType(%s) = %v, want %v", tt.p.ID, err, tt.want)
			}
			_, posted := tt.c.Post(tt.p, "hi", at, 60)
			if (err == nil) != (posted == nil) {
				t.Errorf("CanType(%s) = %v but Post() = %v: typing and posting disagree", tt.p.ID, err, posted)
			}
		})
	}
}
