package jetstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/stream"
)

// ChatLog reads the CHAT stream by batched direct gets: the privacy
// service's bus user may read it, not write it. It is an app.ChatLog, safe
// for concurrent use.
type ChatLog struct{ js jetstream.JetStream }

// NewChatLog returns a ChatLog reading through js.
func NewChatLog(js jetstream.JetStream) *ChatLog { return &ChatLog{js: js} }

const (
	// chatBatch bounds the messages of one direct get; chatBatchBytes
	// their bytes past the first, so a batch stays one NATS message's
	// worth of sealed events.
	chatBatch      = 256
	chatBatchBytes = 1 << 20
)

// LastSeq returns the sequence of CHAT's last message, as its leader
// answers.
func (l *ChatLog) LastSeq(ctx context.Context) (uint64, error) {
	s, err := l.js.Stream(ctx, stream.Chat)
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", stream.Chat, err)
	}
	return s.CachedInfo().State.LastSeq, nil
}

// errStop ends a batch early once the reader has had enough.
var errStop = errors.New("reader stopped")

// Read calls each with the messages of CHAT on subjects matching filter
// after sequence after, a batch at a time, until each returns false or an
// error, or none is left (readEvents). A message that is no event comes as
// the zero Envelope.
func (l *ChatLog) Read(ctx context.Context, filter string, after uint64, each func(seq uint64, e event.Envelope) (bool, error)) error {
	return readEvents(ctx, l.js, stream.Chat, filter, after, each)
}

// readEvents calls each with the messages of the named stream on subjects
// matching filter after sequence after, a batch at a time, until each
// returns false or an error, or none is left. A message that is no event
// comes as the zero Envelope.
//
// The batches come from any replica, which may lag what the leader
// acknowledged; so when a replica has no more, the leader is asked for the
// next message, and the read goes on from it if there is one: "none left"
// is the leader's answer.
func readEvents(ctx context.Context, js jetstream.JetStream, name, filter string, after uint64, each func(seq uint64, e event.Envelope) (bool, error)) error {
	deliver := func(m *jetstream.RawStreamMsg) error {
		e, err := event.Parse(m.Subject, m.Header, m.Data)
		if err != nil {
			e = event.Envelope{}
		}
		more, err := each(m.Sequence, e)
		if err != nil {
			return err
		}
		if !more {
			return errStop
		}
		return nil
	}
	var failed uint64 // the first sequence of the page each failed on
	deliverPage := func(page []*jetstream.RawStreamMsg) error {
		for _, m := range page {
			if err := deliver(m); err != nil {
				failed = page[0].Sequence
				return err
			}
		}
		return nil
	}
	for {
		req := stream.BatchRequest{Seq: after + 1, NextFor: filter, Batch: chatBatch, MaxBytes: chatBatchBytes}
		next, err := stream.GetPages(ctx, js, name, req, deliverPage)
		// Where the read that failed began: the batch GetPages could not
		// read, the page each failed on, or the leader's next message.
		from := next
		if err != nil && failed != 0 {
			from = failed
		}
		if err == nil {
			var m *jetstream.RawStreamMsg
			m, err = stream.NextMsg(ctx, js, name, filter, next)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil
			}
			if err == nil {
				next, err = m.Sequence+1, deliver(m)
			}
		}
		switch {
		case errors.Is(err, errStop):
			return nil
		case err != nil:
			return fmt.Errorf("read %s from %d: %w", filter, from, err)
		}
		after = next - 1
	}
}
