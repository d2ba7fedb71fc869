// Package watermilljs is a Watermill Publisher and Subscriber on nats.go's
// jetstream package, so that Parley's consumers run on Watermill's router
// and its middleware (retry, poison queue, recoverer, metrics).
//
// Watermill's own NATS adapter (watermill-nats v2.1.3) does not fit
// Parley's bus: its JetStream subscriber is built on nats.go's legacy
// JetStream API, provisions streams named after topics and looks streams up
// by subject, which a service's bus user may not do (pkg/buspolicy), and
// its subscribers close the NATS connection they were given, which every
// service shares. This package uses streams as they are and never closes
// the connection.
//
// A topic is a NATS subject. Publish stores a message on the subject of
// its topic, in whichever stream holds that subject, with the topic and
// the message's UUID as its Nats-Msg-Id: publishing a message to a topic
// again within the stream's duplicate window stores nothing, while the
// same message published to two subjects of one stream (passed on to a
// poison queue, say) is stored twice. The UUID itself travels in the
// header UUIDHeader. Subscribe follows a topic, which may
// hold wildcards, with a durable pull consumer of one stream, shared by
// every subscriber of the same name.
// Delivery is at least once: Ack acknowledges the message, Nack or a
// subscriber closing without either makes JetStream deliver it again, later
// messages possibly first.
//
// Metadata travels as NATS headers. Headers starting with "Nats-" belong to
// JetStream (deduplication, expectations, schedules): a subscriber leaves
// them out of a message's metadata, and Publish refuses metadata that holds
// one, so that a message passed on, for example to a poison queue, never
// carries a JetStream instruction along.
package watermilljs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// reservedPrefix starts the headers JetStream interprets.
const reservedPrefix = "Nats-"

// UUIDHeader holds a message's Watermill UUID, the header Watermill's own
// NATS marshaler uses.
const UUIDHeader = "_watermill_message_uuid"

// ErrReservedMetadata is returned by Publish for a message whose metadata
// holds a key starting with "Nats-".
var ErrReservedMetadata = errors.New("metadata key reserved for JetStream")

// Publisher publishes Watermill messages to JetStream. It is safe for
// concurrent use.
type Publisher struct {
	js jetstream.JetStream
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher storing messages through js.
func NewPublisher(js jetstream.JetStream) *Publisher {
	return &Publisher{js: js}
}

// Publish stores msgs, in order, on the subject topic, each acknowledged by
// its stream before the next is sent. It stops at the first failure: no
// stream holding topic (jetstream.ErrNoStreamResponse), reserved metadata
// (ErrReservedMetadata), or the stream's refusal. A message's context
// bounds its publish; without a deadline, the JetStream default timeout
// does.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		m := nats.NewMsg(topic)
		m.Data = msg.Payload
		for k, v := range msg.Metadata {
			if strings.HasPrefix(k, reservedPrefix) {
				return fmt.Errorf("publish %s to %s: %w: %q", msg.UUID, topic, ErrReservedMetadata, k)
			}
			// A header value ends at a line break: keep the rest of a
			// multi-line value (a joined error, say) on one line.
			m.Header.Set(k, strings.NewReplacer("\r", " ", "\n", " ").Replace(v))
		}
		m.Header.Set(UUIDHeader, msg.UUID)
		m.Header.Set(jetstream.MsgIDHeader, topic+" "+msg.UUID)
		if _, err := p.js.PublishMsg(msg.Context(), m); err != nil {
			return fmt.Errorf("publish %s to %s: %w", msg.UUID, topic, err)
		}
	}
	return nil
}

// Close does nothing: the connection belongs to the caller.
func (p *Publisher) Close() error { return nil }

// Delivery is where a message a Subscriber delivers came from.
type Delivery struct {
	// Subject is the subject the message was stored on.
	Subject string
	// Stream and Sequence locate the message in its stream.
	Stream   string
	Sequence uint64
	// NumDelivered counts the deliveries of the message so far, this one
	// included.
	NumDelivered uint64
}

type deliveryKey struct{}

// DeliveryOf returns where msg came from, when a Subscriber delivered it.
func DeliveryOf(msg *message.Message) (Delivery, bool) {
	d, ok := msg.Context().Value(deliveryKey{}).(Delivery)
	return d, ok
}

func withDelivery(ctx context.Context, d Delivery) context.Context {
	return context.WithValue(ctx, deliveryKey{}, d)
}
