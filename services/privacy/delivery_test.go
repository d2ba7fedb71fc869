package privacy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/audit"
	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/pkg/webhook"

	"github.com/parley-chat/parley/services/privacy"
	"github.com/parley-chat/parley/services/privacy/internal/delivery"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
	"github.com/parley-chat/parley/services/privacy/internal/relay"
)

// fastRetries makes the waits between delivery attempts short: three
// attempts in all.
func fastRetries(d *privacy.Deps) {
	d.DeliveryBackoff = []time.Duration{20 * time.Millisecond, 20 * time.Millisecond}
	d.DeliveryTimeout = 2 * time.Second
}

// localReceivers lets webhooks go to the tests' receivers, on this host.
func localReceivers(d *privacy.Deps) { d.PrivateWebhooks = true }

// received is one delivery a receiver verified.
type received struct {
	header, delivery string
	raw              []byte
	body             delivery.Body
}

// receiver is an integration's endpoint on loopback: it verifies every
// delivery with the shipped verifier, refusing what does not verify, and
// answers fail(body) when it is set and says so.
type receiver struct {
	t      *testing.T
	secret []byte
	url    string

	mu       sync.Mutex
	got      []received
	refused  int
	fail     func(delivery.Body) bool
	verifier *webhook.Verifier
	// hold, when set, is called before a verified delivery is taken, and
	// may keep the request waiting.
	hold func(delivery.Body)
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, secret: []byte("secret-" + t.Name())}
	// No replay cache: a retry within the second of the attempt before it
	// carries the same signature, which these tests' short backoff makes
	// common (the service's waits are a second at least).
	r.verifier = &webhook.Verifier{Secrets: [][]byte{r.secret}}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/parley"
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	raw, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	if err := r.verifier.Verify(req.Header.Get(webhook.SignatureHeader), raw); err != nil {
		r.mu.Lock()
		r.refused++
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var b delivery.Body
	if err := json.Unmarshal(raw, &b); err != nil {
		r.t.Errorf("delivery body %s: %v", raw, err)
	}
	if req.Header.Get(delivery.DeliveryHeader) != b.ID {
		r.t.Errorf("Parley-Delivery = %q, body id %q", req.Header.Get(delivery.DeliveryHeader), b.ID)
	}
	if r.hold != nil {
		r.hold(b)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, received{header: req.Header.Get(webhook.SignatureHeader), delivery: b.ID, raw: raw, body: b})
	if r.fail != nil && r.fail(b) {
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// bodies returns the bodies received so far.
func (r *receiver) bodies() []delivery.Body {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivery.Body
	for _, g := range r.got {
		out = append(out, g.body)
	}
	return out
}

// waitFor waits until a body satisfies ok and returns the bodies then.
func (r *receiver) waitFor(what string, ok func(delivery.Body) bool) []delivery.Body {
	r.t.Helper()
	var got []delivery.Body
	natstest.Until(r.t, 20*time.Second, what, func() bool {
		got = r.bodies()
		return slices.ContainsFunc(got, ok)
	})
	return got
}

// deliverySetup is the privacy service with CHAT, and what registers
// integrations as the admin API stores them.
type deliverySetup struct {
	chatWriter
	svc  *instance
	ring *keyring.Ring
	kv   jetstream.KeyValue
}

// startDelivery starts the privacy service with fastRetries and
// localReceivers, then opts.
func startDelivery(t *testing.T, opts ...func(*privacy.Deps)) deliverySetup {
	t.Helper()
	s := natstest.Start(t, "")
	kek := newKEK(t)
	svc := start(t, s, kek, append([]func(*privacy.Deps){fastRetries, localReceivers}, opts...)...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", svc.logs.Bytes())
		}
	})
	nc, js := natstest.Connect(t, s)
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Chat); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), privacyapi.IntegrationsBucket)
	if err != nil {
		t.Fatal(err)
	}
	return deliverySetup{chatWriter: chatWriter{t: t, nc: nc, js: js}, svc: svc, ring: keyring.New(kek), kv: kv}
}

// register stores an integration as the admin API does: its secret sealed
// under the KEK, bound to tenant and id.
func (d deliverySetup) register(id, kind string, secret []byte, where func(*privacyapi.Integration)) {
	d.t.Helper()
	sealed, err := d.ring.SealSecret(tenant, id, secret)
	if err != nil {
		d.t.Fatal(err)
	}
	now := time.Now().UTC()
	rec := privacyapi.Integration{Tenant: tenant, ID: id, Kind: kind, Name: id, SealedSecret: sealed, KEKID: d.ring.KEKID(), CreatedAt: now, UpdatedAt: now}
	where(&rec)
	data, err := json.Marshal(rec)
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.kv.Put(d.t.Context(), privacyapi.IntegrationKey(tenant, id), data); err != nil {
		d.t.Fatal(err)
	}
	// Its consumer exists once an instance has seen it.
	natstest.Until(d.t, 10*time.Second, "consumer of "+id, func() bool {
		_, err := d.js.Consumer(d.t.Context(), stream.Chat, delivery.ConsumerName(tenant, id))
		return err == nil
	})
}

