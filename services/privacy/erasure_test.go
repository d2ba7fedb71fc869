package privacy_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy"
)

var (
	admin   = auth.Principal{Tenant: tenant, ID: "admin-1", Role: auth.RoleAdmin}
	auditor = auth.Principal{Tenant: tenant, ID: "auditor-1", Role: auth.RoleAuditor}
	agent   = auth.Principal{Tenant: tenant, ID: "agent-1", Role: auth.RoleAgent}
)

func visitorOf(id string) auth.Principal {
	return auth.Principal{Tenant: tenant, ID: id, Role: auth.RoleVisitor}
}

// call makes a privacy call as p and decodes its result.
func call[T any](t *testing.T, nc *nats.Conn, subject string, p auth.Principal, args any) (T, error) {
	t.Helper()
	var res T
	err := rpc.Call(t.Context(), nc, subject, rpc.Request[any]{Principal: p, Args: args}, &res)
	return res, err
}

func mustRegister(t *testing.T, nc *nats.Conn) string {
	t.Helper()
	id, err := register(t.Context(), nc, privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: event.Consent{Analytics: true, NoticeVersion: "n1"}})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func erase(t *testing.T, nc *nats.Conn, p auth.Principal, subject string) (privacyapi.Erasure, error) {
	t.Helper()
	return call[privacyapi.Erasure](t, nc, privacyapi.EraseSubject, p, privacyapi.EraseArgs{Tenant: tenant, Person: subject})
}

func storeHolds(t *testing.T, dir string, b []byte) bool {
	t.Helper()
	return bytes.Contains(bytes.Join(slices.Collect(maps.Values(readStore(t, dir))), nil), b)
}

// wrappedKeys returns the forms in which the subject's key record, read
// from KEYS, is in the store files: the record as stored, and each wrapped
// key in it (base64).
func wrappedKeys(t *testing.T, ks jetstream.Stream, subject string) map[string][]byte {
	t.Helper()
	m, err := ks.GetLastMsgForSubject(t.Context(), stream.KeysSubject(tenant, subject))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct{ Data, Pseudonym []byte }
	if err := json.Unmarshal(m.Data, &rec); err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"record":    m.Data,
		"data":      []byte(base64.StdEncoding.EncodeToString(rec.Data)),
		"pseudonym": []byte(base64.StdEncoding.EncodeToString(rec.Pseudonym)),
	}
}

// keysAmidOthers registers three visitors and answers the middle one and
// the forms of their key record in the store files (wrappedKeys): the
// records before and after it keep its block alive, so a plain delete
// would leave its bytes in the file.
func keysAmidOthers(t *testing.T, nc *nats.Conn, js jetstream.JetStream) (string, map[string][]byte) {
	t.Helper()
	mustRegister(t, nc)
	visitor := mustRegister(t, nc)
	mustRegister(t, nc)
	ks, err := js.Stream(t.Context(), stream.Keys)
	if err != nil {
		t.Fatal(err)
	}
	return visitor, wrappedKeys(t, ks, visitor)
}

