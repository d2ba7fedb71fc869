package chat_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/seal"

	"github.com/parley-chat/parley/services/chat"
)

// keyService answers personkey.GetSubject and
// privacyapi.AppendAuditSubject from memory, standing in for the privacy
// service.
type keyService struct {
	mu   sync.Mutex
	keys map[[2]string]personkey.Keys
	// unreadable subjects have keys the service cannot unwrap; erased
	// subjects' keys are destroyed; broken subjects' requests fail with an
	// error asking again does not change. While down, every request is
	// answered unavailable.
	unreadable, erased, broken map[[2]string]bool
	down                       bool
	// audited are the acts appended to the audit trail, in order; while
	// auditDown is set every append is refused.
	audited   []privacyapi.AppendAuditArgs
	auditDown bool
}

func startKeyService(t testing.TB, s *natsembed.Server) *keyService {
	t.Helper()
	nc, _ := natstest.Connect(t, s)
	ks := &keyService{keys: make(map[[2]string]personkey.Keys),
		unreadable: make(map[[2]string]bool), erased: make(map[[2]string]bool), broken: make(map[[2]string]bool)}
	h := rpc.Handle(func(_ context.Context, req personkey.Request) (personkey.Keys, error) {
		ks.mu.Lock()
		defer ks.mu.Unlock()
		id := [2]string{req.Tenant, req.Person}
		switch {
		case ks.down:
			return personkey.Keys{}, rpc.Errorf(rpc.CodeUnavailable, "store unavailable")
		case ks.broken[id]:
			return personkey.Keys{}, rpc.Errorf(rpc.CodeInternal, "internal error")
		case ks.erased[id]:
			return personkey.Keys{}, rpc.Errorf(rpc.CodeGone, "subject erased")
		case ks.unreadable[id]:
			return personkey.Keys{}, rpc.Errorf(rpc.CodeUnreadable, "wrapped under another key-encryption key")
		}
		k, ok := ks.keys[id]
		switch {
		case ok && req.Probe:
			return personkey.Keys{}, nil
		case ok:
			return k, nil
		}
		if !req.Create {
			return personkey.Keys{}, rpc.Errorf(rpc.CodeNotFound, "no keys")
		}
		return ks.create(req.Tenant, req.Person)
	})
	served, err := rpc.Serve(t.Context(), nc, slog.New(slog.DiscardHandler), rpc.Service{Name: "fake-keys", Queue: "keys",
		Groups: []rpc.Group{{Routes: []rpc.Route{{Subject: personkey.GetSubject, Handler: h}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(served.Stop)
	audit := rpc.Handle(func(_ context.Context, req rpc.Request[privacyapi.AppendAuditArgs]) (struct{}, error) {
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if ks.auditDown {
			return struct{}{}, rpc.Errorf(rpc.CodeUnavailable, "audit trail unavailable")
		}
		ks.audited = append(ks.audited, req.Args)
		return struct{}{}, nil
	})
	auditing, err := rpc.Serve(t.Context(), nc, slog.New(slog.DiscardHandler), rpc.Service{Name: "fake-audit", Queue: "audit",
		Groups: []rpc.Group{{Prefix: "parley.internal.privacy", Internal: true, Routes: []rpc.Route{{Subject: privacyapi.AppendAuditSubject, Handler: audit}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auditing.Stop)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ks
}

func (ks *keyService) create(tenant, subject string) (personkey.Keys, error) {
	data, err := seal.NewKey()
	if err != nil {
		return personkey.Keys{}, err
	}
	pseudo, err := seal.NewKey()
	if err != nil {
		return personkey.Keys{}, err
	}
	k := personkey.Keys{Data: data, Pseudonym: pseudo}
	ks.keys[[2]string{tenant, subject}] = k
	return k, nil
}

// startKeyed starts a server and the key service on it, holding the keys
// of tenant's subjects.
func startKeyed(t testing.TB, subjects ...string) (*natsembed.Server, *keyService) {
	t.Helper()
	s := natstest.Start(t, "")
	ks := startKeyService(t, s)
	ks.add(t, tenant, subjects...)
	return s, ks
}

// add gives the subjects keys, as registering a visitor does.
func (ks *keyService) add(t testing.TB, tenant string, subjects ...string) {
	t.Helper()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for _, s := range subjects {
		if _, err := ks.create(tenant, s); err != nil {
			t.Fatal(err)
		}
	}
}

// makeUnreadable leaves the subject's keys in place, but unreadable to the
// service, as after a restore under a newer key-encryption key.
func (ks *keyService) makeUnreadable(tenant, subject string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.unreadable[[2]string{tenant, subject}] = true
}

// audits returns the acts appended to the audit trail so far.
func (ks *keyService) audits() []privacyapi.AppendAuditArgs {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return slices.Clone(ks.audited)
}

func (ks *keyService) setAuditDown(down bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.auditDown = down
}

// erase destroys the subject's keys, leaving a tombstone, as an erasure
// does.
func (ks *keyService) erase(tenant, subject string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	delete(ks.keys, [2]string{tenant, subject})
	ks.erased[[2]string{tenant, subject}] = true
}

// drop loses the subject's keys with no erasure, as a key store recreated
// empty before a restore does.
func (ks *keyService) drop(tenant, subject string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	delete(ks.keys, [2]string{tenant, subject})
}

// breakFor makes every request for the subject fail for good.
func (ks *keyService) breakFor(tenant, subject string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.broken[[2]string{tenant, subject}] = true
}

func (ks *keyService) setDown(down bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.down = down
}

// syncBuffer collects log output written from many goroutines.
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
	return bytes.Clone(b.buf.Bytes())
}

// instance is one running chat service.
type instance struct {
	keys *personkey.Cache
	reg  *prometheus.Registry
	logs *syncBuffer
	stop func() error
}

// startChat runs the chat service on its own connection to s and waits
// until it answers requests. The service is stopped when the test ends if
// the test did not stop it. opts change its Deps.
func startChat(t testing.TB, s *natsembed.Server, opts ...func(*chat.Deps)) *instance {
	t.Helper()
	settingsBucket(t, s)
	nc, _ := natstest.Connect(t, s)
	cache, err := personkey.NewCache(nc)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{keys: cache, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	d := chat.Deps{
		NC:       nc,
		Log:      slog.New(slog.NewJSONHandler(in.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Keys:     cache,
		Registry: in.reg,
	}
	for _, o := range opts {
		o(&d)
	}
	go func() { done <- chat.Run(ctx, d) }()
	var once sync.Once
	var runErr error
	in.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				runErr = errors.New("Run did not return 10s after its context was cancelled")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := in.stop(); err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	})
	waitReady(t, s, done)
	return in
}

// waitReady pings the list subject until some chat instance answers it
// ready: one that has subscribed every subject, where a list answered
// may come before the subjects added after it.
func waitReady(t testing.TB, s *natsembed.Server, done <-chan error) {
	t.Helper()
	nc, _ := natstest.Connect(t, s)
	natstest.Eventually(t, time.Minute, "chat service ready", func() error { // generous: a measurement folds much of CHAT first
		err := rpc.Ping(t.Context(), nc, chatapi.ListSubject)
		select {
		case err := <-done:
			t.Fatalf("Run() = %v before serving", err)
		default:
		}
		if err != nil && !errors.Is(err, nats.ErrNoResponders) && rpc.CodeOf(err) != rpc.CodeUnavailable {
			t.Fatalf("chat service not ready: %v", err)
		}
		return err
	})
}

// conflicts reads the instance's parley_chat_append_conflicts_total.
func (in *instance) conflicts(t *testing.T) float64 {
	t.Helper()
	mfs, err := in.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "parley_chat_append_conflicts_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("parley_chat_append_conflicts_total is not registered")
	return 0
}

// client calls the chat subjects as a principal.
type client struct {
	t  testing.TB
	nc *nats.Conn
}

func newClient(t testing.TB, s *natsembed.Server) client {
	t.Helper()
	nc, _ := natstest.Connect(t, s)
	return client{t: t, nc: nc}
}

// call sends args on subject as p and decodes the result into resp.
func (c client) call(p auth.Principal, subject string, args, resp any) error {
	return rpc.Call(c.t.Context(), c.nc, subject, rpc.Request[any]{Principal: p, Args: args}, resp)
}

// must is call for calls that have to succeed.
func (c client) must(p auth.Principal, subject string, args, resp any) {
	c.t.Helper()
	if err := c.call(p, subject, args, resp); err != nil {
		c.t.Fatalf("%s as %s %s: %v", subject, p.Role, p.ID, err)
	}
}

func (c client) open(p auth.Principal, text string) string {
	c.t.Helper()
	var res chatapi.OpenResult
	c.must(p, chatapi.OpenSubject, chatapi.OpenArgs{Text: text}, &res)
	return res.ID
}

func (c client) post(p auth.Principal, conv, text string) chatapi.PostResult {
	c.t.Helper()
	var res chatapi.PostResult
	c.must(p, chatapi.PostSubject, chatapi.PostArgs{Conversation: conv, Text: text}, &res)
	return res
}

// messages reads a transcript whole, page after page.
func (c client) messages(p auth.Principal, conv string) []chatapi.Message {
	c.t.Helper()
	var out []chatapi.Message
	err := chatapi.ReadPages(func(after *uint64) (*uint64, error) {
		var res chatapi.MessagesResult
		c.must(p, chatapi.MessagesSubject, chatapi.MessagesArgs{Conversation: conv, Page: chatapi.PageAfter(after)}, &res)
		out = append(out, res.Messages...)
		return res.Next, nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// list reads p's list whole, page after page: newest conversation first.
func (c client) list(p auth.Principal) []chatapi.Summary {
	c.t.Helper()
	out := []chatapi.Summary{}
	err := chatapi.ReadPages(func(after *string) (*string, error) {
		var res chatapi.ListResult
		c.must(p, chatapi.ListSubject, chatapi.ListArgs{Page: chatapi.PageAfter(after)}, &res)
		out = append(out, res.Conversations...)
		return res.Next, nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func principal(tenant string, role auth.Role, id string) auth.Principal {
	return auth.Principal{Tenant: tenant, ID: id, Role: role}
}

func ptr[T any](v T) *T { return &v }