func webhookAt(url string) func(*privacyapi.Integration) {
	return func(r *privacyapi.Integration) { r.WebhookURL = url }
}

func (d deliverySetup) visitor(ai bool) string {
	d.t.Helper()
	id, err := register(d.t.Context(), d.nc, privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: event.Consent{AI: ai, NoticeVersion: "n1"}})
	if err != nil {
		d.t.Fatal(err)
	}
	return id
}

func (d deliverySetup) setAI(visitor string, ai bool) {
	d.t.Helper()
	if _, err := call[privacyapi.ConsentResult](d.t, d.nc, privacyapi.SetConsentSubject, visitorOf(visitor),
		privacyapi.SetConsentArgs{Tenant: tenant, Consent: event.Consent{AI: ai, NoticeVersion: "n1"}}); err != nil {
		d.t.Fatal(err)
	}
}

// The identifiers a visitor writes, which must never leave in clear.
var seeded = []string{"jane.doe@example.com", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "+44 20 7946 0958", "192.168.10.77"}

const seededText = "mail jane.doe@example.com, card 4111 1111 1111 1111, iban DE89 3704 0044 0532 0130 00, call +44 20 7946 0958 from 192.168.10.77"

func TestDeliveryOnlyConsentedRedactedSigned(t *testing.T) {
	d := startDelivery(t)
	crm := newReceiver(t)
	d.register("crm", privacyapi.KindIntegration, crm.secret, webhookAt(crm.url))

	consented, refused := d.visitor(true), d.visitor(false)
	visitor := event.Author{Role: "visitor", ID: consented}
	d.append(refused, "conv-r", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: refused, Text: "refused " + seededText})
	d.append(consented, "conv-c", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: consented, Text: "hello " + seededText})
	d.append(consented, "conv-c", event.MessagePosted, time.Now(), event.Posted{Stamped: stamped(event.Stamp{}), Author: visitor, Text: "first"})
	crm.waitFor("the first message", func(b delivery.Body) bool { return b.Text != nil && *b.Text == "first" })

	// Withdrawn: the next event is not delivered; given again: the one
	// after is. Deliveries keep the stream's order, so once the last is
	// in, the one between would be too.
	d.setAI(consented, false)
	d.append(consented, "conv-c", event.MessagePosted, time.Now(), event.Posted{Stamped: stamped(event.Stamp{}), Author: visitor, Text: "while withdrawn"})
	d.setAI(consented, true)
	d.append(consented, "conv-c", event.MessagePosted, time.Now(), event.Posted{Stamped: stamped(event.Stamp{}), Author: visitor, Text: "given again"})
	got := crm.waitFor("the message after consent was given again", func(b delivery.Body) bool { return b.Text != nil && *b.Text == "given again" })

	var texts []string
	for _, b := range got {
		if b.VisitorID != consented || b.Tenant != tenant || b.ConversationID != "conv-c" || b.Seq == 0 {
			t.Errorf("delivered %+v, want only conv-c of the consenting visitor", b)
		}
		texts = append(texts, *b.Text)
	}
	want := []string{"hello mail [email], card [card], iban [iban], call [phone] from [ip]", "first", "given again"}
	if !slices.Equal(texts, want) {
		t.Errorf("texts delivered = %q, want %q", texts, want)
	}
	crm.mu.Lock()
	defer crm.mu.Unlock()
	for _, g := range crm.got {
		for _, id := range seeded {
			if bytes.Contains(g.raw, []byte(id)) || bytes.Contains(g.raw, []byte(strings.ReplaceAll(id, " ", ""))) {
				t.Errorf("delivery %s holds %q in clear", g.raw, id)
			}
		}
	}
	// What CHAT stores is the original: staff and the visitor read it.
	k, err := getKeys(t.Context(), d.nc, consented, false)
	if err != nil {
		t.Fatal(err)
	}
	chat, err := d.js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	first, err := chat.GetMsg(t.Context(), got[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.Parse(first.Subject, first.Header, first.Data)
	if err != nil {
		t.Fatal(err)
	}
	var o event.Opened
	if err := e.Open(k.Data, &o); err != nil || o.Text != "hello "+seededText {
		t.Errorf("stored opening = %q, %v; want the original text", o.Text, err)
	}

	// A forged, altered or replayed delivery is refused by the verifier.
	g := crm.got[0]
	fresh := &webhook.Verifier{Secrets: [][]byte{crm.secret}, Seen: webhook.NewReplayCache(10)}
	if err := fresh.Verify(g.header, g.raw); err != nil {
		t.Fatalf("Verify(a delivery as sent) = %v", err)
	}
	if err := fresh.Verify(g.header, g.raw); !errors.Is(err, webhook.ErrReplayed) {
		t.Errorf("Verify(the same delivery again) = %v, want ErrReplayed", err)
	}
	altered := bytes.Replace(g.raw, []byte("[email]"), []byte("jane@example.com"), 1)
	if err := fresh.Verify(g.header, altered); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("Verify(altered body) = %v, want ErrBadSignature", err)
	}
	forged, err := webhook.Sign(time.Now(), g.raw, []byte("guessed"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Verify(forged, g.raw); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("Verify(forged signature) = %v, want ErrBadSignature", err)
	}
	old, err := webhook.Sign(time.Now().Add(-time.Hour), g.raw, crm.secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Verify(old, g.raw); !errors.Is(err, webhook.ErrStale) {
		t.Errorf("Verify(an hour-old signature) = %v, want ErrStale", err)
	}
	if crm.refused != 0 {
		t.Errorf("the receiver refused %d deliveries from Parley", crm.refused)
	}
}

func TestBotReceivesItsConversationsOnly(t *testing.T) {
	d := startDelivery(t)
	faq := newReceiver(t)
	d.register("faq", privacyapi.KindBot, faq.secret, webhookAt(faq.url))
	v := d.visitor(true)
	bot := event.BotAssignee("faq")
	author := event.Author{Role: "visitor", ID: v}
	d.append(v, "conv-agent", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{Assignee: "agent-1"}), Visitor: v, Text: "for the agent"})
	d.append(v, "conv-bot", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: v, Text: "before the bot"})
	d.append(v, "conv-bot", event.ConversationAssigned, time.Now(), event.Assigned{Stamped: stamped(event.Stamp{Assignee: bot}), Agent: bot, By: event.Author{Role: "admin", ID: "admin-1"}})
	d.append(v, "conv-bot", event.MessagePosted, time.Now(), event.Posted{Stamped: stamped(event.Stamp{Assignee: bot}), Author: author, Text: "to the bot"})
	d.append(v, "conv-agent", event.MessagePosted, time.Now(), event.Posted{Stamped: stamped(event.Stamp{Assignee: "agent-1"}), Author: author, Text: "to the agent"})
	// Handed off to the people: the bot learns of it, then hears no more.
	d.append(v, "conv-bot", event.ConversationHandedOff, time.Now(), event.HandedOff{Stamped: stamped(event.Stamp{PreviousAssignee: bot}), By: author})
	d.append(v, "conv-bot", event.ConversationAssigned, time.Now(), event.Assigned{Stamped: stamped(event.Stamp{Assignee: "agent-1"}), Agent: "agent-1", By: event.Author{Role: "agent", ID: "agent-1"}})
	d.append(v, "conv-bot", event.MessagePosted, time.Now(), event.Posted{Stamped: stamped(event.Stamp{Assignee: "agent-1"}), Author: author, Text: "after the hand-off"})
	d.append(v, "conv-bot", event.ConversationClosed, time.Now(), event.Closed{Stamped: stamped(event.Stamp{Assignee: bot}), By: event.Author{Role: "bot", ID: "faq"}})
	got := faq.waitFor("the closing", func(b delivery.Body) bool { return b.Type == string(event.ConversationClosed) })
	var seen []string
	for _, b := range got {
		s := b.Type
		if b.Text != nil {
			s += " " + *b.Text
		}
		if b.Assignee != nil {
			s += " -> " + *b.Assignee
		}
		if b.Type == string(event.ConversationHandedOff) && (b.Author == nil || *b.Author != author) {
			t.Errorf("hand-off delivered by %v, want %v", b.Author, author)
		}
		seen = append(seen, s)
	}
	want := []string{
		string(event.ConversationAssigned) + " -> " + bot,
		string(event.MessagePosted) + " to the bot",
		string(event.ConversationHandedOff) + " -> ",
		string(event.ConversationClosed),
	}
	if !slices.Equal(seen, want) {
		t.Errorf("bot received %q, want %q", seen, want)
	}
}

