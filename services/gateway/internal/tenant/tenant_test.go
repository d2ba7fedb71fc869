package tenant_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/gateway/internal/tenant"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		give tenant.Tenant
		want error
	}{
		{"ok", tenant.Tenant{ID: "acme-1", Name: "Acme"}, nil},
		{"longest id", tenant.Tenant{ID: strings.Repeat("a", 63), Name: "A"}, nil},
		{"id too long", tenant.Tenant{ID: strings.Repeat("a", 64), Name: "A"}, tenant.ErrInvalid},
		{"empty id", tenant.Tenant{ID: "", Name: "A"}, tenant.ErrInvalid},
		{"upper case", tenant.Tenant{ID: "Acme", Name: "A"}, tenant.ErrInvalid},
		{"operator tenant", tenant.Tenant{ID: "*", Name: "A"}, tenant.ErrInvalid},
		{"dot", tenant.Tenant{ID: "a.b", Name: "A"}, tenant.ErrInvalid},
		{"blank name", tenant.Tenant{ID: "a", Name: " "}, tenant.ErrInvalid},
		{"200 characters", tenant.Tenant{ID: "a", Name: strings.Repeat("é", 200)}, nil},
		{"201 characters", tenant.Tenant{ID: "a", Name: strings.Repeat("é", 201)}, tenant.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give.Validate(); !errors.Is(err, tt.want) {
				t.Errorf("Validate(%+v) = %v, want %v", tt.give, err, tt.want)
			}
		})
	}
}

func TestRegistryAcrossInstances(t *testing.T) {
	srv := natstest.Start(t, "")
	_, js1 := natstest.Connect(t, srv)
	_, js2 := natstest.Connect(t, srv)
	r1, err := tenant.Open(t.Context(), js1, stream.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r1.Close() })

	created, err := r1.Put(t.Context(), tenant.Tenant{ID: "acme", Name: "Acme"})
	if err != nil || !created {
		t.Fatalf("Put(acme) = %v, %v; want true, nil", created, err)
	}
	if !r1.Exists("acme") {
		t.Error("Exists(acme) = false right after Put, want true")
	}
	if _, err := r1.Put(t.Context(), tenant.Tenant{ID: "Bad", Name: "x"}); !errors.Is(err, tenant.ErrInvalid) {
		t.Errorf("Put(Bad) error = %v, want %v", err, tenant.ErrInvalid)
	}

	// A second instance loads what exists, then follows changes.
	r2, err := tenant.Open(t.Context(), js2, stream.Options{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r2.Close() })
	if !r2.Exists("acme") {
		t.Error("second registry: Exists(acme) = false after Open, want true")
	}
	if err := r2.Ensure(t.Context(), tenant.Tenant{ID: "acme", Name: "Other"}); err != nil {
		t.Fatal(err)
	}
	created, err = r2.Put(t.Context(), tenant.Tenant{ID: "acme", Name: "Acme Inc"})
	if err != nil || created {
		t.Fatalf("Put(acme) again = %v, %v; want false, nil", created, err)
	}
	if err := r2.Ensure(t.Context(), tenant.Tenant{ID: "demo", Name: "Demo"}); err != nil {
		t.Fatal(err)
	}
	want := []tenant.Tenant{{ID: "acme", Name: "Acme Inc"}, {ID: "demo", Name: "Demo"}}
	natstest.Eventually(t, 5*time.Second, "first registry following the second's changes", func() error {
		if got := r1.List(); !cmp.Equal(want, got) {
			return fmt.Errorf("first registry List() = %v, want %v", got, want)
		}
		return nil
	})
	if diff := cmp.Diff(want, r2.List()); diff != "" {
		t.Errorf("second registry List() mismatch (-want +got):\n%s", diff)
	}
}
