package privacy_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy"
)

const tenant = "demo"

// syncBuffer collects the logs of services running in other goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.buf.Bytes())
}

// instance is one running privacy service.
type instance struct {
	logs *syncBuffer
	stop func()
	// nc is its connection: closing it is the instance's crash.
	nc *nats.Conn
}

// start runs a privacy service with kek on its own connection to s and
// returns once it serves; opts change its Deps. The service stops when the test ends, or earlier
// with stop, which fails the test unless Run returned nil.
func start(t *testing.T, s *natsembed.Server, kek seal.Key, opts ...func(*privacy.Deps)) *instance {
	t.Helper()
	nc, _ := natstest.Connect(t, s)
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	d := privacy.Deps{NC: nc, Log: slog.New(slog.NewJSONHandler(logs, nil)), KEK: kek, AuditKey: auditKey}
	for _, o := range opts {
		o(&d)
	}
	go func() {
		done <- privacy.Run(ctx, d)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		})
	}
	t.Cleanup(stop)

	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 10*time.Second, "privacy service serving", func() bool {
		select {
		case err := <-done:
			done <- err // for stop, which the cleanup calls
			t.Fatalf("Run() = %v before serving", err)
		default:
		}
		return serving(t, s, cid)
	})
	return &instance{logs: logs, stop: stop, nc: nc}
}

// startOne starts a server with one instance of the privacy service on it,
// and returns a connection to it and a JetStream of it.
func startOne(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	s := natstest.Start(t, "")
	start(t, s, newKEK(t))
	return natstest.Connect(t, s)
}

// nothingStored asserts that PRIVACY holds no event and KEYS nothing but
// the key-encryption key's state: what bad requests leave.
func nothingStored(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	for name, want := range map[string]uint64{stream.Privacy: 0, stream.Keys: kekState} {
		if st := streamState(t, js, name); st.Msgs != want {
			t.Errorf("%s holds %d messages after bad requests, want %d", name, st.Msgs, want)
		}
	}
}

