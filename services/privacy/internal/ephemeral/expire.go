package ephemeral

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/stream"
)

// Expiry is the body of a scheduled expiry of a visitor's keys: the
// visitor is erased when it fires if nothing of theirs is left in CHAT.
//
// The keys of a visitor outlive their conversations by a grace (Grace) and
// no more. The relay (internal/relay) schedules the expiry for the time
// their newest event expires by its Nats-TTL, plus the grace, on one
// subject per visitor: the server keeps one schedule per subject, and a
// newer message on it replaces the older (it rolls the subject up), so the
// latest event always sets the time. When it fires, the Eraser erases the
// visitor, audited as "erase" by RetentionActor (app.RetentionActor); if
// something of theirs is still there (an event stored meanwhile, or one
// kept longer by an earlier, longer retention), it schedules the expiry
// again for when that goes, so no schedule the relay skipped or lost can
// leave a key behind for good.
type Expiry struct {
	Tenant  string `json:"tenant"`
	Visitor string `json:"visitor"`
}

func (x Expiry) valid() bool {
	return stream.ValidToken(x.Tenant) && stream.ValidToken(x.Visitor)
}

// The subjects of SCHEDULES a visitor's expiry uses: its schedule, one per
// visitor, and the target it fires on.
const (
	expirePrefix      = "schedule.expire-subject."
	expireFiredPrefix = "schedule.fire.expire-subject."
	expireFiredFilter = expireFiredPrefix + "*.*"
)

func expireSubject(tenant, visitor string) string {
	return expirePrefix + tenant + "." + visitor
}

func expireFiredSubject(tenant, visitor string) string {
	return expireFiredPrefix + tenant + "." + visitor
}

// Grace is how long a visitor's keys outlive their last event, whose
// retention is ttl: 1% of it, between a second and an hour. It covers the
// server removing an expired event a little late and the schedule's
// resolution of a second, so that the expiry rarely fires before the last
// event is gone; and it is the slack the relay uses to store one schedule
// per visitor per grace at most, however fast they write.
func Grace(ttl time.Duration) time.Duration {
	return min(max(ttl/100, time.Second), time.Hour)
}

// ExpiresAt is when the keys of a visitor expire whose last data, stored at
// stored, is kept for retention: the retention and its grace later.
func ExpiresAt(stored time.Time, retention time.Duration) time.Time {
	return stored.Add(retention + Grace(retention))
}

// ExpirySchedule returns the message that, stored in the SCHEDULES stream,
// fires x's expiry at at (rounded up to the second, the schedule's
// resolution), replacing any schedule of x's before it. It carries no
// Nats-Msg-Id: each one stored must replace the one before, even an
// identical one.
func ExpirySchedule(x Expiry, at time.Time) (*nats.Msg, error) {
	if !x.valid() {
		return nil, fmt.Errorf("schedule expiry: malformed ids in %+v", x)
	}
	data, err := json.Marshal(x)
	if err != nil {
		return nil, fmt.Errorf("encode scheduled expiry: %w", err)
	}
	m := nats.NewMsg(expireSubject(x.Tenant, x.Visitor))
	m.Header.Set(jetstream.ScheduleHeader, "@at "+at.Add(time.Second-1).Truncate(time.Second).UTC().Format(time.RFC3339))
	m.Header.Set(jetstream.ScheduleTargetHeader, expireFiredSubject(x.Tenant, x.Visitor))
	m.Data = data
	return m, nil
}

// TTL returns the Nats-TTL of a message in h, false when it has none it
// expires by. The server reads the header as a Go duration or a number of
// seconds, and applies it in whole seconds.
func TTL(h nats.Header) (time.Duration, bool) {
	v := h.Get(jetstream.MsgTTLHeader)
	if v == "" {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		d = time.Duration(secs) * time.Second
	}
	d = d.Truncate(time.Second)
	return d, d > 0
}
