package privacy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy"
	"github.com/parley-chat/parley/services/privacy/internal/relay"
)

// chatWriter appends sealed chat events to CHAT, as the chat service does.
type chatWriter struct {
	t  *testing.T
	nc *nats.Conn
	js jetstream.JetStream
}

func (w chatWriter) append(visitor, conv string, typ event.Type, at time.Time, payload any) {
	w.t.Helper()
	k, err := getKeys(w.t.Context(), w.nc, visitor, true)
	if err != nil {
		w.t.Fatal(err)
	}
	e, err := event.New(k.Data, typ, tenant, visitor, conv, at, payload)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.js.PublishMsg(w.t.Context(), e.Msg(stream.ChatSubject(tenant, conv))); err != nil {
		w.t.Fatal(err)
	}
}

// stamped returns the stamp the chat service would seal into a payload.
func stamped(st event.Stamp) event.Stamped {
	return event.Stamped{Stamp: &st}
}

func secs(s float64) *float64 { return &s }

// startWithChat starts the privacy service on a server storing in dir (a
// temp dir when empty) that has the CHAT stream, and returns the server and
// a writer of chat events on a connection of its own.
func startWithChat(t *testing.T, dir string) (*natsembed.Server, chatWriter) {
	t.Helper()
	s, _, _, w := chatScene(t, dir)
	return s, w
}

// chatScene is startWithChat's scene in full: the server, the KEK the
// privacy instance (started with opts) runs under, the instance, and the
// writer.
func chatScene(t *testing.T, dir string, opts ...func(*privacy.Deps)) (*natsembed.Server, seal.Key, *instance, chatWriter) {
	t.Helper()
	s := natstest.Start(t, dir)
	nc, js := natstest.Connect(t, s)
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Chat); err != nil {
		t.Fatal(err)
	}
	kek := newKEK(t)
	return s, kek, start(t, s, kek, opts...), chatWriter{t: t, nc: nc, js: js}
}

// facts returns the facts on ANALYTICS once there are want of them.
func facts(t *testing.T, js jetstream.JetStream, want int) []analyticsapi.Fact {
	t.Helper()
	var out []analyticsapi.Fact
	natstest.Until(t, 10*time.Second, "facts on ANALYTICS", func() bool {
		out = readFacts(t, js)
		return len(out) >= want
	})
	return out
}

