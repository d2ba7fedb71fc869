package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// OpenAudit returns an empty audit log and checkpoint store of their own.
type OpenAudit func(t *testing.T) (app.AuditLog, app.CheckpointStore)

// Audit runs the suite of the audit log and the checkpoint store against
// the stores open makes.
func Audit(t *testing.T, open OpenAudit) {
	tests := []struct {
		name string
		run  func(t *testing.T, l app.AuditLog, c app.CheckpointStore)
	}{
		{"ChainAppendsBehindItsHead", chainAppends},
		{"ListPages", listPages},
		{"CheckpointNeverGoesBack", checkpointNeverGoesBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, c := open(t)
			tt.run(t, l, c)
		})
	}
}

func entry(tenant, prev string, n int) audit.Entry {
	return audit.Entry{
		At:     time.Unix(1_700_000_000+int64(n), 0).UTC(),
		Tenant: tenant,
		Actor:  audit.Actor{Role: auth.RoleAdmin, ID: "a-1"},
		Action: "test.act",
		Target: "target",
	}.Link(prev)
}

// appendChain appends n entries to tenant's chain and returns them.
func appendChain(t *testing.T, l app.AuditLog, tenant string, n int) []audit.Entry {
	t.Helper()
	var (
		entries []audit.Entry
		head    app.AuditHead
	)
	for i := range n {
		e := entry(tenant, head.Hash, i)
		seq, err := l.Append(t.Context(), e, head.Seq)
		if err != nil {
			t.Fatalf("Append() = %v", err)
		}
		head = app.AuditHead{Seq: seq, Hash: e.Hash}
		entries = append(entries, e)
	}
	return entries
}

func chainAppends(t *testing.T, l app.AuditLog, _ app.CheckpointStore) {
	ctx := t.Context()
	if h, err := l.Head(ctx, "demo"); err != nil || h != (app.AuditHead{}) {
		t.Fatalf("Head() of an empty chain = %+v, %v; want the zero head", h, err)
	}
	entries := appendChain(t, l, "demo", 2)
	appendChain(t, l, "other", 1)
	h, err := l.Head(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if h.Count != 2 || h.Hash != entries[1].Hash {
		t.Errorf("Head() = %+v, want 2 entries ending in the second's hash", h)
	}
	// A writer that read an older head loses.
	if _, err := l.Append(ctx, entry("demo", entries[0].Hash, 9), 0); !errors.Is(err, app.ErrConflict) {
		t.Errorf("Append() behind the head = %v, want ErrConflict", err)
	}
	if h2, _ := l.Head(ctx, "demo"); h2 != h {
		t.Errorf("Head() after a refused append = %+v, want %+v", h2, h)
	}
}

func listPages(t *testing.T, l app.AuditLog, _ app.CheckpointStore) {
	ctx := t.Context()
	if got, more, err := l.List(ctx, "demo", time.Time{}, 10); err != nil || len(got) != 0 || more {
		t.Errorf("List() of an empty chain = %d entries, more %v, %v; want none", len(got), more, err)
	}
	entries := appendChain(t, l, "demo", 3)
	got, more, err := l.List(ctx, "demo", time.Time{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(entries[:2], got); d != "" || !more {
		t.Errorf("List(limit 2) more = %v, entries (-want +got):\n%s", more, d)
	}
	got, more, err = l.List(ctx, "demo", time.Time{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(entries, got); d != "" || more {
		t.Errorf("List(limit 10) more = %v, entries (-want +got):\n%s", more, d)
	}
}

func checkpointNeverGoesBack(t *testing.T, _ app.AuditLog, c app.CheckpointStore) {
	ctx := t.Context()
	if _, _, found, err := c.Latest(ctx, "demo"); err != nil || found {
		t.Fatalf("Latest() of a tenant without one = found %v, %v", found, err)
	}
	at := time.Unix(1_700_000_000, 0).UTC()
	two := audit.Checkpoint{Tenant: "demo", Count: 2, Head: "h2", At: at}
	for _, cp := range []audit.Checkpoint{two, {Tenant: "demo", Count: 1, Head: "h1", At: at}} {
		if err := c.Advance(ctx, cp); err != nil {
			t.Fatalf("Advance(%d) = %v", cp.Count, err)
		}
	}
	got, _, found, err := c.Latest(ctx, "demo")
	if err != nil || !found {
		t.Fatalf("Latest() = found %v, %v", found, err)
	}
	if d := cmp.Diff(two, got); d != "" {
		t.Errorf("Latest() after an older checkpoint (-want +got):\n%s", d)
	}
}
