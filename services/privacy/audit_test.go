package privacy_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/services/privacy"
)

func appendAudit(t *testing.T, nc *nats.Conn, args privacyapi.AppendAuditArgs) (audit.Entry, error) {
	t.Helper()
	var e audit.Entry
	req := rpc.Request[privacyapi.AppendAuditArgs]{Principal: auth.System(args.Tenant, chatapi.Service), Args: args}
	err := rpc.Call(t.Context(), nc, privacyapi.AppendAuditSubject, req, &e)
	return e, err
}

func listAudit(t *testing.T, nc *nats.Conn, p auth.Principal, since time.Time) (privacyapi.ListAuditResult, error) {
	t.Helper()
	return call[privacyapi.ListAuditResult](t, nc, privacyapi.ListAuditSubject, p, privacyapi.ListAuditArgs{Tenant: tenant, Since: since})
}

// TestAuditChainUnderConcurrentWriters appends from many goroutines through
// two service instances, so appends race within an instance and across
// them, and checks that one unbroken chain comes out, every append
// answered, and its checkpoint counting them all: instances contending for
// a chain take turns until each act's deadline, never a fixed number of
// times.
func TestAuditChainUnderConcurrentWriters(t *testing.T) {
	s := natstest.Start(t, "")
	kek := newKEK(t)
	start(t, s, kek)
	start(t, s, kek)
	nc, _ := natstest.Connect(t, s)

	const writers, each = 24, 5
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				_, err := appendAudit(t, nc, privacyapi.AppendAuditArgs{
					Tenant: tenant,
					Actor:  audit.Actor{Role: auth.RoleSupervisor, ID: fmt.Sprintf("sup-%d", w)},
					Action: audit.ActionTranscriptRead,
					Target: fmt.Sprintf("conversation:c-%d-%d", w, i),
				})
				if err != nil {
					t.Errorf("AppendAudit() error = %v", err)
				}
			}
		})
	}
	wg.Wait()

	res, err := listAudit(t, nc, auditor, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != writers*each || res.More {
		t.Fatalf("ListAudit() = %d entries, more %v; want %d, false", len(res.Entries), res.More, writers*each)
	}
	if err := audit.Verify(res.Entries); err != nil {
		t.Fatalf("Verify(stored chain) = %v", err)
	}
	if cp, err := auditCheckpoint(t, nc, auditor); err != nil || cp.Checkpoint == nil ||
		cp.Checkpoint.Count != writers*each || cp.Checkpoint.Head != res.Entries[writers*each-1].Hash {
		t.Errorf("AuditCheckpoint() = %+v, %v; want count %d and the chain's head", cp.Checkpoint, err, writers*each)
	}
	var targets []string
	for _, e := range res.Entries {
		targets = append(targets, e.Target)
	}
	slices.Sort(targets)
	if n := len(slices.Compact(targets)); n != writers*each {
		t.Errorf("chain holds %d distinct targets, want %d", n, writers*each)
	}

	// The stored chain detects tampering.
	tampered := slices.Clone(res.Entries)
	tampered[7].Target = "conversation:innocent"
	if err := audit.Verify(tampered); !errors.Is(err, audit.ErrBroken) || !strings.Contains(err.Error(), "entry 7") {
		t.Errorf("Verify(target of entry 7 changed) = %v, want it to name entry 7", err)
	}
	removed := slices.Delete(slices.Clone(res.Entries), 12, 13)
	if err := audit.Verify(removed); !errors.Is(err, audit.ErrBroken) || !strings.Contains(err.Error(), "entry 12") {
		t.Errorf("Verify(entry 12 removed) = %v, want it to name entry 12", err)
	}

	// Since skips what came before.
	since, err := listAudit(t, nc, admin, res.Entries[20].At)
	if err != nil {
		t.Fatal(err)
	}
	if len(since.Entries) == 0 || len(since.Entries) > writers*each-20 || since.Entries[len(since.Entries)-1] != res.Entries[len(res.Entries)-1] {
		t.Errorf("ListAudit(since entry 20) = %d entries, want at most %d ending with the last", len(since.Entries), writers*each-20)
	}
	if later, err := listAudit(t, nc, admin, time.Now().Add(time.Hour)); err != nil || len(later.Entries) != 0 {
		t.Errorf("ListAudit(since the future) = %d entries, %v; want none", len(later.Entries), err)
	}
}