func TestEraseShredsKeys(t *testing.T) {
	dir := t.TempDir()
	s := natstest.Start(t, dir)
	start(t, s, newKEK(t))
	nc, js := natstest.Connect(t, s)
	visitor, wrapped := keysAmidOthers(t, nc, js)
	natstest.Until(t, 10*time.Second, "wrapped keys in the store files", func() bool { return storeHolds(t, dir, wrapped["record"]) })

	got, err := erase(t, nc, visitorOf(visitor), visitor)
	if err != nil {
		t.Fatalf("Erase(self) error = %v", err)
	}
	if got.Status != privacyapi.StatusCompleted || got.Report == nil || !got.Report.KeysDestroyed || got.CompletedAt == nil {
		t.Fatalf("Erase(self) = %+v, want completed with keys destroyed", got)
	}
	for name, b := range wrapped {
		if storeHolds(t, dir, b) {
			t.Errorf("store files still hold the wrapped %s after erasure", name)
		}
	}

	// Only the tombstone is left, and it stays the only message however
	// often keys are asked for.
	cache, err := personkey.NewCache(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	for _, create := range []bool{true, false} {
		if _, err := getKeys(t.Context(), nc, visitor, create); rpc.CodeOf(err) != rpc.CodeGone {
			t.Errorf("Get(erased, create=%v) error = %v, want code %s", create, err, rpc.CodeGone)
		}
	}
	if erased, err := cache.Erased(t.Context(), tenant, visitor); !erased || err != nil {
		t.Errorf("Erased(erased) = %v, %v; want true, nil", erased, err)
	}
	if _, err := cache.GetOrCreate(t.Context(), tenant, visitor); !errors.Is(err, personkey.ErrErased) || !errors.Is(err, personkey.ErrNotFound) {
		t.Errorf("GetOrCreate(erased) error = %v, want ErrErased and ErrNotFound", err)
	}
	if st := streamState(t, js, stream.Keys); st.Msgs != 3+kekState || st.LastSeq != 4+kekState {
		t.Errorf("KEYS holds %d messages, last sequence %d; want 4 (the KEK state, 2 records, 1 tombstone) and 5", st.Msgs, st.LastSeq)
	}
	ks, err := js.Stream(t.Context(), stream.Keys)
	if err != nil {
		t.Fatal(err)
	}
	tomb, err := ks.GetLastMsgForSubject(t.Context(), stream.KeysSubject(tenant, visitor))
	if err != nil {
		t.Fatal(err)
	}
	if tomb.Header.Get("Parley-Erased") != got.ErasureID {
		t.Errorf("KEYS message after erasure has Parley-Erased %q, want the erasure id %q", tomb.Header.Get("Parley-Erased"), got.ErasureID)
	}

	// The PRIVACY record: requested, then completed, both readable in clear.
	ps, err := js.Stream(t.Context(), stream.Privacy)
	if err != nil {
		t.Fatal(err)
	}
	var types []event.Type
	for seq := uint64(1); seq <= streamState(t, js, stream.Privacy).LastSeq; seq++ {
		m, err := ps.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		e, err := event.Parse(m.Subject, m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if e.Aggregate == visitor {
			types = append(types, e.Type)
		}
	}
	want := []event.Type{event.ConsentRecorded, privacyapi.ErasureRequestedType, privacyapi.ErasureCompletedType}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("PRIVACY events mismatch (-want +got):\n%s", diff)
	}
}

// TestEraseShredsKeysOnEveryReplica erases a subject whose keys are in
// KEYS replicated on the three nodes of a cluster: once every node has
// applied the erasure, no file of any node's streams holds the wrapped
// keys. The Raft log of KEYS still may, until the server compacts it with a
// snapshot (docs/privacy.md, "Honest limits"); once every node has taken
// one, no file of any node holds them.
func TestEraseShredsKeysOnEveryReplica(t *testing.T) {
	cluster := natstest.StartCluster(t, nil)
	start(t, cluster.Nodes[0], newKEK(t), func(d *privacy.Deps) { d.Streams.Replicas = natstest.ClusterSize })
	nc, js := natstest.Connect(t, cluster.Nodes[0])
	visitor, wrapped := keysAmidOthers(t, nc, js)
	for _, n := range cluster.Nodes {
		natstest.Until(t, 10*time.Second, n.Name()+"'s streams hold the wrapped keys", func() bool {
			return storeHolds(t, streamsDir(t, n), wrapped["record"])
		})
	}

	if _, err := erase(t, nc, visitorOf(visitor), visitor); err != nil {
		t.Fatalf("Erase(self) error = %v", err)
	}
	// The tombstone follows the delete in the stream's log: a node that
	// stored it has applied the delete.
	want := streamState(t, js, stream.Keys).LastSeq
	for _, n := range cluster.Nodes {
		natstest.Until(t, 10*time.Second, n.Name()+" applies the erasure", func() bool {
			return keysState(t, n).LastSeq == want
		})
	}
	for _, n := range cluster.Nodes {
		for name, b := range wrapped {
			if storeHolds(t, streamsDir(t, n), b) {
				t.Errorf("%s's streams still hold the wrapped %s after erasure", n.Name(), name)
			}
		}
	}

	// A snapshot compacts the log up to the entries the node's Raft layer
	// has applied. One that covers the whole log removes its files; one
	// that leaves an entry not applied yet (the full package under load
	// saw it) leaves the file holding that entry as it was, keys and all,
	// and the next is refused until an entry is applied after it. So a
	// node snapshots, with a write to KEYS after each snapshot that left
	// them, until one covers its whole log.
	for _, n := range cluster.Nodes {
		holds := func() bool {
			return slices.ContainsFunc(slices.Collect(maps.Values(wrapped)), func(b []byte) bool { return storeHolds(t, n.StoreDir(), b) })
		}
		natstest.Eventually(t, 20*time.Second, n.Name()+"'s store free of the wrapped keys once its Raft log is compacted", func() error {
			if !holds() {
				return nil
			}
			err := n.JetStreamSnapshotStream(server.DEFAULT_GLOBAL_ACCOUNT, stream.Keys)
			if err == nil && !holds() {
				return nil
			}
			mustRegister(t, nc)
			if err != nil {
				// A snapshot or a catch-up under way, or the last one
				// covering every entry applied.
				return fmt.Errorf("snapshot refused: %w", err)
			}
			return errors.New("a snapshot left them")
		})
	}
}

// streamsDir is where n keeps the streams of the account every test
// client uses (the Raft logs are elsewhere, under the system account).
func streamsDir(t *testing.T, n *natsembed.Server) string {
	t.Helper()
	return filepath.Join(n.StoreDir(), server.DEFAULT_GLOBAL_ACCOUNT, "streams")
}

// keysState is the state of KEYS as n stores it, whether it leads the
// stream or follows.
func keysState(t *testing.T, n *natsembed.Server) server.StreamState {
	t.Helper()
	jsz, err := n.Jsz(&server.JSzOptions{Account: server.DEFAULT_GLOBAL_ACCOUNT, Streams: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.Streams {
			if s.Name == stream.Keys {
				return s.State
			}
		}
	}
	return server.StreamState{}
}

func TestEraseEvictsEverywhere(t *testing.T) {
	s := natstest.Start(t, "")
	kek := newKEK(t)
	start(t, s, kek)
	start(t, s, kek)
	nc, _ := natstest.Connect(t, s)
	visitor := mustRegister(t, nc)

	// Another service: its own connection and caches, both warm.
	other, _ := natstest.Connect(t, s)
	keys, err := personkey.NewCache(other)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	if _, err := keys.Get(t.Context(), tenant, visitor); err != nil {
		t.Fatal(err)
	}
	if _, err := getConsent(t, other, tenant, visitor); err != nil {
		t.Fatal(err)
	}

	if _, err := erase(t, nc, admin, visitor); err != nil {
		t.Fatalf("Erase(as admin) error = %v", err)
	}
	natstest.Until(t, time.Second, "key cache evicts the erased subject", func() bool {
		_, err := keys.Get(t.Context(), tenant, visitor)
		return errors.Is(err, personkey.ErrErased)
	})
	if _, err := getConsent(t, other, tenant, visitor); rpc.CodeOf(err) != rpc.CodeGone {
		t.Errorf("GetConsent(erased) error = %v, want code %s", err, rpc.CodeGone)
	}
	// Both privacy instances refuse keys now, whichever answers.
	for range 4 {
		if _, err := getKeys(t.Context(), nc, visitor, true); rpc.CodeOf(err) != rpc.CodeGone {
			t.Errorf("Get(erased) error = %v, want code %s", err, rpc.CodeGone)
		}
	}
}

func TestEraseTwiceAnswersTheFirstErasure(t *testing.T) {
	nc, js := startOne(t)
	visitor := mustRegister(t, nc)

	first, err := erase(t, nc, visitorOf(visitor), visitor)
	if err != nil {
		t.Fatal(err)
	}
	privacyBefore, keysBefore := streamState(t, js, stream.Privacy), streamState(t, js, stream.Keys)
	for _, p := range []auth.Principal{visitorOf(visitor), admin} {
		again, err := erase(t, nc, p, visitor)
		if err != nil {
			t.Fatalf("Erase(again as %s) error = %v", p.Role, err)
		}
		if diff := cmp.Diff(first, again); diff != "" {
			t.Errorf("Erase(again as %s) mismatch (-first +again):\n%s", p.Role, diff)
		}
	}
	if st := streamState(t, js, stream.Privacy); st.LastSeq != privacyBefore.LastSeq {
		t.Errorf("PRIVACY last sequence %d after erasing again, want %d", st.LastSeq, privacyBefore.LastSeq)
	}
	if st := streamState(t, js, stream.Keys); st.LastSeq != keysBefore.LastSeq {
		t.Errorf("KEYS last sequence %d after erasing again, want %d", st.LastSeq, keysBefore.LastSeq)
	}
	if st := streamState(t, js, stream.Audit); st.Msgs != 0 {
		t.Errorf("AUDIT holds %d entries, want 0: repeating a completed erasure is not an erasure", st.Msgs)
	}
}

func TestEraseRefusals(t *testing.T) {
	nc, js := startOne(t)
	visitor, other := mustRegister(t, nc), mustRegister(t, nc)
	before := map[string]uint64{}
	for _, name := range []string{stream.Privacy, stream.Keys, stream.Audit} {
		before[name] = streamState(t, js, name).LastSeq
	}

	tests := []struct {
		name    string
		as      auth.Principal
		subject string
		want    rpc.Code
	}{
		{"visitor erasing another", visitorOf(other), visitor, rpc.CodeForbidden},
		{"agent", agent, visitor, rpc.CodeForbidden},
		{"supervisor", auth.Principal{Tenant: tenant, ID: "sup-1", Role: auth.RoleSupervisor}, visitor, rpc.CodeForbidden},
		{"auditor", auditor, visitor, rpc.CodeForbidden},
		{"admin of another tenant", auth.Principal{Tenant: "acme", ID: "admin-1", Role: auth.RoleAdmin}, visitor, rpc.CodeForbidden},
		{"operator", auth.Principal{Tenant: auth.OperatorTenant, ID: "op", Role: auth.RoleOperator}, visitor, rpc.CodeForbidden},
		{"unknown subject", admin, "nobody", rpc.CodeNotFound},
		{"unknown self", visitorOf("ghost"), "ghost", rpc.CodeNotFound},
		{"wildcard subject", admin, "*", rpc.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := erase(t, nc, tt.as, tt.subject); rpc.CodeOf(err) != tt.want {
				t.Errorf("Erase(%s) error = %v, want code %s", tt.subject, err, tt.want)
			}
		})
	}
	for name, seq := range before {
		if st := streamState(t, js, name); st.LastSeq != seq {
			t.Errorf("%s last sequence %d after refused erasures, want %d", name, st.LastSeq, seq)
		}
	}
	if _, err := getKeys(t.Context(), nc, visitor, false); err != nil {
		t.Errorf("Get(visitor) after refused erasures error = %v, want keys", err)
	}
}

func TestEraseSubjectWithKeysOnly(t *testing.T) {
	nc, _ := startOne(t)
	// An agent has keys (for what they write) but no consent record.
	if _, err := getKeys(t.Context(), nc, agent.ID, true); err != nil {
		t.Fatal(err)
	}
	got, err := erase(t, nc, admin, agent.ID)
	if err != nil {
		t.Fatalf("Erase(agent) error = %v", err)
	}
	if got.Report == nil || !got.Report.KeysDestroyed {
		t.Errorf("Erase(agent) = %+v, want keys destroyed", got)
	}
}

func TestErasureStatusSurvivesRestart(t *testing.T) {
	s := natstest.Start(t, "")
	kek := newKEK(t)
	first := start(t, s, kek)
	nc, _ := natstest.Connect(t, s)
	visitor, other := mustRegister(t, nc), mustRegister(t, nc)
	erasure, err := erase(t, nc, visitorOf(visitor), visitor)
	if err != nil {
		t.Fatal(err)
	}
	first.stop()
	start(t, s, kek)

	status := func(p auth.Principal, id string) (privacyapi.Erasure, error) {
		return call[privacyapi.Erasure](t, nc, privacyapi.ErasureStatusSubject, p, privacyapi.ErasureStatusArgs{Tenant: tenant, ErasureID: id})
	}
	for _, p := range []auth.Principal{admin, visitorOf(visitor)} {
		got, err := status(p, erasure.ErasureID)
		if err != nil {
			t.Fatalf("ErasureStatus(as %s) after restart error = %v", p.ID, err)
		}
		if diff := cmp.Diff(erasure, got); diff != "" {
			t.Errorf("ErasureStatus(as %s) after restart mismatch (-erase +status):\n%s", p.ID, diff)
		}
	}
	tests := []struct {
		name string
		as   auth.Principal
		id   string
		want rpc.Code
	}{
		{"another visitor", visitorOf(other), erasure.ErasureID, rpc.CodeNotFound},
		{"agent", agent, erasure.ErasureID, rpc.CodeForbidden},
		{"admin of another tenant", auth.Principal{Tenant: "acme", ID: "a", Role: auth.RoleAdmin}, erasure.ErasureID, rpc.CodeForbidden},
		{"unknown erasure", admin, "0196a1b2-0000-7000-8000-000000000000", rpc.CodeNotFound},
		{"malformed erasure id", admin, "a.b", rpc.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := status(tt.as, tt.id); rpc.CodeOf(err) != tt.want {
				t.Errorf("ErasureStatus(%s) error = %v, want code %s", tt.id, err, tt.want)
			}
		})
	}
	// The restarted instance knows the subject is erased: no new keys.
	if _, err := getKeys(t.Context(), nc, visitor, true); rpc.CodeOf(err) != rpc.CodeGone {
		t.Errorf("Get(erased) after restart error = %v, want code %s", err, rpc.CodeGone)
	}
}

