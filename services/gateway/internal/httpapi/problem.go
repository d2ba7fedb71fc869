package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/services/gateway/internal/signin"
)

// statusError is an error that already knows its HTTP status. Its detail is
// shown to the client, so it never holds message text or tokens.
type statusError struct {
	status int
	slug   string
	detail string
}

func (e *statusError) Error() string { return e.detail }

func newError(status int, slug, detail string) *statusError {
	return &statusError{status: status, slug: slug, detail: detail}
}

// invalid returns the error of a request that is valid JSON with a value
// that is not allowed (422).
func invalid(detail string) *statusError {
	return newError(http.StatusUnprocessableEntity, "invalid", detail)
}

var (
	errNoToken       = newError(http.StatusUnauthorized, "unauthorized", "an Authorization: Bearer token is required")
	errOperatorOnly  = newError(http.StatusForbidden, "forbidden", "only the operator manages tenants")
	errOperatorScope = newError(http.StatusForbidden, "forbidden", "the operator manages tenants only")
	errUnknownTenant = newError(http.StatusNotFound, "not-found", "no such tenant")
	errUnknownConv   = newError(http.StatusNotFound, "not-found", "no such conversation")
	errUnknownMsg    = newError(http.StatusNotFound, "not-found", "message not found")
	errNoRoute       = newError(http.StatusNotFound, "not-found", "no such resource")
	errWrongMethod   = newError(http.StatusMethodNotAllowed, "method-not-allowed", "the resource does not support this method; Allow lists those it does")
	errMalformed     = newError(http.StatusBadRequest, "malformed", "the body is not a JSON object of the expected shape")
	errNotUTF8       = newError(http.StatusBadRequest, "malformed", "the body is not valid UTF-8")
	errBodyTooLarge  = newError(http.StatusRequestEntityTooLarge, "too-large", "the body is too large")
	errTextTooLarge  = newError(http.StatusRequestEntityTooLarge, "too-large", "the text is longer than the limit")
	errRateLimited   = newError(http.StatusTooManyRequests, "rate-limited", "too many requests; slow down")
	errNotReady      = newError(http.StatusServiceUnavailable, "unavailable", "a dependency is not reachable")
	errNotAudited    = newError(http.StatusServiceUnavailable, "unavailable", "the stream could not be written to the audit trail, so it is not opened")
	errInternal      = newError(http.StatusInternalServerError, "internal", "internal error")
	errExpiredToken  = newError(http.StatusUnauthorized, "unauthorized", "the token has expired")
	errInvalidToken  = newError(http.StatusUnauthorized, "unauthorized", "the token is not valid")
	errRole          = newError(http.StatusForbidden, "forbidden", "this role may not make this call")
	errUnknownSubj   = newError(http.StatusNotFound, "not-found", "no such subject")
	errUnknownErase  = newError(http.StatusNotFound, "not-found", "no such erasure")
	errSessionsOfOne = newError(http.StatusTooManyRequests, "rate-limited", "too many live sessions of this principal; close one first")
	errSessionsOfAll = newError(http.StatusTooManyRequests, "rate-limited", "too many live sessions of this tenant")
	errSessionsFull  = newError(http.StatusTooManyRequests, "rate-limited", "the server holds as many live sessions as it may; try again later")
	errRegAddress    = newError(http.StatusTooManyRequests, "rate-limited", "too many visitors registered from this address; slow down")
	errRegTenant     = newError(http.StatusTooManyRequests, "rate-limited", "too many visitors registered for this tenant; slow down")
	errBodyDeadline  = newError(http.StatusRequestTimeout, "timeout", "the body did not arrive in time")
	errErased        = newError(http.StatusGone, "gone", "this visitor's data is erased: the token opens nothing any more")
	errBadSince      = invalid("since must be a time in RFC 3339 format, such as 2026-01-02T15:04:05Z")
)

// answerCut is the error of a handler whose answer had begun when it
// failed: too late for a problem, so handle cuts the connection instead,
// and the client sees the answer end early (an HTTP/1.1 chunked body
// without its last chunk), never one that looks complete.
type answerCut struct{ err error }

func (e *answerCut) Error() string { return e.err.Error() }
func (e *answerCut) Unwrap() error { return e.err }

// abortAnswer marks err as the failure of an answer already begun.
func abortAnswer(err error) error { return &answerCut{err: err} }

// The errors of the headers and parameters that make retries and resumes
// safe.
var (
	errBadIdempotencyKey = newError(http.StatusBadRequest, "malformed",
		fmt.Sprintf("Idempotency-Key must be one header of 1-%d printable ASCII characters without spaces", chatapi.MaxIdempotencyKeyLen))
	errBadSeq = newError(http.StatusBadRequest, "malformed", "since must be the seq of a live event: a whole number")
)