// TestBotSkipsOthersEventsWithoutCatchUp: the events of conversations not
// assigned to a bot, which its consumer skips, cost no catch-up with
// PRIVACY (each a request for the stream's info): whose they are is
// decided before. The relay, the only other reader of CHAT, catches up at
// its first batch and then takes events older than that without one, so
// the requests counted are the deliveries'.
func TestBotSkipsOthersEventsWithoutCatchUp(t *testing.T) {
	d := startDelivery(t)
	faq := newReceiver(t)
	d.register("faq", privacyapi.KindBot, faq.secret, webhookAt(faq.url))
	v := d.visitor(true)
	consumers := []string{relay.Durable, delivery.ConsumerName(tenant, "faq")}
	d.append(v, "conv-agent", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: v, Text: "for the agent"})
	for _, c := range consumers {
		acked(t, d.js, c, 20*time.Second)
	}

	var catchUps atomic.Int64
	sub, err := d.nc.Subscribe("$JS.API.STREAM.INFO."+stream.Privacy, func(*nats.Msg) { catchUps.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := d.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const skipped = 20
	at := time.Now().Add(-time.Hour)
	for range skipped {
		d.append(v, "conv-agent", event.MessagePosted, at, event.Posted{Stamped: stamped(event.Stamp{Assignee: "agent-1"}),
			Author: event.Author{Role: "visitor", ID: v}, Text: "to the agent"})
	}
	for _, c := range consumers {
		acked(t, d.js, c, 20*time.Second)
	}
	if err := d.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := catchUps.Load(); n != 0 {
		t.Errorf("%d events not for the bot caused %d catch-ups with %s, want 0", skipped, n, stream.Privacy)
	}
	if got := faq.bodies(); len(got) != 0 {
		t.Errorf("the bot received %d events of conversations not assigned to it, want none", len(got))
	}
}

// TestWithdrawalNamesItsMessage: a withdrawal reaches an integration with
// the id of the message withdrawn, so that it deletes its copy.
func TestWithdrawalNamesItsMessage(t *testing.T) {
	d := startDelivery(t)
	crm := newReceiver(t)
	d.register("crm", privacyapi.KindIntegration, crm.secret, webhookAt(crm.url))
	v := d.visitor(true)
	d.append(v, "conv-w", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: v, Text: "hello"})
	d.append(v, "conv-w", event.MessageWithdrawn, time.Now(), event.Withdrawn{Stamped: stamped(event.Stamp{}), Message: "m-1", PostedAt: time.Now()})
	got := crm.waitFor("the withdrawal", func(b delivery.Body) bool { return b.Type == string(event.MessageWithdrawn) })
	b := got[len(got)-1]
	if b.MessageID != "m-1" || b.Author == nil || *b.Author != (event.Author{Role: "visitor", ID: v}) || b.Text != nil {
		t.Errorf("withdrawal delivered as %+v, want message m-1 withdrawn by the visitor, no text", b)
	}
}