func TestStaffErasureIsAudited(t *testing.T) {
	nc, _ := startOne(t)
	visitor, self := mustRegister(t, nc), mustRegister(t, nc)
	if _, err := erase(t, nc, admin, visitor); err != nil {
		t.Fatal(err)
	}
	if _, err := erase(t, nc, visitorOf(self), self); err != nil {
		t.Fatal(err)
	}
	res, err := call[privacyapi.ListAuditResult](t, nc, privacyapi.ListAuditSubject, auditor, privacyapi.ListAuditArgs{Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range res.Entries {
		got = append(got, string(e.Actor.Role)+"/"+e.Actor.ID+" "+e.Action+" "+e.Target)
	}
	want := []string{"admin/admin-1 erase subject:" + visitor}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit entries mismatch (-want +got):\n%s", diff)
	}
	if err := audit.Verify(res.Entries); err != nil {
		t.Errorf("Verify() = %v", err)
	}
}

// TestConcurrentErasuresOfOneSubject erases one subject by many requests at
// once, spread over two instances: every one is answered with the same
// erasure, and the keys are gone.
func TestConcurrentErasuresOfOneSubject(t *testing.T) {
	const requests = 12
	s := natstest.Start(t, "")
	kek := newKEK(t)
	start(t, s, kek)
	start(t, s, kek)
	nc, js := natstest.Connect(t, s)

	for round := range 3 {
		visitor := mustRegister(t, nc)
		got := make([]privacyapi.Erasure, requests)
		errs := make([]error, requests)
		var wg sync.WaitGroup
		for i := range requests {
			p := admin
			if i%2 == 0 {
				p = visitorOf(visitor)
			}
			wg.Go(func() { got[i], errs[i] = erase(t, nc, p, visitor) })
		}
		wg.Wait()
		ids := map[string]bool{}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: Erase() #%d error = %v, want the erasure", round, i, err)
			}
			ids[got[i].ErasureID] = true
		}
		if len(ids) != 1 {
			t.Errorf("round %d: erasure ids %v, want one", round, slices.Sorted(maps.Keys(ids)))
		}
		if _, err := getKeys(t.Context(), nc, visitor, false); rpc.CodeOf(err) != rpc.CodeGone {
			t.Errorf("round %d: Get(erased) error = %v, want code %s", round, err, rpc.CodeGone)
		}
		m, err := js.Stream(t.Context(), stream.Keys)
		if err != nil {
			t.Fatal(err)
		}
		last, err := m.GetLastMsgForSubject(t.Context(), stream.KeysSubject(tenant, visitor))
		if err != nil {
			t.Fatal(err)
		}
		if last.Header.Get("Parley-Erased") == "" {
			t.Errorf("round %d: last KEYS record is not a tombstone", round)
		}
	}
}