func TestAuditRefusals(t *testing.T) {
	nc, js := startOne(t)
	valid := privacyapi.AppendAuditArgs{Tenant: tenant, Actor: audit.Actor{Role: auth.RoleAdmin, ID: "a1"}, Action: audit.ActionExport, Target: "subject:v1"}
	with := func(f func(*privacyapi.AppendAuditArgs)) privacyapi.AppendAuditArgs {
		a := valid
		f(&a)
		return a
	}
	appends := []struct {
		name string
		give privacyapi.AppendAuditArgs
	}{
		{"bad tenant", with(func(a *privacyapi.AppendAuditArgs) { a.Tenant = "a.b" })},
		{"unknown role", with(func(a *privacyapi.AppendAuditArgs) { a.Actor.Role = "root" })},
		{"bad actor id", with(func(a *privacyapi.AppendAuditArgs) { a.Actor.ID = "" })},
		{"bad action", with(func(a *privacyapi.AppendAuditArgs) { a.Action = "Export!" })},
		{"no target", with(func(a *privacyapi.AppendAuditArgs) { a.Target = "" })},
		{"long target", with(func(a *privacyapi.AppendAuditArgs) { a.Target = strings.Repeat("x", 257) })},
		{"control character in target", with(func(a *privacyapi.AppendAuditArgs) { a.Target = "subject:v1\n" })},
	}
	for _, tt := range appends {
		t.Run("append/"+tt.name, func(t *testing.T) {
			if _, err := appendAudit(t, nc, tt.give); rpc.CodeOf(err) != rpc.CodeInvalid {
				t.Errorf("AppendAudit(%+v) error = %v, want code %s", tt.give, err, rpc.CodeInvalid)
			}
		})
	}
	if st := streamState(t, js, stream.Audit); st.Msgs != 0 {
		t.Errorf("AUDIT holds %d entries after refused appends, want 0", st.Msgs)
	}
	got, err := appendAudit(t, nc, valid)
	if err != nil {
		t.Fatal(err)
	}
	if got.PrevHash != "" || got.Hash != got.ComputeHash() || got.At.IsZero() {
		t.Errorf("AppendAudit() = %+v, want the first link of a chain, stamped", got)
	}

	for _, p := range []auth.Principal{agent, visitorOf("v1"), {Tenant: tenant, ID: "an", Role: auth.RoleAnalyst}, {Tenant: "acme", ID: "au", Role: auth.RoleAuditor}} {
		if _, err := listAudit(t, nc, p, time.Time{}); rpc.CodeOf(err) != rpc.CodeForbidden {
			t.Errorf("ListAudit(as %s of %s) error = %v, want code %s", p.Role, p.Tenant, err, rpc.CodeForbidden)
		}
	}
	res, err := listAudit(t, nc, admin, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]audit.Entry{got}, res.Entries); diff != "" {
		t.Errorf("ListAudit() mismatch (-want +got):\n%s", diff)
	}
}

func auditCheckpoint(t *testing.T, nc *nats.Conn, p auth.Principal) (privacyapi.AuditCheckpointResult, error) {
	t.Helper()
	return call[privacyapi.AuditCheckpointResult](t, nc, privacyapi.AuditCheckpointSubject, p, privacyapi.TenantArgs{Tenant: tenant})
}