// rpcProblems maps the codes of other services' errors; any other code is
// internal.
var rpcProblems = map[rpc.Code]struct {
	status int
	slug   string
}{
	rpc.CodeInvalid:     {http.StatusUnprocessableEntity, "invalid"},
	rpc.CodeNotFound:    {http.StatusNotFound, "not-found"},
	rpc.CodeConflict:    {http.StatusConflict, "conflict"},
	rpc.CodeForbidden:   {http.StatusForbidden, "forbidden"},
	rpc.CodeGone:        {http.StatusGone, "gone"},
	rpc.CodeUnavailable: {http.StatusServiceUnavailable, "unavailable"},
	rpc.CodeLimited:     {http.StatusTooManyRequests, "rate-limited"},
}

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

const problemBase = "https://parley.dev/problems/"

// problemContentType is the media type of a problem (RFC 9457).
const problemContentType = "application/problem+json"

// problemFor maps any error a handler returns to its problem: the one place
// where errors become HTTP status codes. internal reports an error the
// client cannot be told about, which the caller logs.
func problemFor(err error) (p Problem, internal bool) {
	var (
		se  *statusError
		re  *rpc.Error
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &se):
	case errors.As(err, &mbe):
		se = errBodyTooLarge
	case errors.Is(err, auth.ErrExpiredToken):
		se = errExpiredToken
	case errors.Is(err, auth.ErrInvalidToken):
		se = errInvalidToken
	case errors.Is(err, signin.ErrInvalid):
		se = invalid(err.Error())
	case errors.Is(err, signin.ErrNoProvider):
		se = errNoProvider
	case errors.Is(err, signin.ErrProvider):
		se = errProviderDown
	case errors.Is(err, signin.ErrOtherBrowser):
		se = errSignInElsewhere
	case errors.Is(err, signin.ErrState):
		se = errSignInState
	case errors.Is(err, signin.ErrRefused):
		se = errSignInRefused
	case errors.Is(err, signin.ErrNoRole):
		se = errSignInNoRole
	default:
		m, ok := rpcProblems[rpc.CodeOf(err)]
		if !ok {
			se, internal = errInternal, true
			break
		}
		var detail string
		if errors.As(err, &re) {
			// rpc.Error messages are written for API clients.
			detail = re.Message
		} else {
			// Unavailable without a remote message: no responder or timeout.
			detail = "a service this call needs did not answer"
		}
		se = &statusError{status: m.status, slug: m.slug, detail: detail}
	}
	return Problem{
		Type:   problemBase + se.slug,
		Title:  http.StatusText(se.status),
		Status: se.status,
		Detail: se.detail,
	}, internal
}

func writeProblem(w http.ResponseWriter, p Problem) {
	w.Header().Set("Content-Type", problemContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

// The errors of answers that code outside this package writes (see
// statusRecorder), and of oversized headers.
var (
	errUncleanPath    = newError(http.StatusNotFound, "not-found", "no such resource: a path is served only as it is written in the API, without empty, . or .. segments, and never redirected")
	errBadRequest     = newError(http.StatusBadRequest, "malformed", "the request is malformed")
	errBadHandshake   = newError(http.StatusBadRequest, "malformed", "the WebSocket handshake is malformed: it needs Sec-WebSocket-Version: 13 and one Sec-WebSocket-Key of 16 bytes in base64")
	errNoUpgrade      = newError(http.StatusUpgradeRequired, "upgrade-required", "this call is a WebSocket handshake: send Connection: Upgrade and Upgrade: websocket")
	errHeaderTooLarge = newError(http.StatusRequestHeaderFieldsTooLarge, "header-too-large", fmt.Sprintf("the request line and header fields are larger than %d KiB", MaxHeaderBytes>>10))
)

// answerError is the error of an answer of status that code outside this
// package wrote (see statusRecorder). routed reports whether the mux had
// found a route for the request.
func answerError(status int, routed bool) *statusError {
	switch {
	case status < http.StatusBadRequest:
		// The mux redirects to the clean form of a path.
		return errUncleanPath
	case status == http.StatusNotFound:
		return errNoRoute
	case status == http.StatusMethodNotAllowed:
		return errWrongMethod
	case status == http.StatusUpgradeRequired:
		return errNoUpgrade
	case status == http.StatusBadRequest && routed:
		// Within a route, only the WebSocket handshake answers 400 itself.
		return errBadHandshake
	case status == http.StatusBadRequest:
		return errBadRequest
	case status >= http.StatusInternalServerError:
		return errInternal
	}
	return newError(status, "http-status", http.StatusText(status))
}
