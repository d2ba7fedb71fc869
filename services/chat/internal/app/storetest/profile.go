package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/services/chat/internal/app"
)

// ProfileStore runs the conformance suite of app.ProfileStore against the
// stores open returns, a new empty one for each test.
func ProfileStore(t *testing.T, open func(t *testing.T) app.ProfileStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s app.ProfileStore)
	}{
		{"LoadsTheLatestOfEach", loadsTheLatestOfEach},
		{"RemoveLeavesNone", removeLeavesNone},
		{"VisitorsNamesEachOnce", visitorsNamesEachOnce},
		{"VisitorsNamesManyOnce", visitorsNamesManyOnce},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

func loadProfiles(t *testing.T, s app.ProfileStore, tenant string, visitors ...string) map[string]string {
	t.Helper()
	got, err := s.Load(t.Context(), tenant, visitors)
	if err != nil {
		t.Fatalf("Load(%v) = %v", visitors, err)
	}
	out := make(map[string]string, len(got))
	for v, b := range got {
		out[v] = string(b)
	}
	return out
}

func mustSave(t *testing.T, s app.ProfileStore, tenant, visitor, sealed string) {
	t.Helper()
	if err := s.Save(t.Context(), tenant, visitor, []byte(sealed)); err != nil {
		t.Fatalf("Save(%s) = %v", visitor, err)
	}
}

// loadsTheLatestOfEach: Load answers the last version saved of each
// visitor asked for that has one, of the tenant asked for only.
func loadsTheLatestOfEach(t *testing.T, s app.ProfileStore) {
	mustSave(t, s, tenant, "v1", "one")
	mustSave(t, s, tenant, "v2", "two")
	mustSave(t, s, tenant, "v1", "one, changed")
	mustSave(t, s, "other", "v3", "elsewhere")
	want := map[string]string{"v1": "one, changed", "v2": "two"}
	if diff := cmp.Diff(want, loadProfiles(t, s, tenant, "v1", "v2", "v3", "none")); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}
	if got := loadProfiles(t, s, tenant, "none"); len(got) != 0 {
		t.Errorf("Load(a visitor without a profile) = %v, want none", got)
	}
}

// removeLeavesNone: after Remove the visitor has no profile, others keep
// theirs, and removing again is no error.
func removeLeavesNone(t *testing.T, s app.ProfileStore) {
	mustSave(t, s, tenant, "v1", "one")
	mustSave(t, s, tenant, "v1", "one, changed")
	mustSave(t, s, tenant, "v2", "two")
	for range 2 {
		if err := s.Remove(t.Context(), tenant, "v1"); err != nil {
			t.Fatalf("Remove(v1) = %v", err)
		}
	}
	if diff := cmp.Diff(map[string]string{"v2": "two"}, loadProfiles(t, s, tenant, "v1", "v2")); diff != "" {
		t.Errorf("Load after Remove mismatch (-want +got):\n%s", diff)
	}
	mustSave(t, s, tenant, "v1", "again")
	if got := loadProfiles(t, s, tenant, "v1"); got["v1"] != "again" {
		t.Errorf("Load after saving anew = %v, want again", got)
	}
}

// visitorsNamesEachOnce: Visitors names each visitor with a profile once,
// of every tenant, however many versions were saved, and not one whose
// profile was removed; fn's error stops it and is returned as is, not
// wrapped: a caller's stop is no failure of the store.
func visitorsNamesEachOnce(t *testing.T, s app.ProfileStore) {
	mustSave(t, s, tenant, "v1", "one")
	mustSave(t, s, tenant, "v1", "one, changed")
	mustSave(t, s, tenant, "v2", "two")
	mustSave(t, s, "other", "v3", "elsewhere")
	if err := s.Remove(t.Context(), tenant, "v2"); err != nil {
		t.Fatalf("Remove(v2) = %v", err)
	}
	if diff := cmp.Diff([]string{tenant + "/v1", "other/v3"}, visitorsIn(t, s)); diff != "" {
		t.Errorf("Visitors() mismatch (-want +got):\n%s", diff)
	}
	stop := errors.New("stop")
	calls := 0
	err := s.Visitors(t.Context(), func(string, string) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || err != stop || calls != 1 {
		t.Errorf("Visitors(fn failing) = %v after %d calls, want fn's error as is after 1", err, calls)
	}
}

// visitorsNamesManyOnce: Visitors names each of more visitors than a store
// reads at once (jetstream's page) once, past the gaps removed ones leave.
func visitorsNamesManyOnce(t *testing.T, s app.ProfileStore) {
	var want []string
	for i := range 420 {
		v := fmt.Sprintf("v%03d", i)
		mustSave(t, s, tenant, v, "profile")
		if i%3 == 0 {
			if err := s.Remove(t.Context(), tenant, v); err != nil {
				t.Fatalf("Remove(%s) = %v", v, err)
			}
			continue
		}
		want = append(want, tenant+"/"+v)
	}
	if diff := cmp.Diff(want, visitorsIn(t, s)); diff != "" {
		t.Errorf("Visitors() mismatch (-want +got):\n%s", diff)
	}
}

// visitorsIn returns what Visitors names, as <tenant>/<visitor>, sorted.
func visitorsIn(t *testing.T, s app.ProfileStore) []string {
	t.Helper()
	var got []string
	err := s.Visitors(t.Context(), func(tenant, visitor string) error {
		got = append(got, tenant+"/"+visitor)
		return nil
	})
	if err != nil {
		t.Fatalf("Visitors() = %v", err)
	}
	slices.Sort(got)
	return got
}