func TestDeliveryOverNATSSubject(t *testing.T) {
	d := startDelivery(t)
	secret := []byte("nats secret")
	subject := "parley.bots." + tenant + ".support"
	verifier := &webhook.Verifier{Secrets: [][]byte{secret}, Seen: webhook.NewReplayCache(100)}
	got := make(chan delivery.Body, 10)
	sub, err := d.nc.Subscribe(subject, func(m *nats.Msg) {
		if err := verifier.Verify(m.Header.Get(webhook.SignatureHeader), m.Data); err != nil {
			t.Errorf("verify: %v", err)
			return
		}
		var b delivery.Body
		if err := json.Unmarshal(m.Data, &b); err != nil {
			t.Error(err)
		}
		got <- b
		_ = m.Respond(nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	d.register("support", privacyapi.KindIntegration, secret, func(r *privacyapi.Integration) { r.NATSSubject = subject })
	v := d.visitor(true)
	d.append(v, "conv-n", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: v, Text: "reach me at jane.doe@example.com"})
	select {
	case b := <-got:
		if b.Text == nil || *b.Text != "reach me at [email]" {
			t.Errorf("delivered %+v, want the text redacted", b)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery on the NATS subject")
	}
}

// rawLog returns every message of the delivery log, as stored.
func rawLog(t *testing.T, js jetstream.JetStream) [][]byte {
	t.Helper()
	cons, err := js.OrderedConsumer(t.Context(), stream.Deliveries, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for range streamState(t, js, stream.Deliveries).Msgs {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(m.Headers())
		out = append(out, append([]byte(m.Subject()+" "), append(b, m.Data()...)...))
	}
	return out
}

func deliveries(t *testing.T, nc *nats.Conn, kind, id string) []privacyapi.Delivery {
	t.Helper()
	res, err := call[privacyapi.DeliveriesResult](t, nc, privacyapi.DeliveriesSubject, admin, privacyapi.DeliveriesArgs{Tenant: tenant, Kind: kind, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return res.Deliveries
}

func TestFailingEndpointIsRetriedThenAbandonedAndTheLogHoldsNoContent(t *testing.T) {
	d := startDelivery(t)
	down, flaky := newReceiver(t), newReceiver(t)
	down.fail = func(delivery.Body) bool { return true }
	tries := 0
	flaky.fail = func(delivery.Body) bool { tries++; return tries < 3 }
	d.register("down", privacyapi.KindIntegration, down.secret, webhookAt(down.url))
	d.register("flaky", privacyapi.KindIntegration, flaky.secret, webhookAt(flaky.url))
	v := d.visitor(true)
	d.append(v, "conv-f", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: v, Text: "opening " + seededText})
	d.append(v, "conv-f", event.MessagePosted, time.Now(), event.Posted{Stamped: stamped(event.Stamp{}), Author: event.Author{Role: "visitor", ID: v}, Text: "a second message"})

	// Abandoned after three attempts, the consumer moves on to the next.
	natstest.Until(t, 20*time.Second, "six attempts at the failing endpoint", func() bool { return len(down.bodies()) >= 6 })
	natstest.Until(t, 20*time.Second, "both events delivered to the flaky endpoint", func() bool { return len(deliveries(t, d.nc, privacyapi.KindIntegration, "flaky")) >= 4 })

	type row struct {
		Attempt int
		Outcome string
		Status  int
	}
	rows := func(id string) []row {
		var out []row
		for _, l := range deliveries(t, d.nc, privacyapi.KindIntegration, id) {
			if l.EventID == "" || l.Type == "" || l.At.IsZero() {
				t.Errorf("log entry %+v lacks its id, type or time", l)
			}
			out = append(out, row{l.Attempt, l.Outcome, l.Status})
		}
		return out
	}
	natstest.Until(t, 20*time.Second, "six attempts logged", func() bool { return len(rows("down")) == 6 })
	wantDown := []row{{1, "failed", 500}, {2, "failed", 500}, {3, "abandoned", 500}, {1, "failed", 500}, {2, "failed", 500}, {3, "abandoned", 500}}
	if got := rows("down"); !slices.Equal(got, wantDown) {
		t.Errorf("log of the failing endpoint = %v, want %v", got, wantDown)
	}
	wantFlaky := []row{{1, "failed", 500}, {2, "failed", 500}, {3, "delivered", 204}, {1, "delivered", 204}}
	if got := rows("flaky"); !slices.Equal(got, wantFlaky) {
		t.Errorf("log of the flaky endpoint = %v, want %v", got, wantFlaky)
	}
	// The log's raw bytes hold no text, visitor or conversation.
	for _, raw := range rawLog(t, d.js) {
		for _, s := range append([]string{"opening", "a second message", v, "conv-f"}, seeded...) {
			if bytes.Contains(raw, []byte(s)) {
				t.Errorf("delivery log entry %s holds %q", raw, s)
			}
		}
	}
	// Only an admin reads it, and only of an integration of that kind.
	if _, err := call[privacyapi.DeliveriesResult](t, d.nc, privacyapi.DeliveriesSubject, agent, privacyapi.DeliveriesArgs{Tenant: tenant, Kind: privacyapi.KindIntegration, ID: "down"}); err == nil {
		t.Error("an agent read the delivery log")
	}
	if _, err := call[privacyapi.DeliveriesResult](t, d.nc, privacyapi.DeliveriesSubject, admin, privacyapi.DeliveriesArgs{Tenant: tenant, Kind: privacyapi.KindBot, ID: "down"}); err == nil {
		t.Error("the log of an integration was read as a bot's")
	}
}

// TestWebhooksGoToPublicAddressesOnly attacks what a tenant's admin could
// make the privacy service reach: without PrivateWebhooks, a webhook at
// this host's address (stored straight into the bucket, past the API's
// check of the URL) is never connected to — each attempt fails before a
// connection, with no status to tell an open port from a closed one — and
// the receiver there gets nothing.
func TestWebhooksGoToPublicAddressesOnly(t *testing.T) {
	d := startDelivery(t, func(d *privacy.Deps) { d.PrivateWebhooks = false })
	local := newReceiver(t)
	d.register("crm", privacyapi.KindIntegration, local.secret, webhookAt(local.url))
	v := d.visitor(true)
	d.append(v, "conv-p", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: v, Text: "for a receiver on a private address"})

	natstest.Until(t, 20*time.Second, "three attempts logged", func() bool { return len(deliveries(t, d.nc, privacyapi.KindIntegration, "crm")) == 3 })
	for _, l := range deliveries(t, d.nc, privacyapi.KindIntegration, "crm") {
		if l.Status != 0 || l.Outcome == "delivered" {
			t.Errorf("attempt %d at a private address: %s, status %d; want failed before any answer", l.Attempt, l.Outcome, l.Status)
		}
	}
	got := local.bodies()
	local.mu.Lock()
	defer local.mu.Unlock()
	if len(got) != 0 || local.refused != 0 {
		t.Errorf("the receiver on this host was sent %d deliveries (%d refused), want none", len(got), local.refused)
	}
}

func TestErasureNotifiesIntegrationsAndReportsAcknowledgements(t *testing.T) {
	d := startDelivery(t)
	crm, late := newReceiver(t), newReceiver(t)
	notices := 0
	// late refuses the erasure's own attempt, and takes the retry.
	late.fail = func(b delivery.Body) bool {
		if b.Type != delivery.ErasedType {
			return false
		}
		notices++
		return notices == 1
	}
	unused := newReceiver(t)
	d.register("crm", privacyapi.KindIntegration, crm.secret, webhookAt(crm.url))
	d.register("late", privacyapi.KindIntegration, late.secret, webhookAt(late.url))
	d.register("faq", privacyapi.KindBot, unused.secret, webhookAt(unused.url))
	v, other := d.visitor(true), d.visitor(true)
	d.append(v, "conv-e", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: v, Text: "erase me"})
	d.append(other, "conv-o", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: other, Text: "keep me"})
	for _, r := range []*receiver{crm, late} {
		r.waitFor("the opening", func(b delivery.Body) bool { return b.VisitorID == v })
		r.waitFor("the other opening", func(b delivery.Body) bool { return b.VisitorID == other })
	}
	if n := streamState(t, d.js, stream.Recipients).Msgs; n != 4 {
		t.Fatalf("RECIPIENTS holds %d records, want 4 (two visitors, two integrations)", n)
	}

	res, err := erase(t, d.nc, admin, v)
	if err != nil {
		t.Fatal(err)
	}
	got := res.Report.Integrations
	slices.SortFunc(got, func(a, b privacyapi.ErasureIntegration) int { return strings.Compare(a.ID, b.ID) })
	want := []privacyapi.ErasureIntegration{{ID: "crm", Kind: privacyapi.KindIntegration, Acknowledged: true}, {ID: "late", Kind: privacyapi.KindIntegration, Acknowledged: false}}
	if !slices.Equal(got, want) {
		t.Errorf("report's integrations = %+v, want %+v", got, want)
	}
	erased := func(b delivery.Body) bool {
		return b.Type == delivery.ErasedType && b.VisitorID == v && b.ErasureID == res.ErasureID && b.Tenant == tenant
	}
	crm.waitFor("the erasure notice", erased)
	// The one not acknowledged is sent again after the erasure answered,
	// from NOTICES, and then removed.
	late.waitFor("the erasure notice", erased)
	natstest.Until(t, 20*time.Second, "the notice sent again and acknowledged", func() bool {
		late.mu.Lock()
		n := notices
		late.mu.Unlock()
		return n >= 2 && streamState(t, d.js, stream.Notices).Msgs == 0
	})
	if n := len(unused.bodies()); n != 0 {
		t.Errorf("a bot that never received the visitor got %d deliveries", n)
	}
	// Who received the erased visitor is forgotten; the other is kept.
	if n := streamState(t, d.js, stream.Recipients).Msgs; n != 2 {
		t.Errorf("RECIPIENTS holds %d records after the erasure, want 2 (the other visitor's)", n)
	}
	var logged []string
	for _, l := range deliveries(t, d.nc, privacyapi.KindIntegration, "late") {
		if l.Type == delivery.ErasedType {
			logged = append(logged, l.Outcome)
		}
	}
	if !slices.Equal(logged, []string{"failed", "delivered"}) {
		t.Errorf("erasure notices logged for late = %q, want failed then delivered", logged)
	}
}

// holdingOpenings returns a receiver that holds each opening delivered to
// it until release is closed, and held, closed once one is held.
func holdingOpenings(t *testing.T) (crm *receiver, held, release chan struct{}) {
	t.Helper()
	crm = newReceiver(t)
	held, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	crm.hold = func(b delivery.Body) {
		if b.Type == string(event.ConversationOpened) {
			once.Do(func() { close(held) })
			<-release
		}
	}
	return crm, held, release
}

// TestDeliveryDuringErasureIsFollowedByANotice: an event whose delivery
// is under way while its visitor is erased (the receiver holds the request
// until the erasure answered) is followed by one more verified notice of
// that erasure, and no record of who received the visitor is left.
func TestDeliveryDuringErasureIsFollowedByANotice(t *testing.T) {
	d := startDelivery(t, func(d *privacy.Deps) { d.DeliveryTimeout = time.Minute })
	crm, held, release := holdingOpenings(t)
	d.register("crm", privacyapi.KindIntegration, crm.secret, webhookAt(crm.url))
	v := d.visitor(true)
	d.append(v, "conv-r", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: v, Text: "on its way"})
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the opening did not reach the receiver")
	}
	res, err := erase(t, d.nc, admin, v)
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	erased := func(b delivery.Body) bool {
		return b.Type == delivery.ErasedType && b.VisitorID == v && b.ErasureID == res.ErasureID
	}
	// The last word the receiver has of the visitor is a notice, taken
	// after the event that arrived once the erasure answered.
	natstest.Until(t, 20*time.Second, "a notice after the held event", func() bool {
		got := crm.bodies()
		opening := slices.IndexFunc(got, func(b delivery.Body) bool { return b.Type == string(event.ConversationOpened) })
		return opening >= 0 && slices.ContainsFunc(got[opening+1:], erased)
	})
	natstest.Until(t, 20*time.Second, "no record of the visitor's recipients, no notice pending", func() bool {
		return streamState(t, d.js, stream.Recipients).Msgs == 0 && streamState(t, d.js, stream.Notices).Msgs == 0
	})
}

