package live

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
)

// TestRouteShows checks who may see an event by its stamp (a bot never),
// that a hand-off reaches every agent, and that an event stored before
// stamps reaches no agent but for an opening.
func TestRouteShows(t *testing.T) {
	alice := auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}
	bob := auth.Principal{Tenant: "demo", ID: "bob", Role: auth.RoleAgent}
	carol := auth.Principal{Tenant: "demo", ID: "carol", Role: auth.RoleAgent}
	sue := auth.Principal{Tenant: "demo", ID: "sue", Role: auth.RoleSupervisor}
	v1 := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	v2 := auth.Principal{Tenant: "demo", ID: "v2", Role: auth.RoleVisitor}
	anna := auth.Principal{Tenant: "demo", ID: "anna", Role: auth.RoleAnalyst}
	faq := auth.Principal{Tenant: "demo", ID: "faq", Role: auth.RoleBot}
	tests := []struct {
		name  string
		typ   event.Type
		stamp *event.Stamp
		want  []auth.Principal
	}{
		{"unassigned", event.MessagePosted, &event.Stamp{}, []auth.Principal{alice, bob, carol, sue, v1}},
		{"assigned", event.MessagePosted, &event.Stamp{Assignee: "alice"}, []auth.Principal{alice, sue, v1}},
		{"taken", event.ConversationAssigned, &event.Stamp{Assignee: "alice"}, []auth.Principal{alice, bob, carol, sue, v1}},
		{"reassigned", event.ConversationAssigned, &event.Stamp{Assignee: "bob", PreviousAssignee: "alice"}, []auth.Principal{alice, bob, sue, v1}},
		{"closed", event.ConversationClosed, &event.Stamp{Assignee: "bob"}, []auth.Principal{bob, sue, v1}},
		{"assigned to a bot", event.ConversationAssigned, &event.Stamp{Assignee: "bot:faq", PreviousAssignee: "alice"}, []auth.Principal{alice, sue, v1}},
		{"a bot's conversation", event.MessagePosted, &event.Stamp{Assignee: "bot:faq"}, []auth.Principal{sue, v1}},
		{"handed off", event.ConversationHandedOff, &event.Stamp{PreviousAssignee: "bot:faq"}, []auth.Principal{alice, bob, carol, sue, v1}},
		{"opened before stamps", event.ConversationOpened, nil, []auth.Principal{alice, bob, carol, sue, v1}},
		{"message before stamps", event.MessagePosted, nil, []auth.Principal{sue, v1}},
		{"assigned before stamps", event.ConversationAssigned, nil, []auth.Principal{sue, v1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := routeOf(tt.typ, tt.stamp)
			var got []auth.Principal
			for _, p := range []auth.Principal{alice, bob, carol, sue, v1, v2, anna, faq} {
				if rt.shows(p, "v1") {
					got = append(got, p)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("routeOf(%s, %+v) shows (-want +got):\n%s", tt.typ, tt.stamp, diff)
			}
		})
	}
}
