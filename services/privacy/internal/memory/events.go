package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

type storedEvent struct {
	seq uint64
	e   event.Envelope
}

// EventLog keeps privacy events in memory, numbered as one stream, with the
// PRIVACY stream's guarantees: an event appended again (same id) is stored
// once, and AppendExpect refuses an append behind another writer's. Follow
// hands each stored event, in order, to the App's index, as the JetStream
// adapter's ordered consumer does. It is safe for concurrent use.
type EventLog struct {
	mu     sync.Mutex
	events []storedEvent
	byID   map[string]uint64
	lastOf map[string]uint64 // tenant and aggregate → the sequence of their last event
	apply  func(seq uint64, e event.Envelope)

	// delivering serializes Follow's deliveries, so that they come in
	// stream order; delivered is the last sequence handed over.
	delivering sync.Mutex
	delivered  uint64
}

// NewEventLog returns an empty log.
func NewEventLog() *EventLog {
	return &EventLog{byID: make(map[string]uint64), lastOf: make(map[string]uint64)}
}

// Follow hands every event stored from sequence from on, then each one
// appended later, to apply, in stream order; an append returns once its
// event was handed over. A later call hands the events over to its apply
// alone, as a restarted instance's follower.
func (l *EventLog) Follow(from uint64, apply func(seq uint64, e event.Envelope)) {
	l.delivering.Lock()
	l.mu.Lock()
	l.apply, l.delivered = apply, min(max(from, 1)-1, uint64(len(l.events)))
	l.mu.Unlock()
	l.delivering.Unlock()
	l.deliver()
}

// Append stores e and returns its sequence.
func (l *EventLog) Append(_ context.Context, e event.Envelope) (uint64, error) {
	return l.append(e, nil)
}

// AppendExpect is Append when the last event of e's aggregate has sequence
// last (0: none), and app.ErrConflict otherwise.
func (l *EventLog) AppendExpect(_ context.Context, e event.Envelope, last uint64) (uint64, error) {
	return l.append(e, &last)
}

func (l *EventLog) append(e event.Envelope, expect *uint64) (uint64, error) {
	l.mu.Lock()
	if seq, ok := l.byID[e.ID]; ok {
		l.mu.Unlock()
		return seq, nil
	}
	agg := e.Tenant + "." + e.Aggregate
	if expect != nil && l.lastOf[agg] != *expect {
		l.mu.Unlock()
		return 0, fmt.Errorf("append %s: %w", e.Type, app.ErrConflict)
	}
	seq := uint64(len(l.events)) + 1
	l.events = append(l.events, storedEvent{seq: seq, e: e})
	l.byID[e.ID] = seq
	l.lastOf[agg] = seq
	l.mu.Unlock()
	l.deliver()
	return seq, nil
}

// LastSeq returns the sequence of the last event.
func (l *EventLog) LastSeq(context.Context) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.events)), nil
}

// Of returns every event of tenant's person, oldest first.
func (l *EventLog) Of(ctx context.Context, tenant, person string) ([]app.StoredEvent, error) {
	var out []app.StoredEvent
	err := l.Scan(ctx, tenant, 0, func(se app.StoredEvent) (bool, error) {
		if se.Event.Aggregate == person {
			out = append(out, se)
		}
		return true, nil
	})
	return out, err
}

// Scan calls each with the events of tenant after sequence after, in
// order, until each returns false or an error or the events end.
func (l *EventLog) Scan(_ context.Context, tenant string, after uint64, each func(app.StoredEvent) (bool, error)) error {
	l.mu.Lock()
	events := l.events[min(after, uint64(len(l.events))):]
	l.mu.Unlock()
	for _, se := range events {
		if tenant != "*" && se.e.Tenant != tenant {
			continue
		}
		if more, err := each(app.StoredEvent{Seq: se.seq, Event: se.e}); err != nil || !more {
			return err
		}
	}
	return nil
}

// SeqAt returns the sequence of the first event stamped at or after t,
// the one after the last when there is none.
func (l *EventLog) SeqAt(_ context.Context, t time.Time) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, se := range l.events {
		if !se.e.At.Before(t) {
			return se.seq, nil
		}
	}
	return uint64(len(l.events)) + 1, nil
}

// deliver hands the events not handed over yet to the follower.
func (l *EventLog) deliver() {
	l.delivering.Lock()
	defer l.delivering.Unlock()
	l.mu.Lock()
	apply, pending := l.apply, l.events[l.delivered:]
	l.mu.Unlock()
	if apply == nil {
		return
	}
	for _, se := range pending {
		apply(se.seq, se.e)
		l.delivered = se.seq
	}
}

// Broadcast is one message a Bus sent.
type Broadcast struct {
	Subject string
	Value   any
}

// Bus records what the App broadcasts, in place of NATS. It is safe for
// concurrent use.
type Bus struct {
	mu   sync.Mutex
	sent []Broadcast
}

// Broadcast records v, sent on subject.
func (b *Bus) Broadcast(subject string, v any) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = append(b.sent, Broadcast{Subject: subject, Value: v})
	return nil
}

// Sent returns what was broadcast so far, in order.
func (b *Bus) Sent() []Broadcast {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Broadcast(nil), b.sent...)
}