// erasureDuringDelivery delivers the opening of conversation conv of a
// new visitor to an integration, crm, which holds it while the visitor's
// erasure request is stored, as Erase stores it, dated requested; then
// lets it answer. Nothing of the erasure runs after its request.
func erasureDuringDelivery(t *testing.T, conv string, requested time.Time) (d deliverySetup, crm *receiver, v, erasureID string) {
	t.Helper()
	d = startDelivery(t, func(d *privacy.Deps) { d.DeliveryTimeout = time.Minute })
	crm, held, release := holdingOpenings(t)
	d.register("crm", privacyapi.KindIntegration, crm.secret, webhookAt(crm.url))
	v = d.visitor(true)
	d.append(v, conv, event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: v, Text: "on its way"})
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the opening did not reach the receiver")
	}
	erasureID = event.NewID()
	req, err := event.NewClear(privacyapi.ErasureRequestedType, tenant, v, v, requested,
		privacyapi.ErasureRequested{ErasureID: erasureID, By: audit.Actor{Role: visitorOf(v).Role, ID: v}})
	if err != nil {
		t.Fatal(err)
	}
	req.ID = erasureID
	if _, err := d.js.PublishMsg(t.Context(), req.Msg(stream.PrivacySubject(tenant, v))); err != nil {
		t.Fatal(err)
	}
	close(release)
	return d, crm, v, erasureID
}

