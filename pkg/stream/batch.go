package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BatchRequest is a batched direct get (nats-server 2.11 or later): the
// messages of NextFor from Seq on (or from the first stored at or after
// StartTime), or the last message of each of MultiLast, at most Batch of
// them and, past the first, MaxBytes.
type BatchRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	MultiLast []string   `json:"multi_last,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	MaxBytes  int        `json:"max_bytes,omitempty"`
}

// PendingHeader is what a batched direct get tells with each message: how
// many more match the request.
const PendingHeader = "Nats-Num-Pending"

// ErrBatchUnsupported is GetBatch's error from a server that answers a
// batched direct get with one message (before nats-server 2.11).
var ErrBatchUnsupported = errors.New("batched direct get not supported by the server")

// GetBatch asks the named stream for the messages of req by direct get and
// calls each with them in order, stopping at its first error, which it
// returns. No message matching is no call and no error.
//
// The answers arrive on a subscription whose buffer holds the batch and no
// more: nats.go's own request helpers size it for 65,536 messages, half a
// MiB a read, which was a transcript read's largest allocation.
func GetBatch(ctx context.Context, js jetstream.JetStream, name string, req BatchRequest, each func(*jetstream.RawStreamMsg) error) error {
	if req.Batch <= 0 {
		req.Batch = max(len(req.MultiLast), 1)
	}
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := apiContext(ctx, js)
	defer cancel()
	nc := js.Conn()
	inbox := nc.NewRespInbox()
	// The server answers with at most Batch messages and one end of batch.
	ch := make(chan *nats.Msg, req.Batch+1)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(apiSubject(js, "DIRECT.GET."+name), inbox, data); err != nil {
		return err
	}
	for {
		var msg *nats.Msg
		select {
		case msg = <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		m, err := batchMsg(msg)
		if errors.Is(err, errEndOfBatch) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := each(m); err != nil {
			return err
		}
	}
}

// errEndOfBatch is batchMsg's answer to the message closing a batch, or
// standing for an empty one.
var errEndOfBatch = errors.New("end of batch")

func batchMsg(msg *nats.Msg) (*jetstream.RawStreamMsg, error) {
	if len(msg.Data) == 0 {
		switch status := msg.Header.Get("Status"); status {
		case "204", "404":
			return nil, errEndOfBatch
		case "":
		default:
			return nil, fmt.Errorf("direct get: status %s %s", status, msg.Header.Get("Description"))
		}
	}
	if msg.Header.Get(PendingHeader) == "" {
		return nil, ErrBatchUnsupported
	}
	seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("direct get: sequence: %w", err)
	}
	at, err := time.Parse(time.RFC3339Nano, msg.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return nil, fmt.Errorf("direct get: time stamp: %w", err)
	}
	subject := msg.Header.Get(jetstream.SubjectHeader)
	if subject == "" {
		return nil, fmt.Errorf("direct get of sequence %d: no subject", seq)
	}
	return &jetstream.RawStreamMsg{Subject: subject, Sequence: seq, Header: msg.Header, Data: msg.Data, Time: at}, nil
}

// GetPages reads every message of req.NextFor from req.Seq (or
// req.StartTime) on, in order, a batched direct get of at most req.Batch
// messages and req.MaxBytes at a time, and calls page with each batch's
// messages once the batch is read, so a slow page holds no read open. It
// stops when a batch brings nothing or its last message has none pending
// after it, at page's first error, which it returns, or on ctx's end. It
// exists so that a read of a whole subject is the one loop that advances
// past the last message and trusts the server's count to end.
//
// One page's messages are held at a time; page must not keep the slice,
// which the next batch reuses (the messages it holds stay valid). Messages
// stored during the call up to the last batch's ask are read too. next is
// the sequence after the last message read, or req.Seq if none was: where
// a later read, or a look at the stream's leader, goes on from. A
// req.MultiLast is not paged: leave it empty.
func GetPages(ctx context.Context, js jetstream.JetStream, name string, req BatchRequest, page func([]*jetstream.RawStreamMsg) error) (next uint64, err error) {
	next = req.Seq
	batch := make([]*jetstream.RawStreamMsg, 0, max(req.Batch, 1))
	for {
		batch = batch[:0]
		pending := ""
		err := GetBatch(ctx, js, name, req, func(m *jetstream.RawStreamMsg) error {
			batch, pending = append(batch, m), m.Header.Get(PendingHeader)
			return nil
		})
		if err != nil {
			return next, err
		}
		if len(batch) == 0 {
			return next, nil
		}
		next = batch[len(batch)-1].Sequence + 1
		req.Seq, req.StartTime = next, nil
		if err := page(batch); err != nil {
			return next, err
		}
		if pending == "0" {
			return next, nil
		}
	}
}
