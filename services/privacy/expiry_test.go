package privacy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestRelayPushesExpiryOut shows the relay scheduling the expiry of a
// visitor's keys for when their newest event expires plus twice the grace
// (1% of the retention): a later event that expires later replaces the
// schedule, which stays one message in SCHEDULES; an event within the
// grace of the last schedule stores none.
func TestRelayPushesExpiryOut(t *testing.T) {
	s := natstest.Start(t, "")
	start(t, s, newKEK(t))
	nc, js := natstest.Connect(t, s)
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Chat); err != nil {
		t.Fatal(err)
	}
	chat, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	newVisitor := func() string {
		v, err := register(t.Context(), nc, privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: event.Consent{NoticeVersion: "n1"}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// post appends an event of visitor's with a TTL and returns when it
	// was stored.
	post := func(visitor, ttl string) time.Time {
		t.Helper()
		k, err := getKeys(t.Context(), nc, visitor, true)
		if err != nil {
			t.Fatal(err)
		}
		e, err := event.New(k.Data, event.ConversationOpened, tenant, visitor, "conv-"+visitor, time.Now(), event.Opened{Visitor: visitor, Text: "x"})
		if err != nil {
			t.Fatal(err)
		}
		m := e.Msg(stream.ChatSubject(tenant, "conv-"+visitor))
		m.Header.Set(jetstream.MsgTTLHeader, ttl)
		ack, err := js.PublishMsg(t.Context(), m)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := chat.GetMsg(t.Context(), ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		return stored.Time
	}
	schedules, err := js.Stream(t.Context(), stream.Schedules)
	if err != nil {
		t.Fatal(err)
	}
	// schedule waits for visitor's schedule after sequence after, and
	// returns its sequence and time.
	schedule := func(visitor string, after uint64) (uint64, string) {
		t.Helper()
		var m *jetstream.RawStreamMsg
		natstest.Until(t, 10*time.Second, "the expiry of "+visitor, func() bool {
			m, err = schedules.GetLastMsgForSubject(t.Context(), "schedule.expire-subject."+tenant+"."+visitor)
			return err == nil && m.Sequence > after
		})
		if got, want := m.Header.Get(jetstream.ScheduleTargetHeader), "schedule.fire.expire-subject."+tenant+"."+visitor; got != want {
			t.Errorf("target = %q, want %q", got, want)
		}
		return m.Sequence, strings.TrimPrefix(m.Header.Get(jetstream.ScheduleHeader), "@at ")
	}
	at := func(t time.Time) string {
		return t.Add(time.Second - 1).Truncate(time.Second).UTC().Format(time.RFC3339)
	}
	const grace = 36 * time.Second // 1% of an hour

	v := newVisitor()
	stored := post(v, "1h")
	first, got := schedule(v, 0)
	if want := at(stored.Add(time.Hour + 2*grace)); got != want {
		t.Errorf("first expiry at %s, want %s", got, want)
	}

	// A longer retention: the event expires later than the schedule.
	stored = post(v, "2h")
	second, got := schedule(v, first)
	if want := at(stored.Add(2*time.Hour + 4*grace)); got != want {
		t.Errorf("pushed-out expiry at %s, want %s", got, want)
	}
	if _, err := schedules.GetMsg(t.Context(), first); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("superseded schedule %d still stored: err = %v", first, err)
	}
	info, err := schedules.Info(t.Context(), jetstream.WithSubjectFilter("schedule.expire-subject."+tenant+"."+v))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects["schedule.expire-subject."+tenant+"."+v]; n != 1 {
		t.Errorf("SCHEDULES holds %d schedules of the visitor, want 1", n)
	}

	// Within the grace of the last schedule: none stored. Another
	// visitor's schedule tells that the relay is past the event.
	post(v, "2h")
	w := newVisitor()
	post(w, "1h")
	schedule(w, second)
	if last, _ := schedule(v, 0); last != second {
		t.Errorf("an event within the grace stored schedule %d, want the one before, %d", last, second)
	}
}
