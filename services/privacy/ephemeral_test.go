package privacy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/ephemeral"
)

// TestRelaySchedulesErasureAfterClose shows the relay storing, when a
// conversation erased after closing closes, a schedule in SCHEDULES that
// fires at close + the delay of its opening event, whatever the visitor's
// analytics consent, with ids only in its body; and nothing for a
// conversation without a delay. The delay comes from the closing's stamp,
// or, for a closing stored before stamps, from the opening event.
func TestRelaySchedulesErasureAfterClose(t *testing.T) {
	_, w := startWithChat(t, "")
	nc, js := w.nc, w.js
	visitor, err := register(t.Context(), nc, privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: event.Consent{Analytics: false, NoticeVersion: "n1"}})
	if err != nil {
		t.Fatal(err)
	}
	staff := event.Author{Role: "agent", ID: "agent-1"}
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	tests := []struct {
		conv   string
		opened event.Opened
		closed event.Closed
		// want is the schedule's time; zero for none.
		want time.Time
	}{
		{"conv-seconds", event.Opened{Visitor: visitor, Text: "x", EraseAfterCloseSeconds: 30}, event.Closed{By: staff}, t0.Add(31 * time.Second).Truncate(time.Second)},
		{"conv-hours", event.Opened{Visitor: visitor, Text: "x", EraseAfterCloseHours: 2}, event.Closed{By: staff}, t0.Add(2*time.Hour + time.Second).Truncate(time.Second)},
		{"conv-kept", event.Opened{Visitor: visitor, Text: "x"}, event.Closed{By: staff}, time.Time{}},
		// Stamped: the relay takes the delay from the stamp alone, so an
		// opening that says otherwise changes nothing.
		{"conv-stamped", event.Opened{Visitor: visitor, Text: "x"}, event.Closed{Stamped: stamped(event.Stamp{EraseAfterCloseSeconds: 45}), By: staff},
			t0.Add(46 * time.Second).Truncate(time.Second)},
		{"conv-stamped-kept", event.Opened{Visitor: visitor, Text: "x", EraseAfterCloseSeconds: 30}, event.Closed{Stamped: stamped(event.Stamp{}), By: staff}, time.Time{}},
	}
	for _, tt := range tests {
		w.append(visitor, tt.conv, event.ConversationOpened, t0.Add(-time.Minute), tt.opened)
		w.append(visitor, tt.conv, event.ConversationClosed, t0, tt.closed)
	}
	// A marker conversation closed last: once its schedule is stored, the
	// relay has handled every event before it.
	w.append(visitor, "conv-last", event.ConversationOpened, t0, event.Opened{Visitor: visitor, Text: "x", EraseAfterCloseSeconds: 1})
	w.append(visitor, "conv-last", event.ConversationClosed, t0, event.Closed{By: staff})
	schedules, err := js.Stream(t.Context(), stream.Schedules)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 10*time.Second, "the last schedule", func() bool {
		_, err := schedules.GetLastMsgForSubject(t.Context(), "schedule.erase-conversation."+tenant+".conv-last")
		return err == nil
	})

	for _, tt := range tests {
		t.Run(tt.conv, func(t *testing.T) {
			m, err := schedules.GetLastMsgForSubject(t.Context(), "schedule.erase-conversation."+tenant+"."+tt.conv)
			if tt.want.IsZero() {
				if !errors.Is(err, jetstream.ErrMsgNotFound) {
					t.Errorf("schedule of %s: %v, want none", tt.conv, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("schedule of %s: %v", tt.conv, err)
			}
			got := map[string]string{
				"schedule": m.Header.Get(jetstream.ScheduleHeader),
				"target":   m.Header.Get(jetstream.ScheduleTargetHeader),
			}
			want := map[string]string{
				"schedule": "@at " + tt.want.Format(time.RFC3339),
				"target":   "schedule.fire.erase-conversation." + tenant + "." + tt.conv,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("schedule headers (-want +got):\n%s", diff)
			}
			var body map[string]string
			if err := json.Unmarshal(m.Data, &body); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(map[string]string{"tenant": tenant, "conversation": tt.conv, "visitor": visitor}, body); diff != "" {
				t.Errorf("schedule body (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEraserParksMalformedFiredMessages shows a fired erasure that can
// never run (a body that is not JSON, ids that do not match its subject)
// parked on ephemeral.PoisonSubject with its body and the reason, and
// acknowledged, while the erasure fired after them still runs.
func TestEraserParksMalformedFiredMessages(t *testing.T) {
	_, w := startWithChat(t, "")
	nc, js := w.nc, w.js
	// The chat service's part: the visitor has no other conversation.
	serveChat(t, nc, func(context.Context, rpc.Request[chatapi.VisitorConversationsArgs]) (chatapi.ListResult, error) {
		return chatapi.ListResult{}, nil
	})
	erased, err := nc.SubscribeSync(privacyapi.ConversationErasedSubject)
	if err != nil {
		t.Fatal(err)
	}
	// The reasons name the messages' sequences, which the parked ones
	// interleave with as the eraser goes.
	fired := func(conv string, body string) uint64 {
		t.Helper()
		ack, err := js.Publish(t.Context(), "schedule.fire.erase-conversation."+tenant+"."+conv, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	garbled := fired("conv-garbled", "{not json")
	elsewhere := fired("conv-elsewhere", `{"tenant":"demo","conversation":"conv-other","visitor":"v-1"}`)
	fired("conv-good", `{"tenant":"demo","conversation":"conv-good","visitor":"v-1"}`)

	m, err := erased.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("erasure of conv-good behind the malformed ones: %v", err)
	}
	var got privacyapi.ConversationErased
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	if want := (privacyapi.ConversationErased{Tenant: tenant, Conversation: "conv-good"}); got != want {
		t.Errorf("ConversationErased = %+v, want %+v", got, want)
	}

	type parked struct{ Body, Reason, Handler, Topic string }
	poison, err := js.OrderedConsumer(t.Context(), stream.Schedules, jetstream.OrderedConsumerConfig{FilterSubjects: []string{ephemeral.PoisonSubject}})
	if err != nil {
		t.Fatal(err)
	}
	var parkedMsgs []parked
	natstest.Until(t, 10*time.Second, "two parked messages", func() bool {
		b, err := poison.Fetch(2-len(parkedMsgs), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			parkedMsgs = append(parkedMsgs, parked{
				Body:    string(m.Data()),
				Reason:  m.Headers().Get("reason_poisoned"),
				Handler: m.Headers().Get("handler_poisoned"),
				Topic:   m.Headers().Get("topic_poisoned"),
			})
		}
		return len(parkedMsgs) >= 2
	})
	want := []parked{
		{Body: "{not json", Reason: fmt.Sprintf("malformed scheduled erasure: message %d is not JSON", garbled),
			Handler: "erase-after-close", Topic: "schedule.fire.erase-conversation.*.*"},
		{Body: `{"tenant":"demo","conversation":"conv-other","visitor":"v-1"}`, Reason: fmt.Sprintf("malformed scheduled erasure: message %d names another conversation than its subject", elsewhere),
			Handler: "erase-after-close", Topic: "schedule.fire.erase-conversation.*.*"},
	}
	if diff := cmp.Diff(want, parkedMsgs); diff != "" {
		t.Errorf("parked messages (-want +got):\n%s", diff)
	}

	// Parked means done: nothing left for the consumer to deliver again.
	cons, err := js.Consumer(t.Context(), stream.Schedules, ephemeral.Durable)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 10*time.Second, "every fired message acknowledged", func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

// TestEraserListsEveryPage shows the Eraser reading the visitor's list of
// conversations page after page, as the chat service answers it: a
// conversation still in CHAT on the last of several pages keeps its
// visitor, and a visitor with none left in CHAT is erased.
func TestEraserListsEveryPage(t *testing.T) {
	_, w := startWithChat(t, "")
	nc, js := w.nc, w.js
	kept, alone := mustRegister(t, nc), mustRegister(t, nc)
	// Each visitor has eight conversations; the first is the one erased.
	convs := map[string][]string{}
	for _, v := range []struct{ id, prefix string }{{kept, "k"}, {alone, "a"}} {
		for i := range 8 {
			convs[v.id] = append(convs[v.id], fmt.Sprintf("%s-%02d", v.prefix, i))
		}
	}
	// Only kept's last one, on the last page, is still in CHAT.
	w.append(kept, "k-07", event.ConversationOpened, time.Now(), event.Opened{Visitor: kept, Text: "x"})

	// The chat service's part: a visitor's conversations in order of id
	// after the cursor, two a page, as a page bounded by bytes may hold
	// fewer than chatapi.PageItems.
	var mu sync.Mutex
	pages := map[string]int{}
	serveChat(t, nc, func(_ context.Context, req rpc.Request[chatapi.VisitorConversationsArgs]) (chatapi.ListResult, error) {
		if want := auth.System(tenant, privacyapi.Service); req.Principal != want {
			t.Errorf("listed %s's conversations as %v, want %v", req.Args.Visitor, req.Principal, want)
		}
		visitor := req.Args.Visitor
		mu.Lock()
		pages[visitor]++
		mu.Unlock()
		res := chatapi.ListResult{Conversations: []chatapi.Summary{}}
		ids := convs[visitor]
		for i, id := range ids {
			if id <= req.Args.Page.After {
				continue
			}
			if len(res.Conversations) == 2 {
				res.Next = &ids[i-1]
				break
			}
			res.Conversations = append(res.Conversations, chatapi.Summary{ID: id, Tenant: tenant, Visitor: visitor})
		}
		return res, nil
	})

	for _, j := range []ephemeral.Job{
		{Tenant: tenant, Conversation: "k-00", Visitor: kept},
		{Tenant: tenant, Conversation: "a-00", Visitor: alone},
	} {
		body, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(t.Context(), "schedule.fire.erase-conversation."+tenant+"."+j.Conversation, body); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Until(t, 15*time.Second, "the visitor with nothing left erased", func() bool {
		_, err := getKeys(t.Context(), nc, alone, false)
		return rpc.CodeOf(err) == rpc.CodeGone
	})
	cons, err := js.Consumer(t.Context(), stream.Schedules, ephemeral.Durable)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 10*time.Second, "both erasures done", func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	if _, err := getKeys(t.Context(), nc, kept, false); err != nil {
		t.Errorf("Get(visitor with a conversation on the last page) error = %v, want keys", err)
	}
	// Four pages each, or more if an erasure ran again after a failure.
	mu.Lock()
	defer mu.Unlock()
	for _, v := range []string{kept, alone} {
		if pages[v] < 4 {
			t.Errorf("the Eraser asked %d pages of a visitor's list, want the 4 there are", pages[v])
		}
	}
}

// serveChat serves fn as the chat service's internal endpoint
// VisitorConversationsSubject, which admits the system principal only,
// until the test ends.
func serveChat(t *testing.T, nc *nats.Conn, fn func(context.Context, rpc.Request[chatapi.VisitorConversationsArgs]) (chatapi.ListResult, error)) {
	t.Helper()
	served, err := rpc.Serve(t.Context(), nc, slog.New(slog.DiscardHandler), rpc.Service{Name: "fake-chat",
		Groups: []rpc.Group{{Prefix: "parley.internal.chat", Internal: true,
			Routes: []rpc.Route{{Subject: chatapi.VisitorConversationsSubject, Handler: rpc.Handle(fn)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(served.Stop)
}
