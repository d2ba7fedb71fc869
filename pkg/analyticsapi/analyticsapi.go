// Package analyticsapi is the contract between the privacy service's relay,
// which writes pseudonymized, content-free facts to the ANALYTICS stream,
// and the analytics service, which stores them in ClickHouse and answers
// metrics over request/reply.
//
// A fact holds no raw id, no text and no network data: every id in it is an
// HMAC-SHA256 under a data subject's pseudonym key (see Pseudonym), which
// dies with the subject's data key on erasure.
package analyticsapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/parley-chat/parley/pkg/seal"
)

// Request/reply subjects, served by the analytics service in queue group
// Queue.
const (
	// MetricsSubject answers one metric of a tenant, bucketed by hour or
	// day.
	//
	// Request: rpc.Request[MetricsArgs]. Result: MetricsResult. Who: an
	// analyst or an admin of the tenant.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant, an unknown metric or
	// interval, a range whose end is not after its start or that holds
	// more than MaxPoints buckets; rpc.CodeForbidden for any other role or
	// another tenant; rpc.CodeUnavailable while ClickHouse is unreachable.
	MetricsSubject = "parley.analytics.metrics"

	// EraseSubject deletes every row whose visitor or agent pseudonym is
	// the one given, waits until the deletion is done, and answers how many
	// facts it removed. The privacy service calls it during an erasure,
	// with the pseudonym it computed before destroying the subject's keys.
	// The analytics service also refuses that pseudonym's facts from then
	// on, as some may still be in transit.
	//
	// An internal subject: only the privacy service may publish here, by
	// its bus permissions (pkg/buspolicy).
	//
	// Request: rpc.Request[EraseArgs] with the system principal
	// (auth.System). Result: EraseResult.
	//
	// Errors: rpc.CodeInvalid for a malformed tenant or pseudonym;
	// rpc.CodeForbidden for any principal but the system's;
	// rpc.CodeUnavailable while ClickHouse is unreachable.
	EraseSubject = "parley.internal.analytics.erase"

	Queue = "analytics"
	// Service names the analytics service for discovery (`nats micro ls`).
	Service = "parley-analytics"
)

// Fact kinds: the last token of a fact's subject, and its Kind.
const (
	KindOpened        = "conversation_opened"
	KindMessage       = "message_posted"
	KindFirstResponse = "first_response"
	KindClosed        = "conversation_closed"
	KindRated         = "rated"
	// KindErasure is no fact but a durable EraseArgs on ANALYTICS, written
	// by the privacy service when EraseSubject could not be answered: the
	// analytics service performs it when it reaches it in the stream.
	KindErasure = "erasure"
	// KindFacts is no fact either but several: a JSON array of up to
	// MaxFactsPerMsg Facts of the subject's tenant, of any kind, whose
	// Nats-Msg-Id is FactsID of them. The relay writes the facts of a
	// batch of events so: the stream's cost is a message's, not a fact's
	// (about half of the analytics consumer's CPU a fact was the server
	// delivering, and the client receiving, one message a fact). A message
	// of one Fact on Subject(Tenant, Kind) is read too: it is how facts
	// were written before, and may still wait in the stream.
	KindFacts = "facts"
)

// MaxFactsPerMsg bounds the facts of one KindFacts message: a fact is at
// most about 500 bytes of JSON (four pseudonyms, a fact id, a tenant and
// short fields), so the message stays under the bus's default 1 MiB
// payload; the relay also splits at the payload limit of the bus it is on.
const MaxFactsPerMsg = 1000