// TestDeliveryDuringErasureLeavesTheIntegrationInItsReport: an event
// delivered between an erasure's request and its reading of who received
// the visitor does not take the integration out of the erasure's report:
// its record is left for the erasure to read, and the notice that follows
// the event is sent once the erasure completed. The erasure stops after
// its request here (its instance gone), and an admin's erasure finishes it.
func TestDeliveryDuringErasureLeavesTheIntegrationInItsReport(t *testing.T) {
	// The request as Erase stores it, and nothing after it.
	d, crm, v, erasureID := erasureDuringDelivery(t, "conv-p", time.Now())
	// The delivery is acknowledged and the deliverer learns of the
	// erasure: it either forgets the record or looks at the event again.
	natstest.Until(t, 20*time.Second, "the erasure followed after the delivery", func() bool {
		info, err := d.js.Consumer(t.Context(), stream.Chat, delivery.ConsumerName(tenant, "crm"))
		if err != nil {
			t.Fatal(err)
		}
		return streamState(t, d.js, stream.Recipients).Msgs == 0 || info.CachedInfo().NumRedelivered > 0
	})
	res, err := erase(t, d.nc, admin, v)
	if err != nil {
		t.Fatal(err)
	}
	if res.ErasureID != erasureID || res.Report == nil {
		t.Fatalf("erase = %+v, want erasure %s completed", res, erasureID)
	}
	if got := res.Report.Integrations; len(got) != 1 || got[0].ID != "crm" || got[0].Kind != privacyapi.KindIntegration {
		t.Errorf("report's integrations = %+v, want crm", got)
	}
	erased := func(b delivery.Body) bool {
		return b.Type == delivery.ErasedType && b.VisitorID == v && b.ErasureID == erasureID
	}
	natstest.Until(t, 20*time.Second, "the erasure's notice and the one after the event", func() bool {
		ids := make(map[string]bool)
		for _, b := range crm.bodies() {
			if erased(b) {
				ids[b.ID] = true
			}
		}
		return len(ids) == 2
	})
	natstest.Until(t, 20*time.Second, "no record of the visitor's recipients, no notice pending", func() bool {
		return streamState(t, d.js, stream.Recipients).Msgs == 0 && streamState(t, d.js, stream.Notices).Msgs == 0
	})
}

