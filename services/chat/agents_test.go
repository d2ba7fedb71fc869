package chat_test

import (
	"testing"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/rpc"
)

// TestAvailabilitySharedByInstances sets an agent's presence and capacity
// through either of two instances and assigns through either (the queue
// group picks one at random): every instance goes by what was set, as it
// lives in the AGENTS bucket and not in one instance's memory.
func TestAvailabilitySharedByInstances(t *testing.T) {
	s, _ := startKeyed(t, visitor.ID)
	unlimited(t, s, tenant)
	startChat(t, s)
	startChat(t, s)
	c := newClient(t, s)
	assign := func(conv string, override bool) error {
		return c.call(supervisor, chatapi.AssignSubject, chatapi.AssignArgs{Conversation: conv, Agent: agent.ID, Override: override}, nil)
	}

	var av chatapi.Availability
	c.must(agent, chatapi.PresenceSubject, chatapi.PresenceArgs{Status: chatapi.PresenceAway}, &av)
	if av.Status != chatapi.PresenceAway || av.StatusAt == nil {
		t.Errorf("SetPresence(away) = %+v, want away with its time", av)
	}
	for i := range 8 {
		conv := c.open(visitor, "while away")
		if err := assign(conv, false); rpc.CodeOf(err) != rpc.CodeConflict {
			t.Fatalf("Assign #%d to an away agent = %v, want %s", i, err, rpc.CodeConflict)
		}
		c.must(visitor, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: conv}, nil)
	}

	c.must(agent, chatapi.PresenceSubject, chatapi.PresenceArgs{Status: chatapi.PresenceOnline}, nil)
	c.must(admin, chatapi.CapacitySubject, chatapi.CapacityArgs{Agent: agent.ID, MaxOpen: ptr(1)}, nil)
	held := c.open(visitor, "the one")
	if err := assign(held, false); err != nil {
		t.Fatalf("Assign within capacity = %v, want nil", err)
	}
	for i := range 8 {
		conv := c.open(visitor, "one too many")
		if err := assign(conv, false); rpc.CodeOf(err) != rpc.CodeConflict {
			t.Fatalf("Assign #%d past capacity = %v, want %s", i, err, rpc.CodeConflict)
		}
		c.must(visitor, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: conv}, nil)
	}
	c.must(agent, chatapi.AvailabilitySubject, chatapi.AgentArgs{Agent: agent.ID}, &av)
	if av.Open != 1 || av.MaxOpen == nil || *av.MaxOpen != 1 || av.Status != chatapi.PresenceOnline {
		t.Errorf("Availability(a1) = %+v, want online, 1 of 1 open", av)
	}

	tests := []struct {
		name    string
		as      auth.Principal
		subject string
		args    any
		want    rpc.Code
	}{
		{"presence by a supervisor", supervisor, chatapi.PresenceSubject, chatapi.PresenceArgs{Status: "away"}, rpc.CodeForbidden},
		{"presence by a visitor", visitor, chatapi.PresenceSubject, chatapi.PresenceArgs{Status: "away"}, rpc.CodeForbidden},
		{"unknown presence", agent, chatapi.PresenceSubject, chatapi.PresenceArgs{Status: "busy"}, rpc.CodeInvalid},
		{"capacity by an agent", agent, chatapi.CapacitySubject, chatapi.CapacityArgs{Agent: agent.ID, MaxOpen: ptr(9)}, rpc.CodeForbidden},
		{"capacity too large", admin, chatapi.CapacitySubject, chatapi.CapacityArgs{Agent: agent.ID, MaxOpen: ptr(chatapi.MaxCapacity + 1)}, rpc.CodeInvalid},
		{"capacity of no agent", admin, chatapi.CapacitySubject, chatapi.CapacityArgs{Agent: "a.b", MaxOpen: ptr(1)}, rpc.CodeInvalid},
		{"availability of another agent", agent2, chatapi.AvailabilitySubject, chatapi.AgentArgs{Agent: agent.ID}, rpc.CodeForbidden},
		{"availability by an analyst", analyst, chatapi.AvailabilitySubject, chatapi.AgentArgs{Agent: agent.ID}, rpc.CodeForbidden},
		{"override by an agent", agent, chatapi.AssignSubject, chatapi.AssignArgs{Conversation: held, Agent: agent.ID, Override: true}, rpc.CodeForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.call(tt.as, tt.subject, tt.args, nil); rpc.CodeOf(err) != tt.want {
				t.Errorf("%s = %v, want %s", tt.subject, err, tt.want)
			}
		})
	}
}
