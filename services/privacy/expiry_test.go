package privacy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestRelayPushesExpiryOut shows the relay scheduling the expiry of a
// visitor's keys for when their newest event expires plus twice the grace
// (1% of the retention), in place of the one registration stored: a later
// event that expires later replaces the schedule, which stays one message
// in SCHEDULES; an event within the grace of the last schedule stores none.
func TestRelayPushesExpiryOut(t *testing.T) {
	nc, js := startOne(t)
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
	// Registration stored one already, for after the tenant's retention.
	registered, _ := schedule(v, 0)
	stored := post(v, "1h")
	first, got := schedule(v, registered)
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
	registered, _ = schedule(w, 0)
	post(w, "1h")
	schedule(w, registered)
	if last, _ := schedule(v, 0); last != second {
		t.Errorf("an event within the grace stored schedule %d, want the one before, %d", last, second)
	}
}

// TestRegisteredVisitorExpires: with a retention of 5 s, a visitor who
// registers and never chats is erased after it, by the expiry their
// registration scheduled: keys gone, their session, refreshed till then,
// refused, and no entry of it left, not even its spent tokens' markers. One who chats is kept while their event is (kept an hour,
// under an earlier, longer retention): their expiry is pushed out past it.
func TestRegisteredVisitorExpires(t *testing.T) {
	_, w := startWithChat(t, "")
	nc, js := w.nc, w.js
	if _, err := call[privacyapi.Settings](t, nc, privacyapi.PutSettingsSubject, admin, privacyapi.PutSettingsArgs{
		Tenant: tenant, Settings: privacyapi.Settings{RetentionDays: 1, RetentionSeconds: 5},
	}); err != nil {
		t.Fatal(err)
	}
	quiet, chatter := registerSession(t, nc), registerSession(t, nc)
	conv := "conv-" + chatter.VisitorID
	k, err := getKeys(t.Context(), nc, chatter.VisitorID, false)
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.New(k.Data, event.ConversationOpened, tenant, chatter.VisitorID, conv, time.Now(), event.Opened{Visitor: chatter.VisitorID, Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	m := e.Msg(stream.ChatSubject(tenant, conv))
	m.Header.Set(jetstream.MsgTTLHeader, "1h")
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	serveChat(t, nc, func(_ context.Context, req rpc.Request[chatapi.VisitorConversationsArgs]) (chatapi.ListResult, error) {
		res := chatapi.ListResult{Conversations: []chatapi.Summary{}}
		if req.Args.Visitor == chatter.VisitorID {
			res.Conversations = append(res.Conversations, chatapi.Summary{ID: conv, Tenant: tenant, Visitor: chatter.VisitorID})
		}
		return res, nil
	})

	// Both refresh their sessions, which last the retention from the last
	// refresh, until the one who never chatted is refused.
	quietTok, chatterTok := quiet.Session.RefreshToken, chatter.Session.RefreshToken
	var refreshed time.Time
	natstest.Until(t, 30*time.Second, "the visitor who never chatted erased", func() bool {
		if _, err := getKeys(t.Context(), nc, quiet.VisitorID, false); rpc.CodeOf(err) == rpc.CodeGone {
			return true
		}
		if time.Since(refreshed) > time.Second {
			refreshed = time.Now()
			chatterTok = mustRefresh(t, nc, chatterTok).RefreshToken
			if s, err := refresh(t, nc, quietTok); err == nil {
				quietTok = s.RefreshToken
			}
		}
		return false
	})
	// The erasure runs on: keys destroyed, then sessions deleted.
	natstest.Until(t, 10*time.Second, "the refresh of the erased visitor refused", func() bool {
		s, err := refresh(t, nc, quietTok)
		if err == nil {
			quietTok = s.RefreshToken
		}
		return rpc.CodeOf(err) == rpc.CodeForbidden
	})
	traces := []string{quiet.VisitorID, quiet.Session.ID, tokenHash(quiet.Session.RefreshToken), tokenHash(quietTok)}
	natstest.Until(t, 10*time.Second, "no entry of the erased visitor's session left", func() bool {
		return len(sessionEntries(t, js, traces...)) == 0
	})

	schedules, err := js.Stream(t.Context(), stream.Schedules)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 30*time.Second, "the chatting visitor's expiry pushed out past their event", func() bool {
		m, err := schedules.GetLastMsgForSubject(t.Context(), "schedule.expire-subject."+tenant+"."+chatter.VisitorID)
		if err != nil {
			return false
		}
		at, err := time.Parse(time.RFC3339, strings.TrimPrefix(m.Header.Get(jetstream.ScheduleHeader), "@at "))
		return err == nil && at.After(time.Now().Add(50*time.Minute))
	})
	if _, err := getKeys(t.Context(), nc, chatter.VisitorID, false); err != nil {
		t.Errorf("keys of the visitor whose event is kept: %v", err)
	}
	mustRefresh(t, nc, chatterTok)
}
