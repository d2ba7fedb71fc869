package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/parley-chat/parley/services/chat/internal/app"
)

// View runs the conformance suite of app.View against the views open
// returns, a new empty one for each test.
func View(t *testing.T, open func(t *testing.T) app.View) {
	tests := []struct {
		name string
		fn   func(t *testing.T, v app.View)
	}{
		{"OpenEntriesLoadAtStart", openEntriesLoad},
		{"ClosedEntryReplacesOpen", closedReplacesOpen},
		{"ClosedListedByTenantAndVisitor", closedListed},
		{"EntriesNeverGoBack", entriesNeverGoBack},
		{"RewrittenOverTheRevisionRead", rewrittenOverRevision},
		{"RemoveDeletesEveryEntry", removeDeletes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

func entry(tenant, visitor, id string, version uint64, open bool) app.ViewEntry {
	return app.ViewEntry{Tenant: tenant, ID: id, Visitor: visitor, Version: version, Open: open,
		State: json.RawMessage(fmt.Sprintf(`{"v":%d}`, version))}
}

func mustPut(t *testing.T, v app.View, e app.ViewEntry) uint64 {
	t.Helper()
	rev, err := v.Put(t.Context(), e)
	if err != nil {
		t.Fatalf("Put(%s at %d) = %v", e.ID, e.Version, err)
	}
	if rev == 0 {
		t.Fatalf("Put(%s at %d) = revision 0", e.ID, e.Version)
	}
	return rev
}

func load(t *testing.T, v app.View) ([]string, uint64) {
	t.Helper()
	var ids []string
	applied, err := v.Load(t.Context(), func(e app.ViewEntry) error {
		if !e.Open {
			return fmt.Errorf("Load handed closed entry %s", e.ID)
		}
		ids = append(ids, e.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids, applied
}

func get(t *testing.T, v app.View, tenant, visitor, id string) (app.ViewEntry, bool) {
	t.Helper()
	e, ok, err := v.Get(t.Context(), tenant, visitor, id)
	if err != nil {
		t.Fatal(err)
	}
	return e, ok
}

func closed(t *testing.T, v app.View, tenant, visitor string) []app.ClosedKey {
	t.Helper()
	var out []app.ClosedKey
	if err := v.Closed(t.Context(), tenant, visitor, func(k app.ClosedKey) error {
		out = append(out, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, func(a, b app.ClosedKey) int {
		return strings.Compare(a.Tenant+"."+a.ID, b.Tenant+"."+b.ID)
	})
	return out
}

// openEntriesLoad: Load hands the open entries and the applied sequence;
// Get reads one back as written.
func openEntriesLoad(t *testing.T, v app.View) {
	mustPut(t, v, entry(tenant, "v1", "c1", 3, true))
	mustPut(t, v, entry(tenant, "v2", "c2", 5, true))
	if err := v.Applied(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	ids, applied := load(t, v)
	if !slices.Equal(ids, []string{"c1", "c2"}) || applied != 5 {
		t.Errorf("Load() = %v, applied %d; want [c1 c2], 5", ids, applied)
	}
	e, ok := get(t, v, tenant, "v1", "c1")
	if !ok || e.Version != 3 || !e.Open || string(e.State) != `{"v":3}` || e.Rev == 0 {
		t.Errorf("Get(c1) = %+v, %v; want version 3, open, its state, a revision", e, ok)
	}
	if _, ok := get(t, v, tenant, "v9", "c1"); ok {
		t.Error("Get(c1 of another visitor) found an entry")
	}
}

// closedReplacesOpen: a closed entry written afresh replaces the open one:
// Load no longer hands it, Get reads the closed one.
func closedReplacesOpen(t *testing.T, v app.View) {
	mustPut(t, v, entry(tenant, "v1", "c1", 3, true))
	mustPut(t, v, entry(tenant, "v1", "c1", 4, false))
	if ids, _ := load(t, v); len(ids) != 0 {
		t.Errorf("Load() after close = %v, want none", ids)
	}
	e, ok := get(t, v, tenant, "v1", "c1")
	if !ok || e.Version != 4 || e.Open {
		t.Errorf("Get(c1) after close = %+v, %v; want version 4, closed", e, ok)
	}
}

// closedListed: Closed lists the closed conversations of a tenant, of one
// visitor, or of every tenant, and never an open one.
func closedListed(t *testing.T, v app.View) {
	mustPut(t, v, entry(tenant, "v1", "c1", 1, false))
	mustPut(t, v, entry(tenant, "v1", "c2", 2, false))
	mustPut(t, v, entry(tenant, "v2", "c3", 3, false))
	mustPut(t, v, entry(tenant, "v2", "c4", 4, true))
	mustPut(t, v, entry("other", "v1", "c5", 5, false))
	want := []app.ClosedKey{{Tenant: tenant, Visitor: "v1", ID: "c1"}, {Tenant: tenant, Visitor: "v1", ID: "c2"}, {Tenant: tenant, Visitor: "v2", ID: "c3"}}
	if got := closed(t, v, tenant, ""); !slices.Equal(got, want) {
		t.Errorf("Closed(tenant) = %v, want %v", got, want)
	}
	if got := closed(t, v, tenant, "v1"); !slices.Equal(got, want[:2]) {
		t.Errorf("Closed(tenant, v1) = %v, want %v", got, want[:2])
	}
	all := append(slices.Clone(want), app.ClosedKey{Tenant: "other", Visitor: "v1", ID: "c5"})
	if got := closed(t, v, "", ""); !slices.Equal(got, all) {
		t.Errorf("Closed(every tenant) = %v, want %v", got, all)
	}
}

// entriesNeverGoBack: a write of an older version stores nothing and
// answers the revision held; a write over a revision no longer the last
// still stores a newer version.
func entriesNeverGoBack(t *testing.T, v app.View) {
	first := mustPut(t, v, entry(tenant, "v1", "c1", 3, true))
	newer := entry(tenant, "v1", "c1", 7, true)
	newer.Rev = first
	held := mustPut(t, v, newer)
	older := entry(tenant, "v1", "c1", 5, true)
	older.Rev = first
	if rev := mustPut(t, v, older); rev != held {
		t.Errorf("Put(older) = revision %d, want the one held, %d", rev, held)
	}
	if e, _ := get(t, v, tenant, "v1", "c1"); e.Version != 7 {
		t.Errorf("Get() after an older write = version %d, want 7", e.Version)
	}
	newest := entry(tenant, "v1", "c1", 9, true)
	newest.Rev = first // stale
	mustPut(t, v, newest)
	if e, _ := get(t, v, tenant, "v1", "c1"); e.Version != 9 {
		t.Errorf("Get() after a newer write over a stale revision = version %d, want 9", e.Version)
	}
}

// rewrittenOverRevision: an entry is rewritten at its version over the
// revision read, as an erasure does; a write at that version over a
// revision no longer the last stores nothing.
func rewrittenOverRevision(t *testing.T, v app.View) {
	rev := mustPut(t, v, entry(tenant, "v1", "c1", 3, false))
	erased := entry(tenant, "v1", "c1", 3, false)
	erased.State, erased.Rev = json.RawMessage(`{"erased":true}`), rev
	mustPut(t, v, erased)
	stale := entry(tenant, "v1", "c1", 3, false)
	stale.Rev = rev
	mustPut(t, v, stale)
	if e, _ := get(t, v, tenant, "v1", "c1"); string(e.State) != `{"erased":true}` {
		t.Errorf("Get() after a rewrite and a stale one = state %s, want the rewrite's", e.State)
	}
}

// removeDeletes: Remove deletes the conversation's entries, open and
// closed, and no other.
func removeDeletes(t *testing.T, v app.View) {
	ctx := context.Background()
	mustPut(t, v, entry(tenant, "v1", "c1", 3, false))
	mustPut(t, v, entry(tenant, "v2", "c2", 4, true))
	if err := v.Remove(ctx, tenant, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := v.Remove(ctx, tenant, "none"); err != nil {
		t.Errorf("Remove(conversation without entries) = %v", err)
	}
	if _, ok := get(t, v, tenant, "v1", "c1"); ok {
		t.Error("Get(c1) after Remove found an entry")
	}
	if got := closed(t, v, tenant, ""); len(got) != 0 {
		t.Errorf("Closed() after Remove = %v, want none", got)
	}
	if ids, _ := load(t, v); !slices.Equal(ids, []string{"c2"}) {
		t.Errorf("Load() after Remove(c1) = %v, want [c2]", ids)
	}
}
