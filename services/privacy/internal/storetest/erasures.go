package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/audit"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// cmpEqualTimes compares times by the instant, not the location a store
// gives back.
var cmpEqualTimes = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

// OpenErasureRecords returns empty erasure records of their own.
type OpenErasureRecords func(t *testing.T) app.ErasureRecords

// ErasureRecords runs the erasure records' suite against the records open
// makes.
func ErasureRecords(t *testing.T, open OpenErasureRecords) {
	ctx := t.Context()
	r := open(t)
	ref := func(id, person string) app.ErasureRef {
		return app.ErasureRef{ID: id, Tenant: "demo", Person: person, By: audit.Actor{Role: "visitor", ID: person},
			RequestedAt: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	}
	pending := func(want ...app.ErasureRef) {
		t.Helper()
		got, err := r.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpEqualTimes); diff != "" {
			t.Errorf("Pending() (-want +got):\n%s", diff)
		}
	}
	if _, ok, err := r.Find(ctx, "e1"); ok || err != nil {
		t.Fatalf("Find() of an erasure never recorded = %v, %v; want none", ok, err)
	}
	if done, err := r.Complete(ctx); done || err != nil {
		t.Fatalf("Complete() of new records = %v, %v; want false", done, err)
	}
	pending()

	e1, e2 := ref("e1", "v1"), ref("e2", "v2")
	for _, step := range []struct {
		r       app.ErasureRef
		pending bool
	}{{e1, true}, {e2, false}, {ref("e1", "other"), false}} {
		if err := r.Record(ctx, step.r, step.pending); err != nil {
			t.Fatalf("Record(%+v, %v) = %v", step.r, step.pending, err)
		}
	}
	got, ok, err := r.Find(ctx, "e1")
	if err != nil || !ok {
		t.Fatalf("Find(e1) = %v, %v", ok, err)
	}
	if diff := cmp.Diff(e1, got, cmpEqualTimes); diff != "" {
		t.Errorf("Find(e1), recorded again for another subject, (-want +got):\n%s", diff)
	}
	pending(e1)
	// Done twice, and of one never pending, is no error.
	for _, id := range []string{"e1", "e1", "e2"} {
		if err := r.Done(ctx, id); err != nil {
			t.Fatalf("Done(%s) = %v", id, err)
		}
	}
	pending()
	if _, ok, err := r.Find(ctx, "e1"); !ok || err != nil {
		t.Errorf("Find(e1) once done = %v, %v; want its entry kept", ok, err)
	}
	// Several at once, by id; one marked again once done is pending again.
	e4, e3 := ref("e4", "v4"), ref("e3", "v3")
	for _, e := range []app.ErasureRef{e4, e3, e1} {
		if err := r.Record(ctx, e, true); err != nil {
			t.Fatalf("Record(%+v, true) = %v", e, err)
		}
	}
	pending(e1, e3, e4)
	for _, id := range []string{"e1", "e3", "e4"} {
		if err := r.Done(ctx, id); err != nil {
			t.Fatalf("Done(%s) = %v", id, err)
		}
	}
	pending()
	if err := r.MarkComplete(ctx); err != nil {
		t.Fatal(err)
	}
	if done, err := r.Complete(ctx); !done || err != nil {
		t.Errorf("Complete() once marked = %v, %v; want true", done, err)
	}
}
