package audit_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
)

func chain(t *testing.T, n int) []audit.Entry {
	t.Helper()
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	var entries []audit.Entry
	prev := ""
	for i := range n {
		e := audit.Entry{
			At:     at.Add(time.Duration(i) * time.Second),
			Tenant: "demo",
			Actor:  audit.Actor{Role: auth.RoleSupervisor, ID: "s1"},
			Action: audit.ActionTranscriptRead,
			Target: "conversation:c" + string(rune('a'+i)),
		}.Link(prev)
		prev = e.Hash
		entries = append(entries, e)
	}
	return entries
}

func TestVerify(t *testing.T) {
	const n = 5
	tests := []struct {
		name      string
		tamper    func([]audit.Entry) []audit.Entry
		wantIndex int // -1: the chain verifies
		wantText  string
	}{
		{"intact", func(e []audit.Entry) []audit.Entry { return e }, -1, ""},
		{"empty", func([]audit.Entry) []audit.Entry { return nil }, -1, ""},
		{"target changed", func(e []audit.Entry) []audit.Entry {
			e[2].Target = "conversation:other"
			return e
		}, 2, "was changed"},
		{"actor changed", func(e []audit.Entry) []audit.Entry {
			e[1].Actor.ID = "s2"
			return e
		}, 1, "was changed"},
		{"time changed", func(e []audit.Entry) []audit.Entry {
			e[4].At = e[4].At.Add(time.Nanosecond)
			return e
		}, 4, "was changed"},
		{"changed and rehashed", func(e []audit.Entry) []audit.Entry {
			e[2].Target = "conversation:other"
			e[2].Hash = e[2].ComputeHash()
			return e
		}, 3, "does not link"},
		{"middle removed", func(e []audit.Entry) []audit.Entry { return slices.Delete(e, 2, 3) }, 2, "does not link"},
		{"first removed", func(e []audit.Entry) []audit.Entry { return e[1:] }, 0, "does not start"},
		{"reordered", func(e []audit.Entry) []audit.Entry {
			e[1], e[2] = e[2], e[1]
			return e
		}, 1, "does not link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := audit.Verify(tt.tamper(chain(t, n)))
			if tt.wantIndex < 0 {
				if err != nil {
					t.Fatalf("Verify() = %v, want nil", err)
				}
				return
			}
			var ce *audit.ChainError
			if !errors.As(err, &ce) || !errors.Is(err, audit.ErrBroken) {
				t.Fatalf("Verify() = %v, want a *ChainError wrapping ErrBroken", err)
			}
			if ce.Index != tt.wantIndex || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Verify() = %v (index %d), want index %d and %q", err, ce.Index, tt.wantIndex, tt.wantText)
			}
		})
	}
}

func TestHashSurvivesJSON(t *testing.T) {
	entries := chain(t, 3)
	b, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	var got []audit.Entry
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := audit.Verify(got); err != nil {
		t.Errorf("Verify(after JSON) = %v, want nil", err)
	}
}

// TestHashSeparatesFields shows that moving characters from one field to
// the next changes the hash: the encoding is not a plain concatenation.
func TestHashSeparatesFields(t *testing.T) {
	a := audit.Entry{Tenant: "demo", Action: "export", Target: "subject:x"}
	b := audit.Entry{Tenant: "demo", Action: "exportsubject:", Target: "x"}
	if a.ComputeHash() == b.ComputeHash() {
		t.Error("ComputeHash() equal for entries whose fields differ only in where they split")
	}
}