// TestWithdrawalDropsARetriedBacklog: an event that failed while the
// visitor held ai consent is not tried again once they withdrew it; the
// log says so, and the next event follows.
func TestWithdrawalDropsARetriedBacklog(t *testing.T) {
	d := startDelivery(t, func(d *privacy.Deps) { d.DeliveryBackoff = []time.Duration{5 * time.Second, 5 * time.Second} })
	crm := newReceiver(t)
	v, other := d.visitor(true), d.visitor(true)
	crm.fail = func(b delivery.Body) bool { return b.VisitorID == v }
	d.register("crm", privacyapi.KindIntegration, crm.secret, webhookAt(crm.url))
	d.append(v, "conv-w", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: v, Text: "written with consent"})
	crm.waitFor("the first attempt", func(b delivery.Body) bool { return b.VisitorID == v })
	d.setAI(v, false)
	crm.mu.Lock()
	crm.fail = nil
	crm.mu.Unlock()
	d.append(other, "conv-n", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: other, Text: "next"})
	got := crm.waitFor("the next event", func(b delivery.Body) bool { return b.VisitorID == other })
	if n := len(slices.DeleteFunc(got, func(b delivery.Body) bool { return b.VisitorID != v })); n != 1 {
		t.Errorf("the withdrawn visitor's event was attempted %d times, want 1 (before the withdrawal)", n)
	}
	type row struct {
		Attempt int
		Outcome string
	}
	var rows []row
	natstest.Until(t, 20*time.Second, "three entries logged", func() bool {
		rows = rows[:0]
		for _, l := range deliveries(t, d.nc, privacyapi.KindIntegration, "crm") {
			rows = append(rows, row{l.Attempt, l.Outcome})
		}
		return len(rows) >= 3
	})
	if want := []row{{1, "failed"}, {2, "withdrawn"}, {1, "delivered"}}; !slices.Equal(rows, want) {
		t.Errorf("delivery log = %v, want %v", rows, want)
	}
}

// TestParleySideFailureIsNoAttempt: a signing secret that does not open
// (a failure on Parley's side) is retried without an attempt at the
// integration; once it opens, the delivery is attempt 1, and no retry of
// the integration's was used up.
func TestParleySideFailureIsNoAttempt(t *testing.T) {
	d := startDelivery(t)
	crm := newReceiver(t)
	d.register("crm", privacyapi.KindIntegration, crm.secret, func(r *privacyapi.Integration) {
		r.WebhookURL, r.SealedSecret = crm.url, []byte("not sealed")
	})
	v := d.visitor(true)
	d.append(v, "conv-s", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: v, Text: "wait for the secret"})
	natstest.Until(t, 20*time.Second, "the secret failing three times", func() bool {
		return bytes.Count(d.svc.logs.Bytes(), []byte("open the signing secret")) >= 3
	})
	// The same registration, its secret sealed as it should be.
	entry, err := d.kv.Get(t.Context(), privacyapi.IntegrationKey(tenant, "crm"))
	if err != nil {
		t.Fatal(err)
	}
	var rec privacyapi.Integration
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.SealedSecret, err = d.ring.SealSecret(tenant, "crm", crm.secret); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.kv.Put(t.Context(), privacyapi.IntegrationKey(tenant, "crm"), data); err != nil {
		t.Fatal(err)
	}
	crm.waitFor("the opening", func(b delivery.Body) bool { return b.VisitorID == v })
	var got []privacyapi.Delivery
	natstest.Until(t, 20*time.Second, "the delivery logged", func() bool {
		got = deliveries(t, d.nc, privacyapi.KindIntegration, "crm")
		return len(got) > 0
	})
	if len(got) != 1 || got[0].Attempt != 1 || got[0].Outcome != privacyapi.OutcomeDelivered {
		t.Errorf("delivery log = %+v, want one entry: attempt 1, delivered", got)
	}
}

