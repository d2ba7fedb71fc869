package privacy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy"
	"github.com/parley-chat/parley/services/privacy/internal/relay"
)

// testPinTTL is the relay's pin TTL in these tests: short, so a crashed
// instance's pin lapses quickly.
const testPinTTL = 3 * time.Second

func withPinTTL(d *privacy.Deps) { d.RelayPinTTL = testPinTTL }

// settled waits until the relay has acked every event stored in CHAT
// before the call.
func settled(t testing.TB, js jetstream.JetStream, within time.Duration) {
	t.Helper()
	acked(t, js, relay.Durable, within)
}

// acked waits until the consumer durable of CHAT, whose filter takes every
// event of these tests, has acked every event stored before the call: its
// ack floor reaches CHAT's last sequence. Its pending counts cannot tell:
// the server tells consumers of a stored event on a goroutine of its own,
// after acking the publish, so both can still be 0 for an event just
// stored, as if it were acked.
func acked(t testing.TB, js jetstream.JetStream, durable string, within time.Duration) {
	t.Helper()
	chat, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	last := chat.CachedInfo().State.LastSeq
	natstest.Until(t, within, durable+" acking every event", func() bool {
		// The service may not have made the consumer yet.
		cons, err := chat.Consumer(t.Context(), durable)
		if err != nil {
			return false
		}
		return cons.CachedInfo().AckFloor.Stream >= last
	})
}

// factCounts returns how many facts of each kind ANALYTICS holds for each
// conversation pseudonym, and their total.
func factCounts(t *testing.T, js jetstream.JetStream) (map[string]map[string]int, int) {
	t.Helper()
	fs := readFacts(t, js)
	counts := make(map[string]map[string]int)
	for _, f := range fs {
		if counts[f.Conversation] == nil {
			counts[f.Conversation] = make(map[string]int)
		}
		counts[f.Conversation][f.Kind]++
	}
	return counts, len(fs)
}

// TestRelayInstancesShareTheWork runs two privacy instances on one CHAT and
// crashes the one relaying midway: each conversation still has exactly one
// fact of each kind (three messages), the second staff message yields no
// first response whichever instance folded what, and the other instance
// relays the events stored after the crash within the pin TTL.
func TestRelayInstancesShareTheWork(t *testing.T) {
	s, kek, first, w := chatScene(t, "", withPinTTL)
	nc, js := w.nc, w.js

	// An odd number of conversations: without the pin, a consumer shared
	// by two instances hands out events in turn, and an even number would
	// give each conversation's events to the same instance at every step.
	const conversations, visitors = 61, 6
	var ids []string
	for range visitors {
		ids = append(ids, mustRegister(t, nc))
	}
	visitor := func(c int) string { return ids[c%visitors] }
	conv := func(c int) string { return fmt.Sprintf("conv-%d", c) }
	staff := event.Author{Role: "agent", ID: "agent-1"}
	// Consent is recorded to the nanosecond and events carry milliseconds:
	// rounded down, the first events could precede the last visitor's
	// consent and rightly yield no fact.
	t0 := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	// One step of every conversation at a time, so that each
	// conversation's events are spread over many deliveries.
	step := func(i int, typ event.Type, payload func(c int) any) {
		for c := range conversations {
			w.append(visitor(c), conv(c), typ, t0.Add(time.Duration(i)*time.Minute), payload(c))
		}
	}

	// The first instance relays alone, and so holds the pin.
	step(0, event.ConversationOpened, func(c int) any { return event.Opened{Visitor: visitor(c), Text: "hello"} })
	settled(t, js, 10*time.Second)
	second := start(t, s, kek, withPinTTL)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of the first instance: %s\nof the second: %s", first.logs.Bytes(), second.logs.Bytes())
		}
	})
	// Stamped as the chat service stamps them: only the first answer is
	// the first response, whichever instance relays which event.
	step(1, event.MessagePosted, func(int) any {
		return event.Posted{Stamped: stamped(event.Stamp{FirstResponseSeconds: secs(60)}), Author: staff, Text: "first answer"}
	})
	settled(t, js, 10*time.Second)
	step(2, event.MessagePosted, func(int) any {
		return event.Posted{Stamped: stamped(event.Stamp{}), Author: staff, Text: "second answer"}
	})
	// Crashed with events in hand: it neither acks them nor unpins.
	cid, err := first.nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	first.nc.Close()
	first.stop()
	// Calls go to the other instance only once the server saw the crash.
	natstest.Until(t, 10*time.Second, "the crashed instance gone", func() bool { return !serving(t, s, cid) })

	step(3, event.ConversationClosed, func(int) any {
		return event.Closed{Stamped: stamped(event.Stamp{OpenSeconds: secs(180)}), By: staff}
	})
	natstest.Until(t, testPinTTL+20*time.Second, "the other instance relaying the closings", func() bool {
		counts, _ := factCounts(t, js)
		closed := 0
		for _, kinds := range counts {
			closed += kinds[analyticsapi.KindClosed]
		}
		return closed == conversations
	})
	step(4, event.ConversationRated, func(int) any { return event.Rated{Stamped: stamped(event.Stamp{}), Score: 5} })
	// Events the crashed instance held come again after the ack wait.
	settled(t, js, time.Minute)

	want := map[string]int{
		analyticsapi.KindOpened:        1,
		analyticsapi.KindMessage:       3,
		analyticsapi.KindFirstResponse: 1,
		analyticsapi.KindClosed:        1,
		analyticsapi.KindRated:         1,
	}
	counts, total := factCounts(t, js)
	if len(counts) != conversations || total != conversations*7 {
		t.Errorf("facts of %d conversations, %d in all; want %d and %d", len(counts), total, conversations, conversations*7)
	}
	for c, kinds := range counts {
		for kind, n := range want {
			if kinds[kind] != n {
				t.Errorf("conversation %s has %d %s facts, want %d", c, kinds[kind], kind, n)
			}
		}
	}
}

