package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/privacyapi"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// Integrations runs the integration store's suite against the store open
// makes: a record is written only at the revision it was read at (0: new,
// or deleted), read back as written, listed per tenant or all in order,
// and gone once deleted.
func Integrations(t *testing.T, open func(t *testing.T) app.IntegrationStore) {
	s := open(t)
	ctx := t.Context()
	at := time.Unix(1_700_000_000, 0).UTC()
	rec := func(tenant, id string) privacyapi.Integration {
		return privacyapi.Integration{Tenant: tenant, ID: id, Kind: privacyapi.KindBot, Name: "FAQ " + id,
			WebhookURL: "https://bots.example/" + id, SealedSecret: []byte("sealed-" + id), KEKID: "k1", CreatedAt: at, UpdatedAt: at}
	}

	if _, _, err := s.Get(ctx, "t1", "faq"); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if got, err := s.List(ctx, ""); err != nil || len(got) != 0 {
		t.Errorf("List(all) of an empty store = %v, %v; want none", got, err)
	}
	faq := rec("t1", "faq")
	if err := s.Put(ctx, faq, 0); err != nil {
		t.Fatalf("Put(new) = %v", err)
	}
	if err := s.Put(ctx, faq, 0); !errors.Is(err, app.ErrConflict) {
		t.Errorf("Put(new) again = %v, want ErrConflict", err)
	}
	got, rev, err := s.Get(ctx, "t1", "faq")
	if err != nil {
		t.Fatalf("Get(faq) = %v", err)
	}
	if diff := cmp.Diff(faq, got); diff != "" {
		t.Errorf("Get(faq) (-want +got):\n%s", diff)
	}
	faq.Name = "FAQ bot"
	if err := s.Put(ctx, faq, rev); err != nil {
		t.Fatalf("Put(at its revision) = %v", err)
	}
	if err := s.Put(ctx, faq, rev); !errors.Is(err, app.ErrConflict) {
		t.Errorf("Put(at a revision gone by) = %v, want ErrConflict", err)
	}

	for _, r := range []privacyapi.Integration{rec("t2", "crm"), rec("t1", "a")} {
		if err := s.Put(ctx, r, 0); err != nil {
			t.Fatalf("Put(%s/%s) = %v", r.Tenant, r.ID, err)
		}
	}
	ids := func(recs []privacyapi.Integration) []string {
		var out []string
		for _, r := range recs {
			out = append(out, r.Tenant+"/"+r.ID)
		}
		return out
	}
	all, err := s.List(ctx, "")
	if diff := cmp.Diff([]string{"t1/a", "t1/faq", "t2/crm"}, ids(all)); err != nil || diff != "" {
		t.Errorf("List(all) = %v (-want +got):\n%s", err, diff)
	}
	one, err := s.List(ctx, "t1")
	if diff := cmp.Diff([]string{"t1/a", "t1/faq"}, ids(one)); err != nil || diff != "" {
		t.Errorf("List(t1) = %v (-want +got):\n%s", err, diff)
	}
	if len(one) == 2 && one[1].Name != "FAQ bot" {
		t.Errorf("List(t1) holds faq named %q, want the name last put", one[1].Name)
	}

	if err := s.Delete(ctx, "t1", "faq"); err != nil {
		t.Fatalf("Delete(faq) = %v", err)
	}
	if err := s.Delete(ctx, "t1", "faq"); err != nil {
		t.Errorf("Delete(faq) again = %v, want nil", err)
	}
	if _, _, err := s.Get(ctx, "t1", "faq"); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("Get(deleted) = %v, want ErrNotFound", err)
	}
	if one, err := s.List(ctx, "t1"); err != nil || len(one) != 1 {
		t.Errorf("List(t1) after the delete = %v, %v; want a only", ids(one), err)
	}
	if err := s.Put(ctx, rec("t1", "faq"), 0); err != nil {
		t.Errorf("Put(new) after the delete = %v, want nil", err)
	}
}