// analyticsMsgs returns how many messages ANALYTICS holds.
func analyticsMsgs(t testing.TB, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), stream.Analytics)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// readFacts returns the facts ANALYTICS holds now, each once, erasures left out, and
// fails the test for facts stored on another subject or id than their
// own, or of another tenant than their message's.
func readFacts(t testing.TB, js jetstream.JetStream) []analyticsapi.Fact {
	t.Helper()
	cons, err := js.OrderedConsumer(t.Context(), stream.Analytics, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []analyticsapi.Fact
	seen := make(map[string]analyticsapi.Fact)
	for range analyticsMsgs(t, js) {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(m.Subject(), "."+analyticsapi.KindErasure) {
			continue
		}
		var fs []analyticsapi.Fact
		if err := json.Unmarshal(m.Data(), &fs); err != nil {
			t.Fatal(err)
		}
		if len(fs) == 0 || len(fs) > analyticsapi.MaxFactsPerMsg || m.Headers().Get(jetstream.MsgIDHeader) != analyticsapi.FactsID(fs) {
			t.Errorf("%d facts on %s with id %s", len(fs), m.Subject(), m.Headers().Get(jetstream.MsgIDHeader))
		}
		for _, f := range fs {
			if m.Subject() != analyticsapi.Subject(f.Tenant, analyticsapi.KindFacts) {
				t.Errorf("fact %s of %s on %s", f.ID, f.Tenant, m.Subject())
			}
			// A batch relayed again in another grouping stores its facts
			// again (docs/analytics.md): the same fact, counted once.
			if first, ok := seen[f.ID]; ok {
				if !reflect.DeepEqual(first, f) {
					t.Errorf("fact %s stored twice, differently: %+v and %+v", f.ID, first, f)
				}
				continue
			}
			seen[f.ID] = f
			out = append(out, f)
		}
	}
	return out
}

func TestRelayWritesConsentedPseudonymizedFacts(t *testing.T) {
	_, w := startWithChat(t, "")
	nc, js := w.nc, w.js
	consented := mustRegister(t, nc)
	refused, err := register(t.Context(), nc, privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: event.Consent{Analytics: false, NoticeVersion: "n1"}})
	if err != nil {
		t.Fatal(err)
	}
	withdrawn := mustRegister(t, nc)
	sentinel := mustRegister(t, nc)

	t0 := time.Now().Add(time.Second).Truncate(time.Millisecond)
	const agentID, text = "agent-7", "a secret text marker, longer than twenty characters"
	staff := event.Author{Role: "agent", ID: agentID}
	// Stamped as the chat service stamps them.
	assigned := stamped(event.Stamp{Assignee: agentID})
	w.append(consented, "conv-a", event.ConversationOpened, t0, event.Opened{Stamped: stamped(event.Stamp{}), Visitor: consented, Text: "hello there"})
	w.append(consented, "conv-a", event.ConversationAssigned, t0.Add(5*time.Second), event.Assigned{Stamped: assigned, Agent: agentID, By: staff})
	w.append(consented, "conv-a", event.MessagePosted, t0.Add(30*time.Second), event.Posted{
		Stamped: stamped(event.Stamp{Assignee: agentID, FirstResponseSeconds: secs(30)}), Author: staff, Text: text})
	w.append(consented, "conv-a", event.MessagePosted, t0.Add(40*time.Second), event.Posted{Stamped: assigned, Author: event.Author{Role: "visitor", ID: consented}, Text: strings.Repeat("x", 600)})
	w.append(consented, "conv-a", event.MessagePosted, t0.Add(50*time.Second), event.Posted{Stamped: assigned, Author: staff, Text: "ok"})
	w.append(consented, "conv-a", event.ConversationClosed, t0.Add(120*time.Second), event.Closed{
		Stamped: stamped(event.Stamp{Assignee: agentID, OpenSeconds: secs(120)}), By: staff})
	w.append(consented, "conv-a", event.ConversationRated, t0.Add(130*time.Second), event.Rated{Stamped: assigned, Score: 4})
	w.append(refused, "conv-b", event.ConversationOpened, t0, event.Opened{Visitor: refused, Text: text})
	w.append(refused, "conv-b", event.MessagePosted, t0.Add(time.Second), event.Posted{Author: staff, Text: text})

	// Consent withdrawn between two events of a conversation.
	w.append(withdrawn, "conv-c", event.ConversationOpened, time.Now(), event.Opened{Visitor: withdrawn, Text: "hi"})
	if _, err := call[privacyapi.ConsentResult](t, nc, privacyapi.SetConsentSubject, visitorOf(withdrawn),
		privacyapi.SetConsentArgs{Tenant: tenant, Consent: event.Consent{Analytics: false, NoticeVersion: "n1"}}); err != nil {
		t.Fatal(err)
	}
	w.append(withdrawn, "conv-c", event.MessagePosted, time.Now(), event.Posted{Author: staff, Text: "after withdrawal"})
	// The relay's one consumer takes CHAT in order and stores a batch's
	// facts in order, so once the facts of an event appended after it are
	// stored, a fact of the event after the withdrawal would be too.
	w.append(sentinel, "conv-s", event.ConversationOpened, time.Now(), event.Opened{Visitor: sentinel, Text: "sentinel"})

	key := func(id string) [32]byte {
		k, err := getKeys(t.Context(), nc, id, false)
		if err != nil {
			t.Fatal(err)
		}
		return k.Pseudonym
	}
	sv := analyticsapi.Pseudonym(key(sentinel), sentinel)
	var got []analyticsapi.Fact
	natstest.Until(t, 10*time.Second, "the sentinel's facts on ANALYTICS", func() bool {
		got = readFacts(t, js)
		return slices.ContainsFunc(got, func(f analyticsapi.Fact) bool { return f.Visitor == sv })
	})

	visitorKey, withdrawnKey := key(consented), key(withdrawn)
	v, conv := analyticsapi.Pseudonym(visitorKey, consented), analyticsapi.Pseudonym(visitorKey, "conv-a")
	ag := analyticsapi.Pseudonym(key(agentID), agentID)
	wv, wconv := analyticsapi.Pseudonym(withdrawnKey, withdrawn), analyticsapi.Pseudonym(withdrawnKey, "conv-c")
	fact := func(kind string, at time.Time) analyticsapi.Fact {
		return analyticsapi.Fact{Tenant: tenant, Kind: kind, At: at.UTC(), Conversation: conv, Visitor: v}
	}
	with := func(f analyticsapi.Fact, change func(*analyticsapi.Fact)) analyticsapi.Fact {
		change(&f)
		return f
	}
	want := []analyticsapi.Fact{
		fact(analyticsapi.KindOpened, t0),
		with(fact(analyticsapi.KindMessage, t0), func(f *analyticsapi.Fact) { f.Role, f.Length = "visitor", "0-20" }),
		with(fact(analyticsapi.KindMessage, t0.Add(30*time.Second)), func(f *analyticsapi.Fact) { f.Role, f.Length, f.Agent = "agent", "21-100", ag }),
		with(fact(analyticsapi.KindFirstResponse, t0.Add(30*time.Second)), func(f *analyticsapi.Fact) { f.Agent, f.Value = ag, 30 }),
		with(fact(analyticsapi.KindMessage, t0.Add(40*time.Second)), func(f *analyticsapi.Fact) { f.Role, f.Length = "visitor", "500+" }),
		with(fact(analyticsapi.KindMessage, t0.Add(50*time.Second)), func(f *analyticsapi.Fact) { f.Role, f.Length, f.Agent = "agent", "0-20", ag }),
		with(fact(analyticsapi.KindClosed, t0.Add(120*time.Second)), func(f *analyticsapi.Fact) { f.Agent, f.Value = ag, 120 }),
		with(fact(analyticsapi.KindRated, t0.Add(130*time.Second)), func(f *analyticsapi.Fact) { f.Agent, f.Value = ag, 4 }),
	}
	var gotOfWithdrawn []string
	var gotOfConsented []analyticsapi.Fact
	for _, f := range got {
		switch f.Visitor {
		case wv:
			if f.Conversation != wconv {
				t.Errorf("fact of conv-c has conversation %s, want %s", f.Conversation, wconv)
			}
			gotOfWithdrawn = append(gotOfWithdrawn, f.Kind)
		case v:
			gotOfConsented = append(gotOfConsented, f)
		case sv:
			// The sentinel's facts only mark how far the relay got.
		default:
			t.Errorf("fact %+v of a visitor who did not consent", f)
		}
	}
	if diff := cmp.Diff(want, gotOfConsented, cmpopts.IgnoreFields(analyticsapi.Fact{}, "ID")); diff != "" {
		t.Errorf("facts of the consenting visitor (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{analyticsapi.KindOpened, analyticsapi.KindMessage}, gotOfWithdrawn); diff != "" {
		t.Errorf("facts of the visitor who withdrew (-want +got):\n%s", diff)
	}
	for _, f := range got {
		b, _ := json.Marshal(f)
		for _, secret := range []string{consented, refused, withdrawn, agentID, "conv-a", "conv-b", "conv-c", "secret", "hello"} {
			if strings.Contains(string(b), secret) {
				t.Errorf("fact %s holds %q", b, secret)
			}
		}
	}
}

// TestRelayCountsABotAsNoAgent relays a conversation a bot answered and
// then handed off: the bot's message is a message fact of role bot naming
// no agent, the closing names no agent, the assignment and the hand-off
// yield no fact, and no key is made for the bot as if it were a person.
func TestRelayCountsABotAsNoAgent(t *testing.T) {
	_, w := startWithChat(t, "")
	visitor := mustRegister(t, w.nc)
	t0 := time.Now().Add(time.Second).Truncate(time.Millisecond)
	bot := event.Author{Role: "bot", ID: "faq"}
	onBot := stamped(event.Stamp{Assignee: event.BotAssignee("faq")})
	w.append(visitor, "conv-d", event.ConversationOpened, t0, event.Opened{Stamped: stamped(event.Stamp{}), Visitor: visitor, Text: "hello"})
	w.append(visitor, "conv-d", event.ConversationAssigned, t0.Add(time.Second), event.Assigned{Stamped: onBot, Agent: event.BotAssignee("faq"), By: event.Author{Role: "supervisor", ID: "sue"}})
	w.append(visitor, "conv-d", event.MessagePosted, t0.Add(2*time.Second), event.Posted{Stamped: onBot, Author: bot, Text: "how may I help?"})
	w.append(visitor, "conv-d", event.ConversationHandedOff, t0.Add(3*time.Second), event.HandedOff{
		Stamped: stamped(event.Stamp{PreviousAssignee: event.BotAssignee("faq")}), By: event.Author{Role: "visitor", ID: visitor}})
	w.append(visitor, "conv-d", event.ConversationClosed, t0.Add(4*time.Second), event.Closed{
		Stamped: stamped(event.Stamp{OpenSeconds: secs(4)}), By: event.Author{Role: "visitor", ID: visitor}})

	var got []string
	for _, f := range facts(t, w.js, 4) {
		got = append(got, fmt.Sprintf("%s role=%q agent=%v", f.Kind, f.Role, f.Agent != ""))
	}
	want := []string{
		analyticsapi.KindOpened + ` role="" agent=false`,
		analyticsapi.KindMessage + ` role="visitor" agent=false`,
		analyticsapi.KindMessage + ` role="bot" agent=false`,
		analyticsapi.KindClosed + ` role="" agent=false`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("facts of a bot's conversation (-want +got):\n%s", diff)
	}
	if _, err := getKeys(t.Context(), w.nc, "faq", false); err == nil {
		t.Error("the relay made keys for the bot faq, as for a person")
	}
}

// TestRelayFactsOfUnstampedEvents relays a conversation stored by a chat
// service of before stamps: the facts of each event alone come out, the
// closed fact with its seconds from the opening event; the first response
// and the agent of the closed and rated facts, which need the whole
// history, are lost, as the package comment says.
func TestRelayFactsOfUnstampedEvents(t *testing.T) {
	_, w := startWithChat(t, "")
	nc, js := w.nc, w.js
	visitor := mustRegister(t, nc)
	t0 := time.Now().Add(time.Second).Truncate(time.Millisecond)
	staff := event.Author{Role: "agent", ID: "agent-7"}
	w.append(visitor, "conv-a", event.ConversationOpened, t0, event.Opened{Visitor: visitor, Text: "hello"})
	w.append(visitor, "conv-a", event.ConversationAssigned, t0.Add(5*time.Second), event.Assigned{Agent: staff.ID, By: staff})
	w.append(visitor, "conv-a", event.MessagePosted, t0.Add(30*time.Second), event.Posted{Author: staff, Text: "hi"})
	w.append(visitor, "conv-a", event.ConversationClosed, t0.Add(120*time.Second), event.Closed{By: staff})
	w.append(visitor, "conv-a", event.ConversationRated, t0.Add(130*time.Second), event.Rated{Score: 3})

	var got []string
	for _, f := range facts(t, js, 5) {
		got = append(got, fmt.Sprintf("%s agent=%t value=%g", f.Kind, f.Agent != "", f.Value))
	}
	want := []string{
		analyticsapi.KindOpened + " agent=false value=0",
		analyticsapi.KindMessage + " agent=false value=0",
		analyticsapi.KindMessage + " agent=true value=0",
		analyticsapi.KindClosed + " agent=false value=120",
		analyticsapi.KindRated + " agent=false value=3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("facts of unstamped events (-want +got):\n%s", diff)
	}
}

// TestRelayRecovers shows the relay relaying every event after its
// consumer of CHAT was deleted, and after ANALYTICS refused facts for a
// while: it follows a new consumer, and the events it could not relay come
// again.
func TestRelayRecovers(t *testing.T) {
	_, w := startWithChat(t, "")
	nc, js := w.nc, w.js
	visitor := mustRegister(t, nc)
	w.append(visitor, "conv-a", event.ConversationOpened, time.Now(), event.Opened{Visitor: visitor, Text: "hi"})
	facts(t, js, 2)

	chat, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	if err := chat.DeleteConsumer(t.Context(), "privacy-relay"); err != nil {
		t.Fatal(err)
	}
	// Deleted, the consumer starts over from the first event: its facts
	// are stored again, in another grouping, and counted once.
	w.append(visitor, "conv-a", event.MessagePosted, time.Now(), event.Posted{Author: event.Author{Role: "visitor", ID: visitor}, Text: "after deletion"})
	facts(t, js, 3)

	if err := js.DeleteStream(t.Context(), stream.Analytics); err != nil {
		t.Fatal(err)
	}
	w.append(visitor, "conv-a", event.MessagePosted, time.Now(), event.Posted{Author: event.Author{Role: "visitor", ID: visitor}, Text: "while away"})
	natstest.Until(t, 10*time.Second, "the relay retrying an event", func() bool {
		info, err := chat.Consumer(t.Context(), "privacy-relay")
		if err != nil {
			t.Fatal(err)
		}
		return info.CachedInfo().NumRedelivered > 0
	})
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Analytics); err != nil {
		t.Fatal(err)
	}
	if got := facts(t, js, 1); len(got) != 1 || got[0].Kind != analyticsapi.KindMessage {
		t.Errorf("facts after ANALYTICS came back = %+v, want the message posted while it was away", got)
	}
}