// TestRelayTakesOverConsumerOfOlderVersion starts the service on a CHAT
// whose relay consumer an older version made, without the priority group,
// and acked to the end: the consumer is updated in place and the relay goes
// on after the last event, relaying none of the earlier ones again.
func TestRelayTakesOverConsumerOfOlderVersion(t *testing.T) {
	s, kek, older, w := chatScene(t, "")
	visitor := mustRegister(t, w.nc)
	w.append(visitor, "conv-a", event.ConversationOpened, time.Now(), event.Opened{Visitor: visitor, Text: "hi"})
	w.append(visitor, "conv-a", event.MessagePosted, time.Now(), event.Posted{Author: event.Author{Role: "agent", ID: "agent-1"}, Text: "hello"})
	settled(t, w.js, 10*time.Second)
	older.stop()

	// The older version's consumer, every event acked.
	chat, err := w.js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	if err := chat.DeleteConsumer(t.Context(), relay.Durable); err != nil {
		t.Fatal(err)
	}
	cons, err := chat.CreateConsumer(t.Context(), jetstream.ConsumerConfig{
		Durable: relay.Durable, FilterSubject: "chat.>", AckPolicy: jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy, AckWait: 30 * time.Second, MaxAckPending: 2000,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(10)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// A fresh ANALYTICS, without the duplicate window that would hide
	// facts relayed again.
	if err := w.js.DeleteStream(t.Context(), stream.Analytics); err != nil {
		t.Fatal(err)
	}

	start(t, s, kek, withPinTTL)
	w.append(visitor, "conv-a", event.MessagePosted, time.Now(), event.Posted{Author: event.Author{Role: "visitor", ID: visitor}, Text: "thanks"})
	settled(t, w.js, 10*time.Second)
	info, err := chat.Consumer(t.Context(), relay.Durable)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := info.CachedInfo().Config; cfg.PriorityPolicy != jetstream.PriorityPolicyPinned || len(cfg.PriorityGroups) != 1 {
		t.Errorf("consumer's priority policy %v, groups %v; want pinned, one group", cfg.PriorityPolicy, cfg.PriorityGroups)
	}
	if cfg := info.CachedInfo().Config; cfg.FilterSubject != stream.ChatSubjects {
		t.Errorf("consumer's filter %q, want %q", cfg.FilterSubject, stream.ChatSubjects)
	}
	counts, total := factCounts(t, w.js)
	if total != 1 {
		t.Errorf("facts after the update = %v, want only the message posted after it", counts)
	}
}

// TestRelayStoppedBeforeItsFirstEventLeavesNoPull stops an instance whose
// relay pulled but never got an event, then stores an event before the
// next instance starts: the next one relays it at once, not after the pin
// TTL. The stopped relay's pull, still waiting on the server, would
// otherwise take the pin at that event, with no one to receive it.
func TestRelayStoppedBeforeItsFirstEventLeavesNoPull(t *testing.T) {
	// Far longer than the wait for the facts below.
	withLongPin := func(d *privacy.Deps) { d.RelayPinTTL = 2 * time.Minute }
	s, kek, first, w := chatScene(t, "", withLongPin)
	nc, js := w.nc, w.js
	visitor := mustRegister(t, nc)
	// Made while an instance answers for the keys, stored once none runs.
	k, err := getKeys(t.Context(), nc, visitor, false)
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.New(k.Data, event.ConversationOpened, tenant, visitor, "conv-a", time.Now(), event.Opened{Visitor: visitor, Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 10*time.Second, "the relay pulling", func() bool {
		cons, err := js.Consumer(t.Context(), stream.Chat, relay.Durable)
		return err == nil && cons.CachedInfo().NumWaiting > 0
	})
	first.stop()
	if _, err := js.PublishMsg(t.Context(), e.Msg(stream.ChatSubject(tenant, "conv-a"))); err != nil {
		t.Fatal(err)
	}

	start(t, s, kek, withLongPin)
	facts(t, js, 2)
}

// TestRelayStopHandsBackTheBatchInHand stops an instance while its relay
// waits for ANALYTICS to store a batch's facts: the batch's event comes to
// the next instance at once, not after the ack wait. ANALYTICS is away
// meanwhile, and a subscriber that never answers takes its subject, so
// the store of the facts is never acknowledged.
func TestRelayStopHandsBackTheBatchInHand(t *testing.T) {
	s, kek, first, w := chatScene(t, "", withPinTTL)
	nc, js := w.nc, w.js
	visitor := mustRegister(t, nc)
	if err := js.DeleteStream(t.Context(), stream.Analytics); err != nil {
		t.Fatal(err)
	}
	held := make(chan *nats.Msg, 1)
	sub, err := nc.ChanSubscribe(analyticsapi.Subject(tenant, analyticsapi.KindFacts), held)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	w.append(visitor, "conv-a", event.ConversationOpened, time.Now(), event.Opened{Visitor: visitor, Text: "hi"})
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no facts published after 10s")
	}
	first.stop()

	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Analytics); err != nil {
		t.Fatal(err)
	}
	start(t, s, kek, withPinTTL)
	facts(t, js, 2)
}
