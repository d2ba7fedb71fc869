package app_test

import (
	"errors"
	"testing"

	"github.com/parley-chat/parley/pkg/chatapi"

	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// TestProfileShownWithConversations sets a visitor's profile through one
// instance and reads it through another wherever staff read about the
// visitor's conversations — the inbox, the summary, the transcript — and in
// the visitor's export; removed, or once the visitor is erased, it is shown
// nowhere and gone from the store.
func TestProfileShownWithConversations(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	v := visitorN(1)
	conv := a.open(t, v, "hello")
	if _, err := a.GetProfile(t.Context(), v, struct{}{}); !errors.Is(err, conversation.ErrNoProfile) {
		t.Errorf("GetProfile() before any = %v, want ErrNoProfile", err)
	}
	if _, err := a.PutProfile(t.Context(), agent, chatapi.ProfileArgs{Name: "Alice"}); !errors.Is(err, conversation.ErrForbidden) {
		t.Errorf("PutProfile(as an agent) = %v, want ErrForbidden", err)
	}
	if _, err := a.PutProfile(t.Context(), v, chatapi.ProfileArgs{Name: "Ada", Email: "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	b.follow(t)
	shown := func(want string) {
		t.Helper()
		name := func(p *chatapi.Profile) string {
			if p == nil {
				return ""
			}
			return p.Name
		}
		list, err := b.List(t.Context(), agent, chatapi.ListArgs{})
		if err != nil || len(list.Conversations) != 1 {
			t.Fatalf("List() = %+v, %v; want the conversation", list, err)
		}
		sum, err := b.Get(t.Context(), supervisor, chatapi.ConversationArgs{Conversation: conv})
		if err != nil {
			t.Fatal(err)
		}
		page, err := b.messages(t, supervisor, chatapi.MessagesArgs{Conversation: conv})
		if err != nil {
			t.Fatal(err)
		}
		for what, got := range map[string]*chatapi.Profile{
			"inbox": list.Conversations[0].VisitorProfile, "summary": sum.VisitorProfile, "transcript": page.VisitorProfile,
		} {
			if name(got) != want {
				t.Errorf("%s shows the profile %+v, want the name %q", what, got, want)
			}
		}
	}
	shown("Ada")
	if _, err := b.PutProfile(t.Context(), v, chatapi.ProfileArgs{Name: "Ada Lovelace"}); err != nil {
		t.Fatal(err)
	}
	shown("Ada Lovelace")
	exp, err := a.export(t, v, chatapi.ExportArgs{Visitor: v.ID})
	if err != nil {
		t.Fatal(err)
	}
	if exp.Profile == nil || exp.Profile.Name != "Ada Lovelace" || exp.Profile.Email != "" {
		t.Errorf("export profile = %+v, want the changed one, without the e-mail", exp.Profile)
	}

	if _, err := a.DeleteProfile(t.Context(), v, struct{}{}); err != nil {
		t.Fatal(err)
	}
	shown("")
	if _, err := a.PutProfile(t.Context(), v, chatapi.ProfileArgs{Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	// A visitor erased while no instance heard of it: the profile cannot be
	// read, and the next read removes it.
	w.keys.erase(tenant, v.ID)
	shown("")
	if got, _ := w.profiles.Load(t.Context(), tenant, []string{v.ID}); len(got) != 0 {
		t.Errorf("an erased visitor's profile is still stored")
	}
}
