package stream

import (
	"context"
	"errors"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publish stores m in the stream its subject belongs to and returns the
// stream's acknowledgement, as js.PublishMsg(ctx, m) does without options:
// expectations and the message id are headers the caller sets on m
// (jetstream.MsgIDHeader, jetstream.ExpectedLastSubjSeqHeader …). It
// answers the same errors: the request's own (a timeout, the context's, a
// closed connection), jetstream.ErrNoStreamResponse once no stream has
// answered after jetstream.DefaultPubRetryAttempts more tries
// jetstream.DefaultPubRetryWait apart (a stream between leaders), the
// stream's refusal as a *jetstream.APIError (a wrong last sequence, say),
// and jetstream.ErrInvalidJSAck for an answer that is none. A context
// without a deadline is bounded by js's default timeout.
//
// It exists for the append of every post: nats.go decodes the
// acknowledgement with encoding/json, about ten allocations and a few per
// cent of a post's CPU; go-json-experiment decodes it in a fraction.
func Publish(ctx context.Context, js jetstream.JetStream, m *nats.Msg) (jetstream.PubAck, error) {
	ctx, cancel := apiContext(ctx, js)
	defer cancel()
	nc := js.Conn()
	reply, err := nc.RequestMsgWithContext(ctx, m)
	for try := 0; errors.Is(err, nats.ErrNoResponders) && try < jetstream.DefaultPubRetryAttempts; try++ {
		t := time.NewTimer(jetstream.DefaultPubRetryWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return jetstream.PubAck{}, ctx.Err()
		case <-t.C:
		}
		reply, err = nc.RequestMsgWithContext(ctx, m)
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return jetstream.PubAck{}, jetstream.ErrNoStreamResponse
	case err != nil:
		return jetstream.PubAck{}, err
	}
	var ack pubAckReply
	if err := jsonv2.Unmarshal(reply.Data, &ack); err != nil {
		return jetstream.PubAck{}, jetstream.ErrInvalidJSAck
	}
	switch {
	case ack.Error != nil:
		return jetstream.PubAck{}, ack.Error
	case ack.Stream == "":
		return jetstream.PubAck{}, jetstream.ErrInvalidJSAck
	}
	return ack.PubAck, nil
}

// pubAckReply is JetStream's answer to a publish: an acknowledgement or an
// error.
type pubAckReply struct {
	Error            *jetstream.APIError `json:"error"`
	jetstream.PubAck `json:",inline"`
}
