package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A replica answers a direct get with what it has applied, which may lag
// what the stream's leader acknowledged: on a replicated stream, a read
// that decides something (the head of a chain to extend, whether a write
// acknowledged to another instance is there) asks the leader, which only
// the stream's message-get API does.

// LastMsg returns the last message of subject in the named stream as its
// leader holds it, or jetstream.ErrMsgNotFound.
func LastMsg(ctx context.Context, js jetstream.JetStream, name, subject string) (*jetstream.RawStreamMsg, error) {
	return leaderGet(ctx, js, name, msgGetRequest{LastFor: subject})
}

// Msg returns the message at seq in the named stream as its leader holds
// it, or jetstream.ErrMsgNotFound.
func Msg(ctx context.Context, js jetstream.JetStream, name string, seq uint64) (*jetstream.RawStreamMsg, error) {
	return leaderGet(ctx, js, name, msgGetRequest{Seq: seq})
}

// NextMsg returns the first message of subject at or after seq in the named
// stream as its leader holds it, or jetstream.ErrMsgNotFound.
func NextMsg(ctx context.Context, js jetstream.JetStream, name, subject string, seq uint64) (*jetstream.RawStreamMsg, error) {
	return leaderGet(ctx, js, name, msgGetRequest{Seq: seq, NextFor: subject})
}

// MsgAt returns the first message stored at or after t in the named
// stream as its leader holds it, or jetstream.ErrMsgNotFound.
func MsgAt(ctx context.Context, js jetstream.JetStream, name string, t time.Time) (*jetstream.RawStreamMsg, error) {
	return leaderGet(ctx, js, name, msgGetRequest{StartTime: &t})
}

type msgGetRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	LastFor   string     `json:"last_by_subj,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

type msgGetResponse struct {
	Error   *jetstream.APIError `json:"error"`
	Message *struct {
		Subject string    `json:"subject"`
		Seq     uint64    `json:"seq"`
		Header  []byte    `json:"hdrs"`
		Data    []byte    `json:"data"`
		Time    time.Time `json:"time"`
	} `json:"message"`
}

func leaderGet(ctx context.Context, js jetstream.JetStream, name string, req msgGetRequest) (*jetstream.RawStreamMsg, error) {
	m, err := askLeader(ctx, js, name, req)
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("read %s from its leader: %w", name, err)
	}
	return m, err
}

func askLeader(ctx context.Context, js jetstream.JetStream, name string, req msgGetRequest) (*jetstream.RawStreamMsg, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := apiContext(ctx, js)
	defer cancel()
	reply, err := js.Conn().RequestWithContext(ctx, apiSubject(js, "STREAM.MSG.GET."+name), data)
	if err != nil {
		return nil, err
	}
	var res msgGetResponse
	if err := json.Unmarshal(reply.Data, &res); err != nil {
		return nil, err
	}
	switch {
	case res.Error != nil && res.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, jetstream.ErrMsgNotFound
	case res.Error != nil:
		return nil, res.Error
	case res.Message == nil:
		return nil, jetstream.ErrInvalidJetStreamResponse
	}
	m := &jetstream.RawStreamMsg{Subject: res.Message.Subject, Sequence: res.Message.Seq, Data: res.Message.Data, Time: res.Message.Time}
	if len(res.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(res.Message.Header); err != nil {
			return nil, fmt.Errorf("sequence %d: %w", res.Message.Seq, err)
		}
	}
	return m, nil
}

// deleteConsumerNoWait asks the server to delete the consumer named
// consumer of the named stream, and does not wait for its answer: for a
// consumer made for one read, whose reader need not wait for a step of
// the JetStream API (of the meta leader, on a cluster) and which the
// server removes anyway once inactive. Its error is the request's not
// being sent.
func deleteConsumerNoWait(js jetstream.JetStream, stream, consumer string) error {
	return js.Conn().Publish(apiSubject(js, "CONSUMER.DELETE."+stream+"."+consumer), nil)
}

// Reader makes a consumer for one read of the named stream's messages on
// filter from sequence from on: delivered unacked, held in memory by one
// server. done deletes it without waiting (deleteConsumerNoWait); a delete
// lost or refused leaves it to the server, which removes it once idle for
// idle, so idle must outlast the read's pauses.
func Reader(ctx context.Context, js jetstream.JetStream, stream, filter string, from uint64, idle time.Duration) (c jetstream.Consumer, done func() error, err error) {
	c, err = js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubject:     filter,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: idle,
	})
	if err != nil {
		return nil, nil, err
	}
	name := c.CachedInfo().Name
	return c, func() error { return deleteConsumerNoWait(js, stream, name) }, nil
}

// apiSubject is the subject of the JetStream API call named by what.
func apiSubject(js jetstream.JetStream, what string) string {
	prefix := js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	}
	return prefix + what
}

// apiContext bounds ctx by js's default timeout when it has no deadline.
func apiContext(ctx context.Context, js jetstream.JetStream) (context.Context, context.CancelFunc) {
	if d := js.Options().DefaultTimeout; d > 0 {
		if _, ok := ctx.Deadline(); !ok {
			return context.WithTimeout(ctx, d)
		}
	}
	return ctx, func() {}
}
