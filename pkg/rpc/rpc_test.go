package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/parley-chat/parley/pkg/auth"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
)

type echoArgs struct {
	Text string `json:"text"`
}

func TestCallServePing(t *testing.T) {
	s := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, s)
	ctx := t.Context()
	var calls atomic.Int64
	serve(t, nc, nil, rpc.Group{Routes: []rpc.Route{{Subject: "test.echo", Handler: rpc.Handle(func(_ context.Context, a echoArgs) (echoArgs, error) {
		calls.Add(1)
		switch a.Text {
		case "":
			return echoArgs{}, rpc.Errorf(rpc.CodeInvalid, "empty text")
		case "boom":
			return echoArgs{}, errors.New("database on fire")
		}
		return a, nil
	})}}})

	tests := []struct {
		name     string
		give     string
		want     string
		wantCode rpc.Code
	}{
		{name: "result", give: "hi", want: "hi"},
		{name: "coded error crosses the wire", give: "", wantCode: rpc.CodeInvalid},
		{name: "other errors are internal and say nothing", give: "boom", wantCode: rpc.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got echoArgs
			err := rpc.Call(ctx, nc, "test.echo", echoArgs{Text: tt.give}, &got)
			if tt.wantCode != "" {
				if code := rpc.CodeOf(err); code != tt.wantCode {
					t.Fatalf("Call(%q) code = %v (%v), want %v", tt.give, code, err, tt.wantCode)
				}
				if tt.wantCode == rpc.CodeInternal && err.Error() != "internal: internal error" {
					t.Errorf("internal error leaks its cause: %v", err)
				}
				return
			}
			if err != nil || got.Text != tt.want {
				t.Errorf("Call(%q) = %q, %v; want %q", tt.give, got.Text, err, tt.want)
			}
		})
	}

	before := calls.Load()
	if err := rpc.Ping(ctx, nc, "test.echo"); err != nil {
		t.Errorf("Ping(served) = %v, want nil", err)
	}
	if calls.Load() != before {
		t.Error("Ping called the handler")
	}
	if err := rpc.Ping(ctx, nc, "test.nobody"); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("Ping(unserved) = %v, want %v", err, nats.ErrNoResponders)
	}
	if code := rpc.CodeOf(rpc.Call(ctx, nc, "test.nobody", echoArgs{}, nil)); code != rpc.CodeUnavailable {
		t.Errorf("Call(unserved) code = %v, want %v", code, rpc.CodeUnavailable)
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name string
		give error
		want bool
	}{
		{"no responders", fmt.Errorf("call: %w", nats.ErrNoResponders), true},
		{"timeout", nats.ErrTimeout, true},
		{"deadline", context.DeadlineExceeded, true},
		{"connection closed", nats.ErrConnectionClosed, true},
		{"reconnecting, nothing buffered", fmt.Errorf("call: %w", nats.ErrReconnectBufExceeded), true},
		{"stale connection", nats.ErrStaleConnection, true},
		{"no response from the stream", fmt.Errorf("append: %w", jetstream.ErrNoStreamResponse), true},
		{"JetStream temporarily unavailable", &jetstream.APIError{Code: 503, ErrorCode: 10008}, true},
		{"JetStream not enabled", jetstream.ErrJetStreamNotEnabled, true},
		{"stream between leaders", fmt.Errorf("append: %w", &jetstream.APIError{Code: 500, ErrorCode: 10009}), true},
		{"stream offline", &jetstream.APIError{Code: 500, ErrorCode: 10118}, true},
		{"wrong last sequence", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, false},
		{"stream not found", jetstream.ErrStreamNotFound, false},
		{"other", errors.New("disk on fire"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rpc.Unavailable(tt.give); got != tt.want {
				t.Errorf("Unavailable(%v) = %v, want %v", tt.give, got, tt.want)
			}
			wantCode := rpc.CodeInternal
			if tt.want {
				wantCode = rpc.CodeUnavailable
			}
			if got := rpc.CodeOf(tt.give); got != wantCode {
				t.Errorf("CodeOf(%v) = %v, want %v", tt.give, got, wantCode)
			}
		})
	}
}

