// Package rpc is the chat service's bus port: it serves the chatapi subjects
// with pkg/rpc, as the micro service chatapi.Service in queue group
// chatapi.Queue, and turns the use cases' errors into rpc Codes, in this one
// place.
package rpc

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/rpc"

	"github.com/parley-chat/parley/services/chat/internal/app"
	"github.com/parley-chat/parley/services/chat/internal/conversation"
)

// Serve serves the chat subjects on nc, each request handled by svc, until
// the caller stops what it returns; pings answer health.
func Serve(ctx context.Context, nc *nats.Conn, log *slog.Logger, health *rpc.Health, svc *app.Service) (*rpc.Served, error) {
	return rpc.Serve(ctx, nc, log, rpc.Service{
		Name:        chatapi.Service,
		Description: "conversations: commands, transcripts, lists and exports",
		Queue:       chatapi.Queue,
		Health:      health,
		Groups: []rpc.Group{
			{Prefix: "parley.chat", Routes: []rpc.Route{
				{Subject: chatapi.OpenSubject, Handler: handle(svc.Open)},
				{Subject: chatapi.PostSubject, Handler: handle(svc.Post)},
				{Subject: chatapi.AssignSubject, Handler: handle(svc.Assign)},
				{Subject: chatapi.HandOffSubject, Handler: handle(svc.HandOff)},
				{Subject: chatapi.CloseSubject, Handler: handle(svc.Close)},
				{Subject: chatapi.RateSubject, Handler: handle(svc.Rate)},
				{Subject: chatapi.ListSubject, Handler: handle(svc.List)},
				{Subject: chatapi.MessagesSubject, Handler: handle(svc.Messages)},
				{Subject: chatapi.GetSubject, Handler: handle(svc.Get)},
				{Subject: chatapi.TypingSubject, Handler: handle(svc.Typing)},
				{Subject: chatapi.PresenceSubject, Handler: handle(svc.SetPresence)},
				{Subject: chatapi.CapacitySubject, Handler: handle(svc.SetCapacity)},
				{Subject: chatapi.AvailabilitySubject, Handler: handle(svc.Availability)},
				{Subject: chatapi.ExportSubject, Handler: handle(svc.Export)},
				{Subject: chatapi.WithdrawSubject, Handler: handle(svc.Withdraw)},
				{Subject: chatapi.ProfilePutSubject, Handler: handle(svc.PutProfile)},
				{Subject: chatapi.ProfileGetSubject, Handler: handle(svc.GetProfile)},
				{Subject: chatapi.ProfileDeleteSubject, Handler: handle(svc.DeleteProfile)},
			}},
			{Prefix: "parley.internal.chat", Internal: true, Routes: []rpc.Route{
				{Subject: chatapi.VisitorConversationsSubject, Handler: handle(svc.VisitorConversations)},
			}},
		},
	})
}

// handle adapts a use case to a typed rpc handler.
func handle[Args, Result any](fn func(context.Context, auth.Principal, Args) (Result, error)) rpc.Handler {
	return rpc.Handle(func(ctx context.Context, req rpc.Request[Args]) (Result, error) {
		res, err := fn(ctx, req.Principal, req.Args)
		if err != nil {
			var zero Result
			return zero, toRPC(err)
		}
		return res, nil
	})
}

// codes are the errors of the use cases that callers act on, by code.
var codes = []struct {
	err  error
	code rpc.Code
}{
	{conversation.ErrNotFound, rpc.CodeNotFound},
	{conversation.ErrForbidden, rpc.CodeForbidden},
	{conversation.ErrClosed, rpc.CodeConflict},
	{conversation.ErrNotClosed, rpc.CodeConflict},
	{conversation.ErrRated, rpc.CodeConflict},
	{conversation.ErrAgentAway, rpc.CodeConflict},
	{conversation.ErrAgentFull, rpc.CodeConflict},
	{app.ErrNoAgents, rpc.CodeUnavailable},
	{conversation.ErrMessageNotFound, rpc.CodeNotFound},
	{conversation.ErrNoProfile, rpc.CodeNotFound},
	{app.ErrContended, rpc.CodeConflict},
	{app.ErrKeyReused, rpc.CodeInvalid},
	{conversation.ErrErased, rpc.CodeGone},
	{app.ErrNotAudited, rpc.CodeUnavailable},
	{app.ErrNoConsent, rpc.CodeForbidden},
}

// openRetry is the Retry-After of conversation.ErrTooManyOpen: an open
// conversation ends when someone closes it, which no clock tells.
const openRetry = time.Minute

// toRPC maps an error of the use cases to an *rpc.Error. Any other error
// becomes an internal one, which rpc.Serve logs and answers as CodeInternal:
// it is hidden behind internalError so that an *rpc.Error it wraps (from the
// key service) does not reach the caller with that service's code.
func toRPC(err error) error {
	var (
		ve *conversation.ValidationError
		pe *conversation.PaceError
	)
	switch {
	case errors.As(err, &ve):
		return rpc.Errorf(rpc.CodeInvalid, "%s", ve.Error())
	case errors.As(err, &pe):
		return limited(conversation.ErrTooManyMessages, pe.RetryAfter)
	case errors.Is(err, conversation.ErrTooManyOpen):
		return limited(conversation.ErrTooManyOpen, openRetry)
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return rpc.Errorf(c.code, "%s", c.err.Error())
		}
	}
	if rpc.CodeOf(err) == rpc.CodeUnavailable {
		return rpc.Errorf(rpc.CodeUnavailable, "a dependency of the chat service is unavailable")
	}
	return internalError{err}
}

// limited is the rpc.CodeLimited error of the sentinel err, which may be
// tried again after d (rounded up to whole seconds, at least one).
func limited(err error, d time.Duration) *rpc.Error {
	e := rpc.Errorf(rpc.CodeLimited, "%s", err.Error())
	e.RetryAfter = max(1, int((d+time.Second-1)/time.Second))
	return e
}

// internalError carries an unexpected error's message to the log without
// letting errors.As see through it.
type internalError struct{ err error }

func (e internalError) Error() string { return e.err.Error() }
