// Package rpc is request/reply between Parley's services over core NATS:
// JSON in, JSON out, and errors that keep their meaning across the wire as a
// Code, so the gateway can map them to HTTP status in one place.
//
// Each service is served as one nats.go micro service (see Serve): its
// endpoints are listed, described and counted by the `nats micro`
// commands, and an error travels in micro's error headers
// (Nats-Service-Error-Code holds the Code).
//
// A request carries a principal (Request): the verified user the gateway
// serves, or auth.System for a service calling another. The system
// principal is accepted on internal endpoints only (Group.Internal), and
// only there: the bus lets only the services that need an internal
// endpoint publish to it (pkg/buspolicy), so a principal that says
// "system" on an internal endpoint came from a service's own bus user.
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

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
// responder, a timeout, a connection closed, draining or reconnecting (a
// connection without a reconnect buffer refuses to send then), a stream without a
// leader (no response from the stream, JetStream answering 503 such as
// "JetStream system temporarily unavailable", or a stream offline or
// between leaders).
func Unavailable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrNoServers),
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrStaleConnection),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrConsumerLeadershipChanged):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503 || slices.Contains(transientJS, apiErr.ErrorCode)
	}
	return false
}

// DefaultTimeout bounds a Call or a Ping whose context has no deadline, and
// a request served without a DeadlineHeader.
const DefaultTimeout = 5 * time.Second

// DeadlineHeader carries the time by which a request must be served, in
// Unix milliseconds. Call and Ping set it from their context; Serve runs
// the handler with it as its context's deadline and answers a request that
// arrives after it CodeUnavailable without calling the handler. A request
// delayed on its way (held by a frozen server, say) is thus never acted on
// after its caller gave up and answered 503. It is a point in time, not a
// duration, so that time spent on the way counts: the services' clocks
// must agree (NTP) to well within replyMargin.
const DeadlineHeader = "Parley-Deadline"

// maxReplyMargin bounds replyMargin.
const maxReplyMargin = 500 * time.Millisecond

// replyMargin is how long before the caller's own deadline the server's
// falls: a quarter of the time the call has, at most maxReplyMargin. It
// leaves room for the answer to come back, so that when the server stops
// at its deadline its caller, still waiting, hears why.
func replyMargin(left time.Duration) time.Duration {
	return min(left/4, maxReplyMargin)
}

// Request is what a caller sends: the principal acting, and the call's
// arguments.
type Request[T any] struct {
	Principal auth.Principal `json:"principal"`
	Args      T              `json:"args"`
}

func (r *Request[T]) principal() auth.Principal { return r.Principal }

// Handler serves one subject.
type Handler func(ctx context.Context, data []byte) (any, error)

// Handle adapts a typed function to a Handler. When Req is a Request, the
// principal is checked against the endpoint first: an internal endpoint
// (Group.Internal) refuses any principal but auth.System, every other
// endpoint refuses auth.System, both with CodeForbidden. On an internal
// endpoint Req must be a Request.
func Handle[Req, Resp any](fn func(context.Context, Req) (Resp, error)) Handler {
	return func(ctx context.Context, data []byte) (any, error) {
		var req Req
		// As results are decoded (see request): a post's text is decoded
		// here on every post.
		if err := jsonv1.Unmarshal(data, &req); err != nil {
			return nil, Errorf(CodeInvalid, "malformed request: %v", err)
		}
		if err := admit(ctx, &req); err != nil {
			return nil, err
		}
		return fn(ctx, req)
	}
}

// internalKey marks the context of a request to an internal endpoint.
type internalKey struct{}

// admit checks req's principal against the endpoint its context is of.
func admit(ctx context.Context, req any) error {
	r, ok := req.(interface{ principal() auth.Principal })
	system := ok && r.principal().Role == auth.RoleSystem
	switch internal := ctx.Value(internalKey{}) != nil; {
	case internal && !system:
		return Errorf(CodeForbidden, "internal endpoint: for services only")
	case !internal && system:
		return Errorf(CodeForbidden, "the system principal is for internal endpoints only")
	}
	return nil
}

// pingHeader marks a request that only asks whether a subject is served.
const pingHeader = "Parley-Ping"

// Ping checks that every subject has a responder that is well, without
// calling any handler. It returns an error wrapping nats.ErrNoResponders
// for the first subject nobody serves, and one wrapping the responder's
// *Error for the first whose service is not well (see Health).
//
// Ping asks the endpoint itself, through its queue group, rather than
// micro's $SRV.PING: that one is answered by any instance, ready or not,
// while this one is answered by an instance that would serve the subject.
func Ping(ctx context.Context, nc *nats.Conn, subjects ...string) error {
	for _, s := range subjects {
		m := nats.NewMsg(s)
		m.Header.Set(pingHeader, "1")
		if err := request(ctx, nc, m, nil); err != nil {
			return fmt.Errorf("ping %s: %w", s, err)
		}
	}
	return nil
}

// Call sends req to subject and decodes the result into resp (which may be
// nil); into a *json.RawMessage, the result is handed over as it came,
// unchecked, for a caller that passes it on or decodes it its own way. A
// remote error comes back as *Error.
func Call(ctx context.Context, nc *nats.Conn, subject string, req, resp any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", subject, err)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	err = request(ctx, nc, m, resp)
	if e := (*Error)(nil); err != nil && !errors.As(err, &e) {
		return fmt.Errorf("call %s: %w", subject, err)
	}
	return err
}

// request sends m, bounded by DefaultTimeout when ctx has no deadline,
// with the deadline its server must keep (DeadlineHeader), and decodes the
// reply into resp (which may be nil); an error reply comes back as *Error.
func request(ctx context.Context, nc *nats.Conn, m *nats.Msg, resp any) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
		deadline, _ = ctx.Deadline()
	}
	serveBy := deadline.Add(-replyMargin(time.Until(deadline)))
	m.Header.Set(DeadlineHeader, strconv.FormatInt(serveBy.UnixMilli(), 10))
	r, err := nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return err
	}
	if code := r.Header.Get(micro.ErrorCodeHeader); code != "" {
		e := &Error{Code: Code(code), Message: r.Header.Get(micro.ErrorHeader)}
		// The body repeats the error with what the headers lack.
		var body Error
		if json.Unmarshal(r.Data, &body) == nil {
			e.RetryAfter = body.RetryAfter
		}
		return e
	}
	if resp == nil || len(r.Data) == 0 {
		return nil
	}
	if raw, ok := resp.(*json.RawMessage); ok {
		*raw = r.Data // the reply is the caller's: no copy, no scan
		return nil
	}
	// go-json-experiment's encoding/json decodes as encoding/json does, in
	// a fraction of its CPU and allocations: pages of results are the
	// bulk of what callers read.
	if err := jsonv1.Unmarshal(r.Data, resp); err != nil {
		return fmt.Errorf("decode result: %w", err)
	}
	return nil
}