// TestDeadlineTravels checks that a request carries its deadline and its
// server keeps it: the handler's context ends at the deadline the caller
// sent, a request that arrives after it is answered unavailable without
// the handler being called (its caller gave up and answered 503: acting on
// it now would store what was refused), and one without a deadline gets
// DefaultTimeout.
func TestDeadlineTravels(t *testing.T) {
	s := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, s)
	var (
		calls    atomic.Int64
		deadline atomic.Pointer[time.Time]
	)
	serve(t, nc, nil, rpc.Group{Routes: []rpc.Route{{Subject: "test.deadline", Handler: rpc.Handle(func(ctx context.Context, a echoArgs) (echoArgs, error) {
		calls.Add(1)
		d, ok := ctx.Deadline()
		if !ok {
			return a, errors.New("no deadline")
		}
		deadline.Store(&d)
		return a, nil
	})}}})
	body, err := json.Marshal(echoArgs{Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	// raw sends a request with header value h (none when empty), as a
	// caller that is not rpc.Call, or a request held on its way, arrives.
	raw := func(h string) error {
		m := nats.NewMsg("test.deadline")
		m.Data = body
		if h != "" {
			m.Header.Set(rpc.DeadlineHeader, h)
		}
		r, err := nc.RequestMsg(m, rpc.DefaultTimeout)
		if err != nil {
			return err
		}
		if code := r.Header.Get(micro.ErrorCodeHeader); code != "" {
			return &rpc.Error{Code: rpc.Code(code), Message: r.Header.Get(micro.ErrorHeader)}
		}
		return nil
	}
	ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

	tests := []struct {
		name string
		send func() error
		// wantCode is the code answered, "" for a result; wantFrom and
		// wantTo bound the handler's deadline, when it is called.
		wantCode         rpc.Code
		wantFrom, wantTo func(sent time.Time) time.Time
	}{
		{
			name: "call: the server's deadline leaves room for the reply",
			send: func() error {
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
				defer cancel()
				return rpc.Call(ctx, nc, "test.deadline", echoArgs{Text: "hi"}, nil)
			},
			// 2 s less a quarter, at most 500 ms, in whole milliseconds.
			wantFrom: func(sent time.Time) time.Time { return sent.Add(1500*time.Millisecond - time.Millisecond) },
			wantTo:   func(sent time.Time) time.Time { return sent.Add(1500*time.Millisecond + 50*time.Millisecond) },
		},
		{
			name:     "deadline passed on the way: not acted on",
			send:     func() error { return raw(ms(time.Now().Add(-time.Millisecond))) },
			wantCode: rpc.CodeUnavailable,
		},
		{
			name:     "malformed deadline",
			send:     func() error { return raw("soon") },
			wantCode: rpc.CodeInvalid,
		},
		{
			name:     "no deadline: DefaultTimeout from its arrival",
			send:     func() error { return raw("") },
			wantFrom: func(sent time.Time) time.Time { return sent.Add(rpc.DefaultTimeout) },
			wantTo:   func(sent time.Time) time.Time { return time.Now().Add(rpc.DefaultTimeout) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			deadline.Store(nil)
			sent := time.Now()
			err := tt.send()
			if tt.wantCode != "" {
				if code := rpc.CodeOf(err); code != tt.wantCode {
					t.Errorf("request code = %v (%v), want %v", code, err, tt.wantCode)
				}
				if n := calls.Load() - before; n != 0 {
					t.Errorf("handler called %d times, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("request = %v, want a result", err)
			}
			got := *deadline.Load()
			if from, to := tt.wantFrom(sent), tt.wantTo(sent); got.Before(from) || got.After(to) {
				t.Errorf("handler's deadline = %v after sending, want between %v and %v", got.Sub(sent), from.Sub(sent), to.Sub(sent))
			}
		})
	}
}

func TestPingAnswersHealth(t *testing.T) {
	s := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, s)
	var health rpc.Health
	serve(t, nc, &health, rpc.Group{Routes: []rpc.Route{{Subject: "test.health", Handler: rpc.Handle(func(_ context.Context, a echoArgs) (echoArgs, error) { return a, nil })}}})

	health.Set("consumer", errors.New("stream not found"))
	err := rpc.Ping(t.Context(), nc, "test.health")
	if rpc.CodeOf(err) != rpc.CodeUnavailable || !strings.Contains(err.Error(), "consumer: stream not found") {
		t.Errorf("Ping(failing part) = %v, want %s naming the part", err, rpc.CodeUnavailable)
	}
	health.Set("consumer", nil)
	if err := rpc.Ping(t.Context(), nc, "test.health"); err != nil {
		t.Errorf("Ping(well) = %v, want nil", err)
	}
}

// serve serves groups as the service "parley-test" in queue group "q"
// until the test ends.
func serve(t *testing.T, nc *nats.Conn, health *rpc.Health, groups ...rpc.Group) *rpc.Served {
	t.Helper()
	served, err := rpc.Serve(t.Context(), nc, slog.New(slog.DiscardHandler), rpc.Service{
		Name: "parley-test", Version: "1.2.3", Description: "a test", Queue: "q", Health: health, Groups: groups,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(served.Stop)
	return served
}

// TestErrorHeaders checks the wire: an error is micro's error headers
// carrying the Code, and a body that keeps what the headers lack.
func TestErrorHeaders(t *testing.T) {
	s := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, s)
	serve(t, nc, nil, rpc.Group{Prefix: "test", Routes: []rpc.Route{{Subject: "test.limited", Handler: rpc.Handle(func(context.Context, echoArgs) (echoArgs, error) {
		return echoArgs{}, &rpc.Error{Code: rpc.CodeLimited, Message: "slow down", RetryAfter: 7}
	})}}})

	m, err := nc.Request("test.limited", []byte(`{}`), rpc.DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Header.Get(micro.ErrorCodeHeader), string(rpc.CodeLimited); got != want {
		t.Errorf("%s = %q, want %q", micro.ErrorCodeHeader, got, want)
	}
	if got, want := m.Header.Get(micro.ErrorHeader), "slow down"; got != want {
		t.Errorf("%s = %q, want %q", micro.ErrorHeader, got, want)
	}
	err = rpc.Call(t.Context(), nc, "test.limited", echoArgs{}, nil)
	var e *rpc.Error
	if !errors.As(err, &e) || e.Code != rpc.CodeLimited || e.RetryAfter != 7 {
		t.Errorf("Call() = %#v, want %s with RetryAfter 7", err, rpc.CodeLimited)
	}
}

// TestDiscovery checks what `nats micro ls|info|stats` ask: every
// endpoint listed under its group's subject and queue group, and counted.
func TestDiscovery(t *testing.T) {
	s := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, s)
	echo := rpc.Handle(func(_ context.Context, a echoArgs) (echoArgs, error) {
		if a.Text == "" {
			return a, rpc.Errorf(rpc.CodeInvalid, "empty text")
		}
		return a, nil
	})
	serve(t, nc, nil,
		rpc.Group{Prefix: "test.pub", Routes: []rpc.Route{{Subject: "test.pub.echo", Handler: echo}, {Subject: "test.pub.deep.echo", Handler: echo}}},
		rpc.Group{Prefix: "test.internal", Internal: true, Routes: []rpc.Route{{Subject: "test.internal.secret.echo", Handler: echo}}},
	)
	for _, text := range []string{"hi", ""} {
		_ = rpc.Call(t.Context(), nc, "test.pub.echo", echoArgs{Text: text}, nil)
	}

	var ping micro.Ping
	discover(t, nc, micro.PingVerb, &ping)
	if ping.Name != "parley-test" || ping.Version != "1.2.3" {
		t.Errorf("PING = %+v, want parley-test 1.2.3", ping.ServiceIdentity)
	}
	var info micro.Info
	discover(t, nc, micro.InfoVerb, &info)
	got := map[string]string{}
	for _, e := range info.Endpoints {
		got[e.Name] = e.Subject + " " + e.QueueGroup
	}
	want := map[string]string{"echo": "test.pub.echo q", "deep-echo": "test.pub.deep.echo q", "secret-echo": "test.internal.secret.echo q"}
	if info.Description != "a test" || !cmp.Equal(got, want) {
		t.Errorf("INFO = %q, %v; want %q, %v", info.Description, got, "a test", want)
	}
	var stats micro.Stats
	discover(t, nc, micro.StatsVerb, &stats)
	for _, e := range stats.Endpoints {
		if e.Name != "echo" {
			continue
		}
		var d rpc.EndpointData
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		if e.NumRequests != 2 || d.Answered != 2 || d.Errors[rpc.CodeInvalid] != 1 {
			t.Errorf("STATS echo = %d requests, data %+v; want 2 requests, 2 answered, 1 %s", e.NumRequests, d, rpc.CodeInvalid)
		}
		return
	}
	t.Errorf("STATS lists no endpoint echo: %+v", stats.Endpoints)
}

// discover asks the service's verb subject, as `nats micro` does, and
// decodes the answer into v.
func discover(t *testing.T, nc *nats.Conn, verb micro.Verb, v any) {
	t.Helper()
	subject, err := micro.ControlSubject(verb, "parley-test", "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := nc.Request(subject, nil, rpc.DefaultTimeout)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if err := json.Unmarshal(m.Data, v); err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
}

// TestSystemPrincipal checks that the system principal is accepted on
// internal endpoints, and only there.
func TestSystemPrincipal(t *testing.T) {
	s := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, s)
	whoami := rpc.Handle(func(_ context.Context, r rpc.Request[echoArgs]) (auth.Principal, error) { return r.Principal, nil })
	serve(t, nc, nil,
		rpc.Group{Prefix: "test.pub", Routes: []rpc.Route{{Subject: "test.pub.whoami", Handler: whoami}}},
		rpc.Group{Prefix: "test.internal", Internal: true, Routes: []rpc.Route{{Subject: "test.internal.sys.whoami", Handler: whoami}}},
	)
	system := auth.System("demo", "privacy")
	visitor := auth.Principal{Tenant: "demo", ID: "v1", Role: auth.RoleVisitor}
	tests := []struct {
		name     string
		subject  string
		give     auth.Principal
		wantCode rpc.Code
	}{
		{name: "internal endpoint, system", subject: "test.internal.sys.whoami", give: system},
		{name: "internal endpoint, a user", subject: "test.internal.sys.whoami", give: visitor, wantCode: rpc.CodeForbidden},
		{name: "internal endpoint, no principal", subject: "test.internal.sys.whoami", wantCode: rpc.CodeForbidden},
		{name: "public endpoint, a user", subject: "test.pub.whoami", give: visitor},
		{name: "public endpoint, posing as system", subject: "test.pub.whoami", give: system, wantCode: rpc.CodeForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got auth.Principal
			err := rpc.Call(t.Context(), nc, tt.subject, rpc.Request[echoArgs]{Principal: tt.give}, &got)
			if tt.wantCode != "" {
				if rpc.CodeOf(err) != tt.wantCode {
					t.Errorf("Call(%s as %v) = %v, want %s", tt.subject, tt.give, err, tt.wantCode)
				}
				return
			}
			if err != nil || got != tt.give {
				t.Errorf("Call(%s as %v) = %v, %v; want the principal back", tt.subject, tt.give, got, err)
			}
		})
	}
}

// TestStopAnswersInFlight checks the drain: requests a handler is still
// working on when Stop is called are answered before Stop returns, so the
// connection may close right after, and none arrive after.
func TestStopAnswersInFlight(t *testing.T) {
	s := natstest.Start(t, "")
	nc, _ := natstest.Connect(t, s)
	server, _ := natstest.Connect(t, s)
	release := make(chan struct{})
	var started atomic.Int64
	served := serve(t, server, nil, rpc.Group{Routes: []rpc.Route{{Subject: "test.slow", Handler: rpc.Handle(func(_ context.Context, a echoArgs) (echoArgs, error) {
		started.Add(1)
		<-release
		return a, nil
	})}}})

	const n = 5
	answers := make(chan error, n)
	for i := range n {
		go func() {
			var got echoArgs
			err := rpc.Call(context.Background(), nc, "test.slow", echoArgs{Text: fmt.Sprint(i)}, &got)
			if err == nil && got.Text != fmt.Sprint(i) {
				err = fmt.Errorf("answer %q, want %q", got.Text, fmt.Sprint(i))
			}
			answers <- err
		}()
	}
	natstest.Until(t, 10*time.Second, "every request in flight", func() bool { return started.Load() == n })
	stopped := make(chan struct{})
	go func() {
		served.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("Stop returned with requests in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-stopped
	server.Close()
	for range n {
		if err := <-answers; err != nil {
			t.Errorf("request in flight at Stop: %v, want its answer", err)
		}
	}
	if err := rpc.Call(t.Context(), nc, "test.slow", echoArgs{}, nil); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("Call() after Stop = %v, want %v", err, nats.ErrNoResponders)
	}
}