// TestAuditCheckpoints follows the checkpoint of a chain written by two
// instances, then removes the chain as a bus administrator could, and
// forges a checkpoint: the service must refuse to go on with either,
// since its next checkpoint would hide what was lost.
func TestAuditCheckpoints(t *testing.T) {
	s := natstest.Start(t, "")
	kek := newKEK(t)
	start(t, s, kek)
	start(t, s, kek)
	nc, js := natstest.Connect(t, s)
	act := privacyapi.AppendAuditArgs{Tenant: tenant, Actor: audit.Actor{Role: auth.RoleAdmin, ID: "a1"}, Action: audit.ActionExport, Target: "subject:v1"}

	for _, p := range []auth.Principal{agent, visitorOf("v1"), {Tenant: "acme", ID: "au", Role: auth.RoleAuditor}} {
		if _, err := auditCheckpoint(t, nc, p); rpc.CodeOf(err) != rpc.CodeForbidden {
			t.Errorf("AuditCheckpoint(as %s of %s) error = %v, want code %s", p.Role, p.Tenant, err, rpc.CodeForbidden)
		}
	}
	res, err := auditCheckpoint(t, nc, auditor)
	if err != nil || res.Checkpoint != nil || !auditKey.Public().(ed25519.PublicKey).Equal(res.PublicKey) {
		t.Fatalf("AuditCheckpoint(nothing audited) = %+v, %v; want no checkpoint and the audit key's public half", res, err)
	}
	const n = 12
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := appendAudit(t, nc, act); err != nil {
				t.Errorf("AppendAudit() error = %v", err)
			}
		})
	}
	wg.Wait()
	entries, err := listAudit(t, nc, auditor, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	res, err = auditCheckpoint(t, nc, admin)
	if err != nil {
		t.Fatal(err)
	}
	cp := res.Checkpoint
	if cp == nil || cp.Count != n || cp.Head != entries.Entries[n-1].Hash || cp.Verify(res.PublicKey) != nil {
		t.Fatalf("AuditCheckpoint() = %+v, want count %d, the head %s, signed", cp, n, entries.Entries[n-1].Hash)
	}

	// The AUDIT stream deleted and created again, empty: no instance
	// starts a new chain over the lost one.
	if err := js.DeleteStream(t.Context(), stream.Audit); err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Audit); err != nil {
		t.Fatal(err)
	}
	for range 2 { // both instances, whichever answers
		if _, err := appendAudit(t, nc, act); rpc.CodeOf(err) != rpc.CodeInternal {
			t.Errorf("AppendAudit(to a trail its checkpoint counts %d entries more) error = %v, want code %s", n, err, rpc.CodeInternal)
		}
	}
	if st := streamState(t, js, stream.Audit); st.Msgs != 0 {
		t.Errorf("AUDIT holds %d entries after appends to a cut trail, want 0", st.Msgs)
	}
	if got, err := auditCheckpoint(t, nc, auditor); err != nil || got.Checkpoint == nil || got.Checkpoint.Count != n {
		t.Errorf("AuditCheckpoint(after the trail was cut) = %+v, %v; want the checkpoint of %d entries", got.Checkpoint, err, n)
	}

	// A checkpoint signed with another key, stored as a bus administrator
	// could, is refused.
	_, other, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	forged := audit.Checkpoint{Tenant: tenant, At: time.Now()}.Sign(other)
	data, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), audit.CheckpointSubject(tenant), data); err != nil {
		t.Fatal(err)
	}
	if _, err := appendAudit(t, nc, act); rpc.CodeOf(err) != rpc.CodeInternal {
		t.Errorf("AppendAudit(under a forged checkpoint) error = %v, want code %s", err, rpc.CodeInternal)
	}
	if _, err := auditCheckpoint(t, nc, auditor); rpc.CodeOf(err) != rpc.CodeInternal {
		t.Errorf("AuditCheckpoint(forged) error = %v, want code %s", err, rpc.CodeInternal)
	}
}

// BenchmarkAuditAppend measures an audited act through two service
// instances on one server, from as many goroutines at once as the
// benchmark's parallelism gives: what one append costs when the chain is
// contended, within an instance and across them.
func BenchmarkAuditAppend(b *testing.B) {
	s := natstest.Start(b, "")
	kek, err := seal.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	nc, _ := natstest.Connect(b, s)
	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- privacy.Run(ctx, privacy.Deps{NC: nc, Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), KEK: kek, AuditKey: auditKey})
		}()
		b.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				b.Errorf("Run() = %v, want nil", err)
			}
		})
	}
	act := privacyapi.AppendAuditArgs{Tenant: tenant, Actor: audit.Actor{Role: auth.RoleSupervisor, ID: "sup"}, Action: audit.ActionTranscriptRead, Target: "conversation:c"}
	req := rpc.Request[privacyapi.AppendAuditArgs]{Principal: auth.System(tenant, chatapi.Service), Args: act}
	natstest.Eventually(b, 10*time.Second, "both instances serving", func() error {
		return rpc.Call(b.Context(), nc, privacyapi.AppendAuditSubject, req, nil)
	})
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := rpc.Call(b.Context(), nc, privacyapi.AppendAuditSubject, req, nil); err != nil {
				b.Error(err)
			}
		}
	})
}