// FactsID is the Nats-Msg-Id of a KindFacts message of facts: the same
// facts in the same order, relayed again, give the same id, which the
// stream drops as a duplicate; facts regrouped otherwise are stored again
// and counted once by the analytics store (one row per fact id).
func FactsID(facts []Fact) string {
	h := sha256.New()
	for _, f := range facts {
		h.Write([]byte(f.ID))
		h.Write([]byte{'\n'})
	}
	return KindFacts + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Length buckets of KindMessage facts, in characters.
const (
	Length0to20    = "0-20"
	Length21to100  = "21-100"
	Length101to500 = "101-500"
	LengthOver500  = "500+"
)

// LengthBucket returns the bucket of a text of n characters.
func LengthBucket(n int) string {
	switch {
	case n <= 20:
		return Length0to20
	case n <= 100:
		return Length21to100
	case n <= 500:
		return Length101to500
	}
	return LengthOver500
}

// Subject is the ANALYTICS subject of tenant's facts of kind.
func Subject(tenant, kind string) string {
	return subjectPrefix + tenant + "." + kind
}

const subjectPrefix = "analytics."

// ParseSubject returns the tenant and kind of an ANALYTICS subject made by
// Subject; false for any other.
func ParseSubject(subject string) (tenant, kind string, ok bool) {
	rest, ok := strings.CutPrefix(subject, subjectPrefix)
	if !ok {
		return "", "", false
	}
	tenant, kind, ok = strings.Cut(rest, ".")
	return tenant, kind, ok && tenant != "" && kind != "" && !strings.Contains(kind, ".")
}

// Pseudonym returns the pseudonym of id under a subject's pseudonym key:
// the hex of HMAC-SHA256(key, id). The same key and id always give the
// same pseudonym; without the key it cannot be computed or reversed.
func Pseudonym(key seal.Key, id string) string {
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}

// Fact is one content-free, pseudonymized fact, one of the array of a
// KindFacts message on Subject(Tenant, KindFacts).
type Fact struct {
	// ID is the source event's id and the kind, "<event id>:<kind>": a
	// redelivered event yields the same fact id, which the analytics
	// store deduplicates on.
	ID     string    `json:"id"`
	Tenant string    `json:"tenant"`
	Kind   string    `json:"kind"`
	At     time.Time `json:"at"`
	// Conversation is the conversation id pseudonymized under the
	// visitor's pseudonym key.
	Conversation string `json:"conversation"`
	// Visitor is the visitor's pseudonym, under their own key.
	Visitor string `json:"visitor"`
	// Agent is the pseudonym of the agent the fact concerns, under the
	// agent's own key; empty when none.
	Agent string `json:"agent,omitempty"`
	// Role is the author's role of a KindMessage fact.
	Role string `json:"role,omitempty"`
	// Length is the length bucket of a KindMessage fact.
	Length string `json:"length,omitempty"`
	// Value is the seconds of KindFirstResponse and KindClosed facts and
	// the score of KindRated ones; 0 otherwise.
	Value float64 `json:"value,omitempty"`
}

// FactID is the id of the fact of kind derived from the event eventID.
func FactID(eventID, kind string) string { return eventID + ":" + kind }

// Metric names and intervals.
const (
	MetricConversations = "conversations"
	MetricMessages      = "messages"
	MetricFirstResponse = "first_response_seconds"
	MetricResolution    = "resolution_seconds"
	MetricCSAT          = "csat"

	IntervalHour = "hour"
	IntervalDay  = "day"
)

// DefaultMinGroupSize is the fewest distinct visitors a metric's point may
// be computed from; see Point.
const DefaultMinGroupSize = 5

// MaxPoints bounds the buckets one MetricsArgs range may span: a year and a
// day of hours.
const MaxPoints = 24 * 366

// ValidPseudonym reports whether s has the form of a Pseudonym: 64
// lowercase hex digits.
func ValidPseudonym(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// MetricsArgs asks for Metric of Tenant over [From, To), by Interval.
// MinGroupSize, when above DefaultMinGroupSize, raises the suppression
// threshold; below it, DefaultMinGroupSize applies.
type MetricsArgs struct {
	Tenant       string    `json:"tenant"`
	Metric       string    `json:"metric"`
	From         time.Time `json:"from"`
	To           time.Time `json:"to"`
	Interval     string    `json:"interval"`
	MinGroupSize int       `json:"min_group_size,omitempty"`
}

// MetricsResult is one metric's points, oldest first; only buckets with
// facts have a point.
type MetricsResult struct {
	Metric       string  `json:"metric"`
	Interval     string  `json:"interval"`
	MinGroupSize int     `json:"min_group_size"`
	Points       []Point `json:"points"`
}

// Point is one bucket of a metric, starting at T. Value is the number of
// facts for conversations and messages and their mean for the other
// metrics; Count is the number of facts. A bucket with fewer distinct
// visitors than the minimum group size is suppressed: Value and Count are
// both nil, since either would tell about a small group.
type Point struct {
	T     time.Time `json:"t"`
	Value *float64  `json:"value"`
	Count *int64    `json:"count"`
}

// EraseArgs names the pseudonym of an erased subject.
type EraseArgs struct {
	Tenant    string `json:"tenant"`
	Pseudonym string `json:"pseudonym"`
}

// EraseResult says how many facts an erasure removed.
type EraseResult struct {
	RowsDeleted int64 `json:"rows_deleted"`
}