// serving reports whether the connection cid subscribes to the subjects of
// the service: the key service's, registered first, and the internal
// audit's, registered last, so every call in between is served too.
func serving(t *testing.T, s *natsembed.Server, cid uint64) bool {
	t.Helper()
	cz, err := s.Connz(&server.ConnzOptions{CID: cid, Subscriptions: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cz.Conns {
		if slices.Contains(c.Subs, personkey.GetSubject) && slices.Contains(c.Subs, privacyapi.RegisterVisitorSubject) &&
			slices.Contains(c.Subs, privacyapi.AppendAuditSubject) {
			return true
		}
	}
	return false
}

// auditKey is the audit key of every instance a test starts: instances of
// one deployment share it.
var auditKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func newKEK(t *testing.T) seal.Key {
	t.Helper()
	k, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func getKeys(ctx context.Context, nc *nats.Conn, subject string, create bool) (personkey.Keys, error) {
	var k personkey.Keys
	err := rpc.Call(ctx, nc, personkey.GetSubject, personkey.Request{Tenant: tenant, Person: subject, Create: create}, &k)
	return k, err
}

// kekState counts the message in KEYS that says which KEK is in force,
// stored by the first instance to start.
const kekState = 1

func streamState(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamState {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State
}

func TestKeysAreCreatedOnceAcrossInstances(t *testing.T) {
	s := natstest.Start(t, "")
	kek := newKEK(t)
	start(t, s, kek)
	start(t, s, kek)
	nc, js := natstest.Connect(t, s)

	subjects := []string{"v1", "v2", "v3"}
	const callers = 10
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		got   = make(map[string][]personkey.Keys)
		begin = make(chan struct{})
	)
	for _, subject := range subjects {
		for range callers {
			wg.Go(func() {
				<-begin
				k, err := getKeys(t.Context(), nc, subject, true)
				if err != nil {
					t.Errorf("GetOrCreate(%s) error = %v", subject, err)
					return
				}
				mu.Lock()
				got[subject] = append(got[subject], k)
				mu.Unlock()
			})
		}
	}
	close(begin)
	wg.Wait()

	for _, subject := range subjects {
		keys := got[subject]
		if len(keys) != callers {
			t.Fatalf("%s: %d callers got keys, want %d", subject, len(keys), callers)
		}
		if keys[0].Data == keys[0].Pseudonym {
			t.Errorf("%s: data key equals pseudonym key", subject)
		}
		for _, k := range keys[1:] {
			if k != keys[0] {
				t.Errorf("%s: callers got different keys", subject)
				break
			}
		}
	}
	// KEYS keeps one message per subject, so a second write would replace the
	// first: the last sequence counts every write ever made, the KEK state
	// the first instance claimed included.
	st := streamState(t, js, stream.Keys)
	if want := uint64(len(subjects)) + kekState; st.Msgs != want || st.LastSeq != want {
		t.Errorf("KEYS holds %d messages, last sequence %d; want %d and %d", st.Msgs, st.LastSeq, want, want)
	}
}

// keyForms are the encodings in which a key could leak into a file.
func keyForms(k seal.Key) map[string][]byte {
	b, _ := json.Marshal(k) // an array of numbers: how personkey.Keys travels
	return map[string][]byte{
		"raw":       k[:],
		"hex":       []byte(hex.EncodeToString(k[:])),
		"HEX":       []byte(strings.ToUpper(hex.EncodeToString(k[:]))),
		"base64":    []byte(base64.RawStdEncoding.EncodeToString(k[:])),
		"base64url": []byte(base64.RawURLEncoding.EncodeToString(k[:])),
		"json":      b,
	}
}

func readStore(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := make(map[string][]byte)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[path] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestStoreHoldsOnlyWrappedKeys(t *testing.T) {
	dir := t.TempDir()
	s := natstest.Start(t, dir)
	inst := start(t, s, newKEK(t))
	nc, js := natstest.Connect(t, s)

	var res privacyapi.RegisterVisitorResult
	err := rpc.Call(t.Context(), nc, privacyapi.RegisterVisitorSubject,
		rpc.Request[privacyapi.RegisterVisitorArgs]{Args: privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: event.Consent{NoticeVersion: "v1"}}}, &res)
	if err != nil {
		t.Fatal(err)
	}
	subjects := []string{res.VisitorID, "agent-1"}
	keys := make(map[string]personkey.Keys)
	var wrapped [][]byte
	ks, err := js.Stream(t.Context(), stream.Keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, subject := range subjects {
		if keys[subject], err = getKeys(t.Context(), nc, subject, true); err != nil {
			t.Fatal(err)
		}
		w := wrappedKeys(t, ks, subject)
		wrapped = append(wrapped, w["data"], w["pseudonym"])
	}

	// The wrapped keys reaching the files shows the store was written and the
	// search below can find what is there.
	natstest.Until(t, 10*time.Second, "wrapped keys in the store files", func() bool {
		all := bytes.Join(slices.Collect(maps.Values(readStore(t, dir))), nil)
		return !slices.ContainsFunc(wrapped, func(w []byte) bool { return !bytes.Contains(all, w) })
	})

	inst.stop()
	files := readStore(t, dir)
	files["service logs"] = inst.logs.Bytes()
	for _, subject := range subjects {
		for which, k := range map[string]seal.Key{"data": keys[subject].Data, "pseudonym": keys[subject].Pseudonym} {
			for form, b := range keyForms(k) {
				for path, content := range files {
					if bytes.Contains(content, b) {
						t.Errorf("%s holds the %s key of %s (%s)", path, which, subject, form)
					}
				}
			}
		}
	}
}

// dropKEKState deletes the messages that say which KEK is in force.
func dropKEKState(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	keys, err := js.Stream(t.Context(), stream.Keys)
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := keys.GetLastMsgForSubject(t.Context(), stream.KEKStateSubjects)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := keys.DeleteMsg(t.Context(), m.Sequence); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOtherKEKCannotUnwrap(t *testing.T) {
	s := natstest.Start(t, "")
	kek := newKEK(t)
	nc, js := natstest.Connect(t, s)

	first := start(t, s, kek)
	want, err := getKeys(t.Context(), nc, "v1", true)
	if err != nil {
		t.Fatal(err)
	}
	first.stop()

	// An instance with another KEK does not start while kek is in force;
	// with the KEK state removed, as an operator running a store restored
	// under a newer KEK would, it starts and claims it.
	otherKEK := newKEK(t)
	if err := runOnce(t, s, otherKEK); err == nil || !strings.Contains(err.Error(), "not the one in force") {
		t.Fatalf("Run() with another KEK = %v, want it refused", err)
	}
	dropKEKState(t, js)
	other := start(t, s, otherKEK)
	for _, create := range []bool{false, true} {
		if _, err := getKeys(t.Context(), nc, "v1", create); rpc.CodeOf(err) != rpc.CodeUnreadable {
			t.Errorf("Get(create=%v) under another KEK: error = %v, want code %s", create, err, rpc.CodeUnreadable)
		}
	}
	// A probe unwraps nothing: keys it cannot read are keys all the same.
	cache, err := personkey.NewCache(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	for _, p := range []string{"v1", "nobody"} {
		if erased, err := cache.Erased(t.Context(), tenant, p); erased || err != nil {
			t.Errorf("Erased(%s) under another KEK = %v, %v; want false, nil", p, erased, err)
		}
	}
	if !bytes.Contains(other.logs.Bytes(), []byte("keys wrapped under another key-encryption key")) {
		t.Errorf("logs say nothing of keys the KEK cannot unwrap:\n%s", other.logs.Bytes())
	}
	// The first KEK state, v1's record, the second KEK state.
	if st := streamState(t, js, stream.Keys); st.LastSeq != 3 {
		t.Errorf("KEYS last sequence = %d, want 3: keys were replaced", st.LastSeq)
	}
	other.stop()

	// The record is intact: the right KEK still unwraps it.
	dropKEKState(t, js)
	start(t, s, kek)
	got, err := getKeys(t.Context(), nc, "v1", false)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Error("Get() under the original KEK returned other keys")
	}
}

func TestGetUnknownSubject(t *testing.T) {
	nc, js := startOne(t)
	cache, err := personkey.NewCache(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })

	if _, err := cache.Get(t.Context(), tenant, "nobody"); !errors.Is(err, personkey.ErrNotFound) {
		t.Errorf("Get(unknown) error = %v, want %v", err, personkey.ErrNotFound)
	}
	if st := streamState(t, js, stream.Keys); st.Msgs != kekState {
		t.Errorf("KEYS holds %d messages after a Get, want only the KEK state", st.Msgs)
	}
	created, err := cache.GetOrCreate(t.Context(), tenant, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	// A fresh cache asks the service again, which now finds the keys.
	fresh, err := personkey.NewCache(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fresh.Close() })
	got, err := fresh.Get(t.Context(), tenant, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if got != created {
		t.Error("Get() after GetOrCreate returned other keys")
	}
}

func TestKeyRequestRejectsBadIDs(t *testing.T) {
	nc, js := startOne(t)

	tests := []struct {
		name string
		give personkey.Request
	}{
		{"empty tenant", personkey.Request{Person: "v1", Create: true}},
		{"wildcard tenant", personkey.Request{Tenant: "*", Person: "v1", Create: true}},
		{"empty subject", personkey.Request{Tenant: tenant, Create: true}},
		{"dotted subject", personkey.Request{Tenant: tenant, Person: "v1.v2", Create: true}},
		{"wildcard subject", personkey.Request{Tenant: tenant, Person: ">", Create: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := rpc.Call(t.Context(), nc, personkey.GetSubject, tt.give, nil)
			if code := rpc.CodeOf(err); code != rpc.CodeInvalid {
				t.Errorf("Get(%+v) error = %v, want code %s", tt.give, err, rpc.CodeInvalid)
			}
		})
	}
	if st := streamState(t, js, stream.Keys); st.Msgs != kekState {
		t.Errorf("KEYS holds %d messages, want only the KEK state", st.Msgs)
	}
}

func register(ctx context.Context, nc *nats.Conn, args privacyapi.RegisterVisitorArgs) (string, error) {
	var res privacyapi.RegisterVisitorResult
	err := rpc.Call(ctx, nc, privacyapi.RegisterVisitorSubject, rpc.Request[privacyapi.RegisterVisitorArgs]{Args: args}, &res)
	return res.VisitorID, err
}

func TestRegisterVisitor(t *testing.T) {
	nc, js := startOne(t)
	ps, err := js.Stream(t.Context(), stream.Privacy)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		give event.Consent
	}{
		{"all given", event.Consent{Analytics: true, NetworkData: true, AI: true, NoticeVersion: "2026-01"}},
		{"none given", event.Consent{NoticeVersion: "2026-01"}},
		{"mixed, longest notice version", event.Consent{Analytics: true, NoticeVersion: strings.Repeat("é", 64)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := register(t.Context(), nc, privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: tt.give})
			if err != nil {
				t.Fatalf("RegisterVisitor(%+v) error = %v", tt.give, err)
			}
			if !stream.ValidToken(id) {
				t.Fatalf("RegisterVisitor() id = %q, not a subject token", id)
			}
			m, err := ps.GetLastMsgForSubject(t.Context(), stream.PrivacySubject(tenant, id))
			if err != nil {
				t.Fatal(err)
			}
			e, err := event.Parse(m.Subject, m.Header, m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if e.Type != event.ConsentRecorded || e.Tenant != tenant || e.Person != id || e.Aggregate != id {
				t.Errorf("event = %s %s/%s on %s, want %s %s/%s on %s", e.Type, e.Tenant, e.Person, e.Aggregate, event.ConsentRecorded, tenant, id, id)
			}
			var got event.Consent
			if err := e.Decode(&got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.give, got); diff != "" {
				t.Errorf("recorded consent mismatch (-want +got):\n%s", diff)
			}
			if _, err := getKeys(t.Context(), nc, id, false); err != nil {
				t.Errorf("Get(visitor) error = %v, want keys", err)
			}
		})
	}
}

func TestRegisterVisitorRejectsBadInput(t *testing.T) {
	nc, js := startOne(t)

	tests := []struct {
		name string
		give privacyapi.RegisterVisitorArgs
	}{
		{"no notice version", privacyapi.RegisterVisitorArgs{Tenant: tenant}},
		{"long notice version", privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: event.Consent{NoticeVersion: strings.Repeat("v", 65)}}},
		{"no tenant", privacyapi.RegisterVisitorArgs{Consent: event.Consent{NoticeVersion: "v1"}}},
		{"dotted tenant", privacyapi.RegisterVisitorArgs{Tenant: "de.mo", Consent: event.Consent{NoticeVersion: "v1"}}},
		{"wildcard tenant", privacyapi.RegisterVisitorArgs{Tenant: "*", Consent: event.Consent{NoticeVersion: "v1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := register(t.Context(), nc, tt.give)
			if code := rpc.CodeOf(err); code != rpc.CodeInvalid {
				t.Errorf("RegisterVisitor(%+v) error = %v, want code %s", tt.give, err, rpc.CodeInvalid)
			}
		})
	}
	nothingStored(t, js)
}

func TestRunRequiresDeps(t *testing.T) {
	s := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, s)
	log := slog.New(slog.DiscardHandler)
	kek := newKEK(t)

	tests := []struct {
		name string
		give privacy.Deps
	}{
		{"no connection", privacy.Deps{Log: log, KEK: kek, AuditKey: auditKey}},
		{"no logger", privacy.Deps{NC: nc, KEK: kek, AuditKey: auditKey}},
		{"no KEK", privacy.Deps{NC: nc, Log: log, AuditKey: auditKey}},
		{"no audit key", privacy.Deps{NC: nc, Log: log, KEK: kek}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A Run that started serving would block until the deadline.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := privacy.Run(ctx, tt.give); err == nil {
				t.Errorf("Run(%s) = nil, want an error", tt.name)
			}
		})
	}
}

func TestParseKEK(t *testing.T) {
	valid := strings.Repeat("ab", seal.KeySize)
	tests := []struct {
		name    string
		give    string
		wantErr bool
	}{
		{"hex", valid, false},
		{"hex with newline", valid + "\n", false},
		{"short", valid[:62], true},
		{"long", valid + "ab", true},
		{"odd length", valid[:63], true},
		{"not hex", strings.Repeat("zz", seal.KeySize), true},
		{"empty", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := privacy.ParseKEK(tt.give)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseKEK(%q) error = %v, want error %v", tt.give, err, tt.wantErr)
			}
			if !tt.wantErr && hex.EncodeToString(k[:]) != valid {
				t.Errorf("ParseKEK(%q) returned another key", tt.give)
			}
		})
	}
}

func TestLoadOrCreateKEK(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "kek")
	first, err := privacy.LoadOrCreateKEK(path)
	if err != nil {
		t.Fatal(err)
	}
	if first == (seal.Key{}) {
		t.Fatal("LoadOrCreateKEK() created the zero key")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("KEK file mode = %v, want %v", mode, os.FileMode(0o600))
	}
	again, err := privacy.LoadOrCreateKEK(path)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Error("LoadOrCreateKEK() second call returned another key")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if parsed, err := privacy.ParseKEK(string(b)); err != nil || parsed != first {
		t.Errorf("ParseKEK(file) = %v, want the created key", err)
	}

	bad := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := privacy.LoadOrCreateKEK(bad); err == nil {
		t.Error("LoadOrCreateKEK(file of garbage) = nil error, want an error")
	}
}

func TestLoadOrCreateKEKConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kek")
	const callers = 8
	keys := make([]seal.Key, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			var err error
			if keys[i], err = privacy.LoadOrCreateKEK(path); err != nil {
				t.Errorf("LoadOrCreateKEK() error = %v", err)
			}
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if k != keys[0] {
			t.Fatal("concurrent LoadOrCreateKEK() calls returned different keys")
		}
	}
}