// TestRelayRecoversConsumerLostInRestart restarts the server with the
// relay's consumer gone from its store: pulls get no answer at all then,
// and the relay must notice and make the consumer again.
func TestRelayRecoversConsumerLostInRestart(t *testing.T) {
	dir := t.TempDir()
	s, w := startWithChat(t, dir)
	nc, js := w.nc, w.js
	visitor := mustRegister(t, nc)
	w.append(visitor, "conv-a", event.ConversationOpened, time.Now(), event.Opened{Visitor: visitor, Text: "hi"})
	facts(t, js, 2)

	port := s.Addr().(*net.TCPAddr).Port
	s.Close()
	obs, err := filepath.Glob(filepath.Join(dir, "jetstream", "*", "streams", stream.Chat, "obs", relay.Durable))
	if err != nil || len(obs) != 1 {
		t.Fatalf("consumer's store = %v, %v; want one directory", obs, err)
	}
	if err := os.RemoveAll(obs[0]); err != nil {
		t.Fatal(err)
	}
	restarted, err := natsembed.Start(natsembed.Options{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(restarted.Close)
	natstest.Until(t, 10*time.Second, "the privacy service answering again", func() bool {
		_, err := getKeys(t.Context(), nc, visitor, false)
		return err == nil
	})

	w.append(visitor, "conv-a", event.MessagePosted, time.Now(), event.Posted{Author: event.Author{Role: "visitor", ID: visitor}, Text: "after restart"})
	natstest.Until(t, 30*time.Second, "the relay following a new consumer", func() bool {
		return len(readFacts(t, js)) >= 3
	})
}

func TestEraseStoresAnalyticsCleanupWhenAnalyticsIsAway(t *testing.T) {
	nc, js := startOne(t)
	visitor := mustRegister(t, nc)
	k, err := getKeys(t.Context(), nc, visitor, false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := erase(t, nc, visitorOf(visitor), visitor)
	if err != nil {
		t.Fatal(err)
	}
	if got.Report == nil || got.Report.Counts["analytics_cleanup_pending"] != 1 {
		t.Errorf("erasure report = %+v, want analytics_cleanup_pending 1", got.Report)
	}
	an, err := js.Stream(t.Context(), stream.Analytics)
	if err != nil {
		t.Fatal(err)
	}
	m, err := an.GetLastMsgForSubject(t.Context(), analyticsapi.Subject(tenant, analyticsapi.KindErasure))
	if err != nil {
		t.Fatal(err)
	}
	var args analyticsapi.EraseArgs
	if err := json.Unmarshal(m.Data, &args); err != nil {
		t.Fatal(err)
	}
	if want := (analyticsapi.EraseArgs{Tenant: tenant, Pseudonym: analyticsapi.Pseudonym(k.Pseudonym, visitor)}); args != want {
		t.Errorf("stored erasure request = %+v, want %+v", args, want)
	}
}

// BenchmarkRelay measures the relay from chat events in CHAT to their facts
// in ANALYTICS, whole service and embedded server included: "backlog" has
// b.N events stored before the service starts, "live" stores them one at a
// time while it runs, as fast as they are stored, and "paced" one every
// millisecond, as the product's benchmark does: there the events/s are the
// pace, and what counts is the allocations per event.
func BenchmarkRelay(b *testing.B) {
	for _, mode := range []string{"backlog", "live", "paced"} {
		b.Run(mode, func(b *testing.B) { benchmarkRelay(b, mode) })
	}
}

func benchmarkRelay(b *testing.B, mode string) {
	s := natstest.Start(b, "")
	nc, js := natstest.Connect(b, s)
	kek, err := seal.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- privacy.Run(ctx, privacy.Deps{NC: nc, Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), KEK: kek, AuditKey: auditKey})
		}()
		return func() {
			cancel()
			if err := <-done; err != nil {
				b.Errorf("Run() = %v, want nil", err)
			}
		}
	}
	stop := run()
	defer func() { stop() }()
	if err := stream.Ensure(b.Context(), js, stream.Options{}, stream.Chat); err != nil {
		b.Fatal(err)
	}
	var visitors []string
	var keys []personkey.Keys
	for range 20 {
		var id string
		natstest.Eventually(b, 10*time.Second, "the service registering a visitor", func() error {
			var err error
			id, err = register(b.Context(), nc, privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: event.Consent{Analytics: true, NoticeVersion: "n1"}})
			return err
		})
		k, err := getKeys(b.Context(), nc, id, false)
		if err != nil {
			b.Fatal(err)
		}
		visitors, keys = append(visitors, id), append(keys, k)
	}
	// Conversations of ten events: an opening (two facts) and nine
	// messages by the visitor (one fact each).
	msgs := make([]*nats.Msg, b.N)
	want := 0
	at := time.Now()
	for i := range msgs {
		v, conv := i/10%len(visitors), fmt.Sprintf("conv-%d", i/10)
		typ, payload, facts := event.MessagePosted, any(event.Posted{Author: event.Author{Role: "visitor", ID: visitors[v]}, Text: "hello"}), 1
		if i%10 == 0 {
			typ, payload, facts = event.ConversationOpened, event.Opened{Visitor: visitors[v], Text: "hello"}, 2
		}
		e, err := event.New(keys[v].Data, typ, tenant, visitors[v], conv, at.Add(time.Duration(i)*time.Millisecond), payload)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i], want = e.Msg(stream.ChatSubject(tenant, conv)), want+facts
	}
	if mode == "backlog" {
		stop()
		for _, m := range msgs {
			if _, err := js.PublishMsgAsync(m); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("events not stored after a minute")
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	switch mode {
	case "backlog":
		stop = run()
	case "live":
		for _, m := range msgs {
			if _, err := js.PublishMsg(b.Context(), m); err != nil {
				b.Fatal(err)
			}
		}
	case "paced":
		tick := time.NewTicker(time.Millisecond)
		for _, m := range msgs {
			<-tick.C
			if _, err := js.PublishMsg(b.Context(), m); err != nil {
				b.Fatal(err)
			}
		}
		tick.Stop()
	}
	// An event is acked once its facts are stored; ANALYTICS's messages
	// cannot tell, since one holds a batch's facts.
	settled(b, js, time.Minute)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	if got := len(readFacts(b, js)); got != want {
		b.Errorf("%d facts on ANALYTICS, want %d", got, want)
	}
}

// cpuTime returns the CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
