// Package ephemeral erases conversations automatically a set time after
// they close: the visitor's choice when opening, or the tenant's default.
//
// The erasure is enforced by the store, not by a sweep. When the relay
// (internal/relay) sees such a conversation close, it stores a scheduled
// message (Schedule) in the SCHEDULES stream: JetStream message scheduling
// (ADR-51, "Nats-Schedule: @at <time>") keeps it, across restarts, and at
// that time publishes its body on a target subject of the same stream. The
// Eraser follows those targets with a durable consumer and erases the
// conversation:
//
//  1. the erasure is written to the tenant's audit trail, by the system
//     actor (app.SystemActor, action "conversation.erase");
//  2. every event of the conversation in CHAT is secure-deleted, which
//     overwrites its bytes in the store files;
//  3. privacyapi.ConversationErased is broadcast, so the chat service drops
//     the conversation from its read models and the gateway forgets it;
//  4. unless the visitor has another conversation left in CHAT, the
//     visitor is erased as an erasure subject is (keys destroyed,
//     broadcast, analytics rows deleted), audited as "erase" by the
//     system actor;
//  5. the fired message is deleted and acknowledged.
//
// Every step is safe to repeat, so a failed erasure runs again: a few
// times at once, with backoff, then again after a delay, for as long as it
// fails (Watermill's Retry middleware, then a Nack); a crash does the same
// through redelivery. A fired message that no retry can help (not JSON,
// ids that do not match its subject) is parked on PoisonSubject with the
// reason (Watermill's PoisonQueue middleware) and acknowledged, so it
// never holds up the erasures behind it.
//
// The same machinery expires the keys of visitors with nothing left: the
// relay keeps one schedule per visitor at their newest event's expiry by
// retention, and the Eraser erases the visitor when it fires, if nothing of
// theirs remains (see Expiry).
//
// A scheduled message holds ids only (tenant, conversation, visitor),
// opaque like every id in Parley.
package ephemeral

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"
)

// Job is the body of a scheduled erasure: which conversation, of which
// visitor.
type Job struct {
	Tenant       string `json:"tenant"`
	Conversation string `json:"conversation"`
	Visitor      string `json:"visitor"`
}

func (j Job) valid() bool {
	return stream.ValidToken(j.Tenant) && stream.ValidToken(j.Conversation) && stream.ValidToken(j.Visitor)
}

// The subjects of SCHEDULES this package uses: the schedule of a
// conversation's erasure, one per conversation (a newer schedule replaces
// it), and the target it fires on.
const (
	schedulePrefix = "schedule.erase-conversation."
	firedPrefix    = "schedule.fire.erase-conversation."
	firedFilter    = firedPrefix + "*.*"
)

func scheduleSubject(tenant, conversation string) string {
	return schedulePrefix + tenant + "." + conversation
}

func firedSubject(tenant, conversation string) string {
	return firedPrefix + tenant + "." + conversation
}

// Schedule returns the message that, stored in the SCHEDULES stream, fires
// the erasure of job's conversation at at (rounded up to the second, the
// schedule's resolution). id becomes its Nats-Msg-Id: the id of the event
// that closed the conversation, so that storing it again within the
// stream's duplicate window stores nothing, and after it replaces the
// schedule with an identical one.
func Schedule(id string, job Job, at time.Time) (*nats.Msg, error) {
	if !job.valid() {
		return nil, fmt.Errorf("schedule erasure: malformed ids in %+v", job)
	}
	data, err := json.Marshal(job)
	if err != nil {
		return nil, fmt.Errorf("encode scheduled erasure: %w", err)
	}
	m := nats.NewMsg(scheduleSubject(job.Tenant, job.Conversation))
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set(jetstream.ScheduleHeader, "@at "+at.Add(time.Second-1).Truncate(time.Second).UTC().Format(time.RFC3339))
	m.Header.Set(jetstream.ScheduleTargetHeader, firedSubject(job.Tenant, job.Conversation))
	m.Data = data
	return m, nil
}
