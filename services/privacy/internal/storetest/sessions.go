package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// Sessions runs the session store's suite against the store open makes:
// a token names its family and is stored once; a family is written only
// at the revision it was read at (0: new); a person's families are listed
// until deleted; a deleted family and its tokens are gone.
func Sessions(t *testing.T, open func(t *testing.T) app.SessionStore) {
	s := open(t)
	ctx := t.Context()
	alice := auth.Principal{Tenant: "t1", ID: "v1", Role: auth.RoleVisitor}

	if _, err := s.Token(ctx, "h0"); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("Token(unknown) = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Family(ctx, "f0"); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("Family(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.PutToken(ctx, "h1", "f1", time.Hour); err != nil {
		t.Fatalf("PutToken() = %v", err)
	}
	if fam, err := s.Token(ctx, "h1"); err != nil || fam != "f1" {
		t.Errorf("Token(h1) = %q, %v; want f1", fam, err)
	}
	if err := s.PutToken(ctx, "h1", "f2", time.Hour); err == nil {
		t.Error("PutToken() of a token stored already = nil, want an error")
	}

	f := app.Family{ID: "f1", Principal: alice, Current: "h1", Expires: time.Unix(1_700_000_000, 0).UTC()}
	if err := s.PutFamily(ctx, f, 0, time.Hour); err != nil {
		t.Fatalf("PutFamily(new) = %v", err)
	}
	if err := s.PutFamily(ctx, f, 0, time.Hour); !errors.Is(err, app.ErrConflict) {
		t.Errorf("PutFamily(new) again = %v, want ErrConflict", err)
	}
	got, rev, err := s.Family(ctx, "f1")
	if err != nil {
		t.Fatalf("Family(f1) = %v", err)
	}
	if diff := cmp.Diff(f, got); diff != "" {
		t.Errorf("Family(f1) (-want +got):\n%s", diff)
	}
	f.Current = "h2"
	if err := s.PutFamily(ctx, f, rev, time.Hour); err != nil {
		t.Fatalf("PutFamily(at its revision) = %v", err)
	}
	if err := s.PutFamily(ctx, f, rev, time.Hour); !errors.Is(err, app.ErrConflict) {
		t.Errorf("PutFamily(at a revision gone by) = %v, want ErrConflict", err)
	}
	if got, _, _ := s.Family(ctx, "f1"); got.Current != "h2" {
		t.Errorf("Family(f1).Current = %q, want h2", got.Current)
	}

	other := app.Family{ID: "f2", Principal: alice, Current: "h3", Expires: f.Expires}
	if err := s.PutFamily(ctx, other, 0, time.Hour); err != nil {
		t.Fatalf("PutFamily(f2) = %v", err)
	}
	ids, err := s.Families(ctx, "t1", "v1")
	slices.Sort(ids)
	if err != nil || !slices.Equal(ids, []string{"f1", "f2"}) {
		t.Errorf("Families(v1) = %v, %v; want [f1 f2]", ids, err)
	}
	if ids, err := s.Families(ctx, "t1", "v2"); err != nil || len(ids) != 0 {
		t.Errorf("Families(v2) = %v, %v; want none", ids, err)
	}

	if err := s.DeleteFamily(ctx, "t1", "v1", "f1"); err != nil {
		t.Fatalf("DeleteFamily(f1) = %v", err)
	}
	if _, err := s.Token(ctx, "h1"); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("Token(h1) of a deleted family = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Family(ctx, "f1"); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("Family(f1) deleted = %v, want ErrNotFound", err)
	}
	if ids, err := s.Families(ctx, "t1", "v1"); err != nil || !slices.Equal(ids, []string{"f2"}) {
		t.Errorf("Families(v1) after a deletion = %v, %v; want [f2]", ids, err)
	}
}
