// Package event defines Parley's versioned events and their envelope.
//
// An event travels as one NATS message: routing metadata in headers (event id,
// type, tenant, data subject, time — opaque ids only, never personal data)
// and a body that is the JSON payload sealed with AES-256-GCM under the data
// subject's key. The associated data binds the ciphertext to its tenant,
// subject, aggregate, event id and type, so it cannot be moved to another
// event. Once the subject's key is destroyed the body is unreadable for good.
package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/seal"
)

// Type names an event kind. Type strings carry a version suffix and never
// change meaning; a new shape is a new version.
type Type string

// Chat events, appended to the CHAT stream by the chat service.
const (
	ConversationOpened   Type = "chat.conversation_opened.v1"
	MessagePosted        Type = "chat.message_posted.v1"
	ConversationAssigned Type = "chat.conversation_assigned.v1"
	ConversationClosed   Type = "chat.conversation_closed.v1"
	ConversationRated    Type = "chat.conversation_rated.v1"
	MessageWithdrawn     Type = "chat.message_withdrawn.v1"
	// ConversationHandedOff: the visitor, or the bot assigned, asked for a
	// person.
	ConversationHandedOff Type = "chat.handed_off.v1"
)

// Privacy events, appended to the PRIVACY stream by the privacy service.
const (
	ConsentRecorded Type = "privacy.consent_recorded.v1"
)

// Header names. Nats-Msg-Id carries the event id so that JetStream drops a
// retried append as a duplicate.
const (
	HeaderID      = "Nats-Msg-Id"
	HeaderType    = "Parley-Type"
	HeaderTenant  = "Parley-Tenant"
	HeaderSubject = "Parley-Subject"
	HeaderAt      = "Parley-At"
	// HeaderIdempotency carries Envelope.Idempotency, on the events a
	// client's request with an Idempotency-Key stored.
	HeaderIdempotency = "Parley-Idempotency"
)

// ErrMalformed is returned by Parse for a message that is not a Parley event.
var ErrMalformed = errors.New("malformed event")

// Envelope is one event as stored: metadata in clear, Body sealed.
type Envelope struct {
	ID     string
	Type   Type
	Tenant string
	// Person is the data subject whose key seals Body: an opaque id, in
	// the Parley-Subject header.
	Person string
	// Aggregate is the last token of the NATS subject: the conversation for
	// chat events, the data subject for privacy events.
	Aggregate string
	At        time.Time
	Body      []byte
	// Idempotency is a hash of the Idempotency-Key (and of who sent it) of
	// the request that stored the event, empty when it had none. Never the
	// key itself: the key is the client's and may say anything.
	Idempotency string
}

// NewID returns a new time-ordered unique id for events and aggregates.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// DerivedID returns the id that seed always derives, in the form of NewID's
// (a UUID, of version 5), for events and aggregates that a repeated request
// must name the same.
func DerivedID(seed string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(seed)).String()
}

// New seals payload under key and returns the envelope of a new event.
func New(key seal.Key, typ Type, tenant, subject, aggregate string, at time.Time, payload any) (Envelope, error) {
	return NewWithID(NewID(), key, typ, tenant, subject, aggregate, at, payload)
}

// NewWithID is New for an event whose id is id (see DerivedID): the id is
// sealed into the body, so it cannot be changed after.
func NewWithID(id string, key seal.Key, typ Type, tenant, subject, aggregate string, at time.Time, payload any) (Envelope, error) {
	e := Envelope{ID: id, Type: typ, Tenant: tenant, Person: subject, Aggregate: aggregate, At: at.UTC()}
	pt, err := json.Marshal(payload)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s: %w", typ, err)
	}
	e.Body, err = seal.Seal(key, pt, e.ad())
	if err != nil {
		return Envelope{}, fmt.Errorf("seal %s: %w", typ, err)
	}
	return e, nil
}

// Open decrypts the body under key into v. It returns an error wrapping
// seal.ErrOpen when the key is not the subject's or the envelope was altered.
func (e Envelope) Open(key seal.Key, v any) error {
	pt, err := seal.Open(key, e.Body, e.ad())
	if err != nil {
		return fmt.Errorf("open %s %s: %w", e.Type, e.ID, err)
	}
	// go-json-experiment's encoding/json decodes as encoding/json does,
	// about four times faster and with a tenth of the allocations: a
	// transcript page opens hundreds of events.
	if err := jsonv1.Unmarshal(pt, v); err != nil {
		return fmt.Errorf("decode %s %s: %w", e.Type, e.ID, err)
	}
	return nil
}

func (e Envelope) ad() []byte {
	return seal.AD(e.Tenant, e.Person, e.Aggregate, e.ID, string(e.Type))
}

// Msg returns the NATS message that stores e on natsSubject.
func (e Envelope) Msg(natsSubject string) *nats.Msg {
	m := nats.NewMsg(natsSubject)
	m.Header.Set(HeaderID, e.ID)
	m.Header.Set(HeaderType, string(e.Type))
	m.Header.Set(HeaderTenant, e.Tenant)
	m.Header.Set(HeaderSubject, e.Person)
	m.Header.Set(HeaderAt, e.At.Format(time.RFC3339Nano))
	if e.Idempotency != "" {
		m.Header.Set(HeaderIdempotency, e.Idempotency)
	}
	m.Data = e.Body
	return m
}

// Parse reads an envelope from a stored message.
func Parse(natsSubject string, h nats.Header, body []byte) (Envelope, error) {
	e := Envelope{
		ID:     h.Get(HeaderID),
		Type:   Type(h.Get(HeaderType)),
		Tenant: h.Get(HeaderTenant),
		Person: h.Get(HeaderSubject),
		Body:   body,

		Idempotency: h.Get(HeaderIdempotency),
	}
	if i := strings.LastIndexByte(natsSubject, '.'); i >= 0 {
		e.Aggregate = natsSubject[i+1:]
	}
	at, err := time.Parse(time.RFC3339Nano, h.Get(HeaderAt))
	if err != nil || e.ID == "" || e.Type == "" || e.Tenant == "" || e.Person == "" || e.Aggregate == "" {
		return Envelope{}, fmt.Errorf("%w on %s", ErrMalformed, natsSubject)
	}
	e.At = at
	return e, nil
}
