package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/chat/internal/app"
	"github.com/parley-chat/parley/services/chat/internal/memstore"
)

// The use cases on the in-memory adapters: no bus, no server.

const tenant = "acme"

var (
	agent      = auth.Principal{Tenant: tenant, ID: "a1", Role: auth.RoleAgent}
	supervisor = auth.Principal{Tenant: tenant, ID: "s1", Role: auth.RoleSupervisor}
)

func visitorN(i int) auth.Principal {
	return auth.Principal{Tenant: tenant, ID: fmt.Sprint("v", i), Role: auth.RoleVisitor}
}

// keys is app.Keys in memory: every subject has keys, made when first
// asked, until erased.
type keys struct {
	mu     sync.Mutex
	keys   map[string]personkey.Keys
	erased map[string]bool
}

func (k *keys) Get(_ context.Context, tenant, subject string) (personkey.Keys, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys, k.erased = make(map[string]personkey.Keys), make(map[string]bool)
	}
	id := tenant + "/" + subject
	if k.erased[id] {
		// As personkey.Cache answers an erased subject.
		return personkey.Keys{}, fmt.Errorf("%w: %w", personkey.ErrNotFound, personkey.ErrErased)
	}
	if ks, ok := k.keys[id]; ok {
		return ks, nil
	}
	data, err := seal.NewKey()
	if err != nil {
		return personkey.Keys{}, err
	}
	k.keys[id] = personkey.Keys{Data: data}
	return k.keys[id], nil
}

func (k *keys) Erased(_ context.Context, tenant, subject string) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.erased[tenant+"/"+subject], nil
}

// erase destroys the subject's keys, as the privacy service does.
func (k *keys) erase(tenant, subject string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, tenant+"/"+subject)
	if k.erased == nil {
		k.erased = make(map[string]bool)
	}
	k.erased[tenant+"/"+subject] = true
}

// world is the storage instances of the chat service share.
type world struct {
	events   *memstore.Store
	view     *memstore.View
	profiles *memstore.Profiles
	keys     *keys
	audited  auditTrail
}

func newWorld() *world {
	return &world{events: &memstore.Store{}, view: &memstore.View{}, profiles: &memstore.Profiles{}, keys: &keys{}}
}

// auditTrail is the privacy service's audit trail as the instances of a
// world write to it.
type auditTrail struct {
	mu   sync.Mutex
	acts []privacyapi.AppendAuditArgs
}

func (a *auditTrail) Audit(_ context.Context, act privacyapi.AppendAuditArgs) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acts = append(a.acts, act)
	return nil
}

func (a *auditTrail) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acts)
}

// instance is one chat service on w, and the sequence its follower reached.
type instance struct {
	*app.Service
	w *world
	// following serialises the calls of Project, as one follower makes
	// them; followed is the sequence it reached.
	following sync.Mutex
	followed  uint64
	conflicts int
	// onHead, when set, runs when the instance reads the store's head,
	// instead of its follower catching up then (see headStore).
	onHead func()
}

// headStore is the world's event store as an instance uses it: when the
// instance reads the store's head, to wait for its follower to get there,
// the follower catches up, as one running beside it would.
type headStore struct {
	*memstore.Store
	in *instance
}

func (s headStore) Head(ctx context.Context) (uint64, error) {
	h, err := s.Store.Head(ctx)
	if err != nil {
		return 0, err
	}
	if s.in.onHead != nil {
		s.in.onHead()
		return h, nil
	}
	return h, s.in.catchUp(ctx)
}

func (w *world) start(t testing.TB) *instance {
	t.Helper()
	return w.startWith(t, app.Options{})
}

// startWith starts an instance with o; its OnConflict is the instance's.
func (w *world) startWith(t testing.TB, o app.Options) *instance {
	t.Helper()
	in := &instance{w: w}
	o.OnConflict = func() { in.conflicts++ }
	if o.Auditor == nil {
		o.Auditor = &w.audited
	}
	if o.Profiles == nil {
		o.Profiles = w.profiles
	}
	in.Service = app.New(headStore{Store: w.events, in: in}, w.view, w.keys, o)
	applied, err := in.Restore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	in.followed = applied
	return in
}

