package analyticsapi_test

import (
	"strings"
	"testing"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/seal"
)

func TestLengthBucket(t *testing.T) {
	tests := []struct {
		give int
		want string
	}{
		{0, "0-20"}, {20, "0-20"}, {21, "21-100"}, {100, "21-100"}, {101, "101-500"}, {500, "101-500"}, {501, "500+"},
	}
	for _, tt := range tests {
		if got := analyticsapi.LengthBucket(tt.give); got != tt.want {
			t.Errorf("LengthBucket(%d) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestPseudonym(t *testing.T) {
	k1, _ := seal.NewKey()
	k2, _ := seal.NewKey()
	p := analyticsapi.Pseudonym(k1, "visitor-1")
	switch {
	case !analyticsapi.ValidPseudonym(p):
		t.Errorf("Pseudonym() = %q, not a valid pseudonym", p)
	case p != analyticsapi.Pseudonym(k1, "visitor-1"):
		t.Error("Pseudonym() differs for the same key and id")
	case p == analyticsapi.Pseudonym(k2, "visitor-1") || p == analyticsapi.Pseudonym(k1, "visitor-2"):
		t.Error("Pseudonym() is the same for another key or id")
	case strings.Contains(p, "visitor"):
		t.Errorf("Pseudonym() = %q holds the id", p)
	}
	for _, bad := range []string{"", strings.ToUpper(p), p[:63], p + "0", "visitor-1"} {
		if analyticsapi.ValidPseudonym(bad) {
			t.Errorf("ValidPseudonym(%q) = true, want false", bad)
		}
	}
}

func TestFactsID(t *testing.T) {
	a, b := analyticsapi.Fact{ID: "e1:message_posted"}, analyticsapi.Fact{ID: "e2:message_posted"}
	id := analyticsapi.FactsID([]analyticsapi.Fact{a, b})
	switch {
	case id != analyticsapi.FactsID([]analyticsapi.Fact{{ID: a.ID, Tenant: "t"}, b}):
		t.Error("FactsID() differs for the same fact ids")
	case id == analyticsapi.FactsID([]analyticsapi.Fact{b, a}), id == analyticsapi.FactsID([]analyticsapi.Fact{a}):
		t.Error("FactsID() is the same for other facts")
	case id == analyticsapi.FactsID([]analyticsapi.Fact{{ID: "e1:message_postede2:message_posted"}}):
		t.Error("FactsID() does not keep the ids apart")
	case !strings.HasPrefix(id, analyticsapi.KindFacts+":"):
		t.Errorf("FactsID() = %q", id)
	}
}

func TestParseSubject(t *testing.T) {
	if tenant, kind, ok := analyticsapi.ParseSubject(analyticsapi.Subject("acme", analyticsapi.KindFacts)); !ok || tenant != "acme" || kind != analyticsapi.KindFacts {
		t.Errorf("ParseSubject(Subject(acme, facts)) = %q, %q, %v", tenant, kind, ok)
	}
	for _, bad := range []string{"", "analytics", "analytics.acme", "analytics..facts", "analytics.acme.", "analytics.acme.facts.x", "chat.acme.facts"} {
		if _, _, ok := analyticsapi.ParseSubject(bad); ok {
			t.Errorf("ParseSubject(%q) ok, want not", bad)
		}
	}
}