func TestDeletedIntegrationLosesItsConsumer(t *testing.T) {
	d := startDelivery(t)
	r := newReceiver(t)
	d.register("gone", privacyapi.KindIntegration, r.secret, webhookAt(r.url))
	if err := d.kv.Delete(t.Context(), privacyapi.IntegrationKey(tenant, "gone")); err != nil {
		t.Fatal(err)
	}
	natstest.Until(t, 10*time.Second, "consumer deleted", func() bool {
		_, err := d.js.Consumer(t.Context(), stream.Chat, delivery.ConsumerName(tenant, "gone"))
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	})
}

// BenchmarkDelivery measures what one event costs from CHAT to an
// integration's endpoint on loopback: opened, consent checked, redacted,
// signed, posted, logged. Deliveries are one at a time per integration, so
// the time per event is a latency, not a throughput of the service.
func BenchmarkDelivery(b *testing.B) {
	s := natstest.Start(b, "")
	kek, err := seal.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	nc, js := natstest.Connect(b, s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- privacy.Run(ctx, privacy.Deps{NC: nc, Log: slog.New(slog.DiscardHandler), KEK: kek, AuditKey: auditKey, PrivateWebhooks: true})
	}()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Run() = %v, want nil", err)
		}
	})
	if err := stream.Ensure(b.Context(), js, stream.Options{}, stream.Chat); err != nil {
		b.Fatal(err)
	}
	var kv jetstream.KeyValue
	natstest.Eventually(b, 10*time.Second, "the INTEGRATIONS bucket", func() (err error) {
		kv, err = js.KeyValue(b.Context(), privacyapi.IntegrationsBucket)
		return err
	})
	ring := keyring.New(kek)
	secret := []byte("bench secret")
	var mu sync.Mutex
	got := 0
	verifier := &webhook.Verifier{Secrets: [][]byte{secret}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := verifier.VerifyRequest(r, 1<<20); err != nil {
			http.Error(w, "bad", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got++
		mu.Unlock()
	}))
	b.Cleanup(srv.Close)
	sealed, err := ring.SealSecret(tenant, "bench", secret)
	if err != nil {
		b.Fatal(err)
	}
	rec, err := json.Marshal(privacyapi.Integration{Tenant: tenant, ID: "bench", Kind: privacyapi.KindIntegration, WebhookURL: srv.URL,
		SealedSecret: sealed, KEKID: ring.KEKID(), CreatedAt: time.Now().UTC()})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := kv.Put(b.Context(), privacyapi.IntegrationKey(tenant, "bench"), rec); err != nil {
		b.Fatal(err)
	}
	var v string
	natstest.Eventually(b, 10*time.Second, "a visitor registered", func() (err error) {
		v, err = register(b.Context(), nc, privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: event.Consent{AI: true, NoticeVersion: "n1"}})
		return err
	})
	k, err := getKeys(b.Context(), nc, v, true)
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]*nats.Msg, b.N)
	for i := range msgs {
		e, err := event.New(k.Data, event.MessagePosted, tenant, v, "conv-b", time.Now(), event.Posted{Stamped: stamped(event.Stamp{}),
			Author: event.Author{Role: "visitor", ID: v}, Text: seededText})
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = e.Msg(stream.ChatSubject(tenant, "conv-b"))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, m := range msgs {
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	natstest.Until(b, 5*time.Minute, "every event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got >= b.N
	})
}

// TestDeliveryBehindALongErasureGoesOn: an event delivered while its
// visitor's erasure is under way waits for the erasure to complete, and
// the integration's later events behind it; but an erasure requested
// longer ago than a working one takes (its steps failing, say) holds
// them no longer: the event is followed by the erasure's notice, and the
// next visitor's event is delivered.
func TestDeliveryBehindALongErasureGoesOn(t *testing.T) {
	// A request stored ten minutes ago, and nothing after it.
	d, crm, v, erasureID := erasureDuringDelivery(t, "conv-l", time.Now().Add(-10*time.Minute))
	next := d.visitor(true)
	d.append(next, "conv-n", event.ConversationOpened, time.Now(), event.Opened{Stamped: stamped(event.Stamp{}), Visitor: next, Text: "next"})
	natstest.Until(t, 20*time.Second, "the erasure's notice after the event, then the next visitor's event", func() bool {
		got := crm.bodies()
		notice := slices.IndexFunc(got, func(b delivery.Body) bool {
			return b.Type == delivery.ErasedType && b.VisitorID == v && b.ErasureID == erasureID
		})
		return notice >= 0 && slices.ContainsFunc(got, func(b delivery.Body) bool {
			return b.Type == string(event.ConversationOpened) && b.VisitorID == next
		})
	})
}
