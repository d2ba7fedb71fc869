// Package rpc is request/reply between Parley's services over core NATS:
// JSON in, JSON out, and errors that keep their meaning across the wire as a
// Code, so the gateway can map them to HTTP status in one place.
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
)

// Code classifies an error for the caller.
type Code string

// The codes. Anything else a handler returns travels as CodeInternal with a
// generic message; the handler's edge logs the cause.
const (
	CodeInvalid     Code = "invalid"
	CodeNotFound    Code = "not_found"
	CodeConflict    Code = "conflict"
	CodeForbidden   Code = "forbidden"
	CodeGone        Code = "gone"
	CodeUnavailable Code = "unavailable"
	// CodeUnreadable means the data exists but this service cannot read
	// it, now or later: a subject's keys wrapped under a key-encryption
	// key the key service does not hold.
	CodeUnreadable Code = "unreadable"
	// CodeLimited means the caller reached one of its limits;
	// Error.RetryAfter says when it may try again.
	CodeLimited  Code = "limited"
	CodeInternal Code = "internal"
)

// Error is an error with a Code. Its Message is shown to API clients, so it
// must never hold personal data.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// RetryAfter, in seconds, is when a CodeLimited call may succeed
	// again; 0 when unknown.
	RetryAfter int `json:"retry_after,omitempty"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err: its *Error's, CodeUnavailable when the bus
// is briefly unavailable (see Unavailable), CodeInternal otherwise.
func CodeOf(err error) Code {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code
	case Unavailable(err):
		return CodeUnavailable
	}
	return CodeInternal
}

// transientJS are the JetStream API errors the server answers with status
// 500 that still pass with time: a stream or cluster between leaders.
var transientJS = []jetstream.ErrorCode{
	10007, // JSClusterNotAssignedErr
	10009, // JSClusterNotLeaderErr
	10118, // JSStreamOfflineErr
	10194, // JSStreamOfflineReasonErrF
}

// Unavailable reports whether err means the bus could not serve a request
// for now, so that the same request may well succeed in a moment: no
// responder, a timeout, a connection closed or draining, a stream without a
// leader (no response from the stream, JetStream answering 503 such as
// "JetStream system temporarily unavailable", or a stream offline or
// between leaders).
func Unavailable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrNoServers),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrConsumerLeadershipChanged):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503 || slices.Contains(transientJS, apiErr.ErrorCode)
	}
	return false
}

// DefaultTimeout bounds a Call whose context has no deadline.
const DefaultTimeout = 5 * time.Second

// Request is what a caller sends: the verified principal acting, and the
// call's arguments.
type Request[T any] struct {
	Principal auth.Principal `json:"principal"`
	Args      T              `json:"args"`
}

type reply struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
}

// Handler serves one subject.
type Handler func(ctx context.Context, data []byte) (any, error)

// Handle adapts a typed function to a Handler.
func Handle[Req, Resp any](fn func(context.Context, Req) (Resp, error)) Handler {
	return func(ctx context.Context, data []byte) (any, error) {
		var req Req
		if err := json.Unmarshal(data, &req); err != nil {
			return nil, Errorf(CodeInvalid, "malformed request: %v", err)
		}
		return fn(ctx, req)
	}
}

// Serve subscribes h to subject in queue group queue, so instances of a
// service share the load. Each request runs in its own goroutine with a
// context cancelled when ctx is. Internal errors are logged here, once. A
// ping (see Ping) is answered without calling h. Services use ServeAll,
// whose Stop also waits for the answers.
func Serve(ctx context.Context, nc *nats.Conn, log *slog.Logger, subject, queue string, h Handler) (*nats.Subscription, error) {
	return serve(ctx, nc, log, subject, queue, nil, new(sync.WaitGroup), h)
}

func serve(ctx context.Context, nc *nats.Conn, log *slog.Logger, subject, queue string, health *Health, inFlight *sync.WaitGroup, h Handler) (*nats.Subscription, error) {
	sub, err := nc.QueueSubscribe(subject, queue, func(m *nats.Msg) {
		inFlight.Go(func() { respond(ctx, log, m, health, h) })
	})
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", subject, err)
	}
	return sub, nil
}

// Route is one subject and the handler that serves it.
type Route struct {
	Subject string
	Handler Handler
}

// Served is a service's routes being served; Stop ends them.
type Served struct {
	subs     []*nats.Subscription
	inFlight sync.WaitGroup
}

// ServeAll serves every route in queue group queue, then flushes, so that
// the server has every subscription before the caller says it is serving.
// A ping of any route answers health's error while it has one (nil
// health: always well). On an error it ends those it made and returns the
// first error.
func ServeAll(ctx context.Context, nc *nats.Conn, log *slog.Logger, queue string, health *Health, routes ...Route) (*Served, error) {
	s := &Served{subs: make([]*nats.Subscription, 0, len(routes))}
	for _, r := range routes {
		sub, err := serve(ctx, nc, log, r.Subject, queue, health, &s.inFlight, r.Handler)
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.subs = append(s.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("flush subscriptions: %w", err)
	}
	return s, nil
}

// drainTimeout bounds Stop's wait for the server to confirm a drain.
const drainTimeout = 10 * time.Second

// Stop ends the routes and returns once every request they received has
// been answered: each subscription is drained, so no new request reaches
// it (another instance in the queue group gets it) while every request
// already sent to it is handed to its handler, and then Stop waits for the
// handlers. Requests are answered with the context given to ServeAll, so
// a caller that wants them to finish passes one that outlives the
// shutdown. A closed connection ends the subscriptions too, so errors are
// not reported.
func (s *Served) Stop() {
	for _, sub := range s.subs {
		_ = sub.Drain()
	}
	deadline := time.Now().Add(drainTimeout)
	for _, sub := range s.subs {
		// Drain returns at once; the subscription is closed once the
		// server confirmed it and its pending requests were delivered.
		for sub.IsValid() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	s.inFlight.Wait()
}

// Health is what a service's pings answer: well while each of its
// background parts (a consumer, a watch) works, else why not. The zero
// value is well; it is safe for concurrent use.
type Health struct {
	mu      sync.Mutex
	failing map[string]error
}

// Set records the state of part: err while it fails, nil once it works.
func (h *Health) Set(part string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		delete(h.failing, part)
		return
	}
	if h.failing == nil {
		h.failing = make(map[string]error)
	}
	h.failing[part] = err
}

// Of returns the function that sets part's state, for the part to call.
func (h *Health) Of(part string) func(error) {
	return func(err error) { h.Set(part, err) }
}

// Err returns nil when every part works, else an *Error with
// CodeUnavailable naming each failing part and why, in the order of their
// names.
func (h *Health) Err() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failing) == 0 {
		return nil
	}
	parts := slices.Sorted(maps.Keys(h.failing))
	msgs := make([]string, len(parts))
	for i, p := range parts {
		msgs[i] = p + ": " + h.failing[p].Error()
	}
	return Errorf(CodeUnavailable, "not ready: %s", strings.Join(msgs, "; "))
}

func respond(ctx context.Context, log *slog.Logger, m *nats.Msg, health *Health, h Handler) {
	var (
		res any
		err error
	)
	if m.Header.Get(pingHeader) != "" {
		err = health.Err()
	} else {
		res, err = h(ctx, m.Data)
	}
	var r reply
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			log.Error("request failed", "subject", m.Subject, "err", err)
			e = &Error{Code: CodeInternal, Message: "internal error"}
		}
		r.Error = e
	} else if r.Result, err = json.Marshal(res); err != nil {
		log.Error("encode reply", "subject", m.Subject, "err", err)
		r = reply{Error: &Error{Code: CodeInternal, Message: "internal error"}}
	}
	b, _ := json.Marshal(r) // a reply of RawMessage and strings always encodes
	if err := m.Respond(b); err != nil {
		log.Warn("respond", "subject", m.Subject, "err", err)
	}
}

// pingHeader marks a request that only asks whether a subject is served.
const pingHeader = "Parley-Ping"

// Ping checks that every subject has a responder that is well, without
// calling any handler. It returns an error wrapping nats.ErrNoResponders
// for the first subject nobody serves, and one wrapping the responder's
// *Error for the first whose service is not well (see Health).
func Ping(ctx context.Context, nc *nats.Conn, subjects ...string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	for _, s := range subjects {
		m := nats.NewMsg(s)
		m.Header.Set(pingHeader, "1")
		res, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return fmt.Errorf("ping %s: %w", s, err)
		}
		var r reply
		if err := json.Unmarshal(res.Data, &r); err != nil {
			return fmt.Errorf("ping %s: decode reply: %w", s, err)
		}
		if r.Error != nil {
			return fmt.Errorf("ping %s: %w", s, r.Error)
		}
	}
	return nil
}

// Call sends req to subject and decodes the result into resp (which may be
// nil). A remote error comes back as *Error.
func Call(ctx context.Context, nc *nats.Conn, subject string, req, resp any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", subject, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	m, err := nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return fmt.Errorf("call %s: %w", subject, err)
	}
	var r reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("decode %s reply: %w", subject, err)
	}
	if r.Error != nil {
		return r.Error
	}
	if resp == nil || len(r.Result) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Result, resp); err != nil {
		return fmt.Errorf("decode %s result: %w", subject, err)
	}
	return nil
}