// follow hands the instance every event stored since it last followed, as
// its follower of the store does, then writes the view as its writer does
// next.
func (in *instance) follow(t testing.TB) {
	t.Helper()
	in.project(t)
	if err := in.WriteView(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
}

// project is follow without the view's write: what a crash before it leaves.
func (in *instance) project(t testing.TB) {
	t.Helper()
	if err := in.catchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// catchUp hands the instance every event stored since it last followed.
func (in *instance) catchUp(ctx context.Context) error {
	in.following.Lock()
	defer in.following.Unlock()
	for _, r := range in.w.events.Since(in.followed) {
		if err := in.Project(ctx, r); err != nil {
			return err
		}
		in.followed = r.Seq
	}
	return nil
}

func (in *instance) open(t testing.TB, p auth.Principal, text string) string {
	t.Helper()
	res, err := in.Open(t.Context(), p, chatapi.OpenArgs{Text: text})
	if err != nil {
		t.Fatal(err)
	}
	return res.ID
}

// list reads p's inbox whole, a page of limit at a time.
func (in *instance) list(t testing.TB, p auth.Principal, status string, limit int) []string {
	t.Helper()
	out := []string{}
	err := chatapi.ReadPages(func(after *string) (*string, error) {
		res, err := in.List(t.Context(), p, chatapi.ListArgs{Page: chatapi.Page[string]{After: deref(after), Limit: limit}, Status: status})
		for _, s := range res.Conversations {
			out = append(out, s.ID)
		}
		return res.Next, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// messages reads a page of the transcript through in.
func (in *instance) messages(t testing.TB, p auth.Principal, args chatapi.MessagesArgs) (chatapi.MessagesResult, error) {
	t.Helper()
	var res chatapi.MessagesResult
	raw, err := in.Messages(t.Context(), p, args)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("Messages(%+v) answered %s: %v", args, raw, err)
	}
	return res, nil
}

// export reads a page of the visitor's export through in.
func (in *instance) export(t testing.TB, p auth.Principal, args chatapi.ExportArgs) (chatapi.ExportResult, error) {
	t.Helper()
	var res chatapi.ExportResult
	raw, err := in.Export(t.Context(), p, args)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("Export(%+v) answered %s: %v", args, raw, err)
	}
	return res, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestPacedWritersReadTheirWrites has two writers post in turn through two
// instances whose followers never run: each decides on the conversation as
// the store holds it, so no append loses a race, and a read through the
// other instance shows the post at once.
func TestPacedWritersReadTheirWrites(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	conv := a.open(t, visitorN(1), "hello")
	writers := []auth.Principal{visitorN(1), agent}
	for i := range 20 {
		via, other := a, b
		if i%2 == 1 {
			via, other = b, a
		}
		res, err := via.Post(t.Context(), writers[i%2], chatapi.PostArgs{Conversation: conv, Text: fmt.Sprint("m", i)})
		if err != nil {
			t.Fatalf("Post(m%d) = %v", i, err)
		}
		page, err := other.messages(t, supervisor, chatapi.MessagesArgs{Conversation: conv, Page: chatapi.Page[uint64]{After: res.Seq - 1}})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Messages) != 1 || page.Messages[0].ID != res.ID {
			t.Fatalf("Messages() through the other instance after Post(m%d) = %+v, want it", i, page.Messages)
		}
		sum, err := other.Get(t.Context(), writers[i%2], chatapi.ConversationArgs{Conversation: conv})
		if err != nil {
			t.Fatal(err)
		}
		if !sum.LastMessageAt.Equal(res.At) {
			t.Fatalf("Get() through the other instance after Post(m%d): last_message_at %v, want %v", i, sum.LastMessageAt, res.At)
		}
	}
	if a.conflicts+b.conflicts != 0 {
		t.Errorf("%d appends lost a race, want none for paced writers", a.conflicts+b.conflicts)
	}
	if n := w.audited.len(); n != 20 {
		t.Errorf("%d staff reads audited, want 20", n)
	}
}

// TestClosedConversationsLeaveMemory closes more conversations than an
// instance caches: it holds the open ones and at most app.ClosedCached
// closed ones, yet lists, reads and rates every one of them, and a restart
// loads the open ones only.
func TestClosedConversationsLeaveMemory(t *testing.T) {
	w := newWorld()
	in := w.start(t)
	in.follow(t)
	const closed, open = app.ClosedCached + 200, 50
	var all, opened []string
	for i := range closed + open {
		v := visitorN(i)
		conv := in.open(t, v, "hi")
		if i < closed {
			if _, err := in.Close(t.Context(), v, chatapi.ConversationArgs{Conversation: conv}); err != nil {
				t.Fatal(err)
			}
		} else {
			opened = append([]string{conv}, opened...)
		}
		all = append([]string{conv}, all...) // newest first, as listed
	}
	in.follow(t)
	if got, want := app.Held(in.Service), app.ClosedCached+open; got > want {
		t.Errorf("instance holds %d conversations, want at most %d", got, want)
	}
	if diff := cmp.Diff(all, in.list(t, supervisor, "", 100)); diff != "" {
		t.Errorf("List() mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(opened, in.list(t, supervisor, chatapi.StatusOpen, 7)); diff != "" {
		t.Errorf("List(open) mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(all[open:], in.list(t, supervisor, chatapi.StatusClosed, 33)); diff != "" {
		t.Errorf("List(closed) mismatch (-want +got):\n%s", diff)
	}
	if got := in.list(t, visitorN(0), "", 10); !cmp.Equal(got, []string{all[len(all)-1]}) {
		t.Errorf("List() as the first visitor = %v, want their one conversation %s", got, all[len(all)-1])
	}
	// The first closed was evicted long ago: read from the view.
	first := all[len(all)-1]
	if _, err := in.Rate(t.Context(), visitorN(0), chatapi.RateArgs{Conversation: first, Score: 5}); err != nil {
		t.Errorf("Rate(evicted) = %v", err)
	}
	if _, err := in.Rate(t.Context(), visitorN(0), chatapi.RateArgs{Conversation: first, Score: 5}); err == nil {
		t.Error("Rate(evicted) twice succeeded, want refused")
	}
	in.follow(t)

	again := w.start(t)
	if got := app.Held(again.Service); got != open {
		t.Errorf("restarted instance holds %d conversations, want the %d open ones", got, open)
	}
	again.follow(t)
	if diff := cmp.Diff(all, again.list(t, supervisor, "", 100)); diff != "" {
		t.Errorf("List() after restart mismatch (-want +got):\n%s", diff)
	}
	res, err := again.messages(t, visitorN(0), chatapi.MessagesArgs{Conversation: first})
	if err != nil || len(res.Messages) != 1 {
		t.Errorf("Messages(closed) after restart = %d messages, %v; want 1", len(res.Messages), err)
	}
}

// TestRefusalDecidedOnTheStore has one instance refuse a command on the
// state it holds, which another instance's write changed: the refusal is
// decided again on the store's state, and the command succeeds with no
// race lost.
func TestRefusalDecidedOnTheStore(t *testing.T) {
	w := newWorld()
	a, b := w.start(t), w.start(t)
	v := visitorN(1)
	conv := a.open(t, v, "hello")
	b.follow(t)
	// b holds the conversation open; a closes it, and b has not followed.
	if _, err := a.Close(t.Context(), v, chatapi.ConversationArgs{Conversation: conv}); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	// Rating needs a closed conversation, which b does not know of yet.
	sum, err := b.Rate(t.Context(), v, chatapi.RateArgs{Conversation: conv, Score: 5})
	if err != nil {
		t.Fatalf("Rate() through the instance that did not see the close = %v, want it rated", err)
	}
	if sum.Status != "closed" {
		t.Errorf("Rate() status = %q, want closed", sum.Status)
	}
	if a.conflicts+b.conflicts != 0 {
		t.Errorf("%d appends lost a race, want none", a.conflicts+b.conflicts)
	}
	// A refusal that holds on the store's state stands.
	if _, err := b.Rate(t.Context(), visitorN(2), chatapi.RateArgs{Conversation: conv, Score: 5}); err == nil {
		t.Error("Rate() by another visitor succeeded, want it refused")
	}
}
