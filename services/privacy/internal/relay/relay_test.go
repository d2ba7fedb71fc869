package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestAnalyticsWindowOutlastsRedelivery holds ANALYTICS's duplicate window
// to what the relay's facts need: a batch redelivered as it was after
// ackWait yields a message of facts the stream still drops as a duplicate.
func TestAnalyticsWindowOutlastsRedelivery(t *testing.T) {
	cfg, err := stream.Config(stream.Analytics, stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Duplicates < 2*ackWait {
		t.Errorf("ANALYTICS's duplicate window = %v, want at least twice the relay's AckWait (%v)", cfg.Duplicates, ackWait)
	}
}

// TestPublishFacts publishes the facts of a batch of two tenants, one with
// more than a message holds: a message for each tenant's MaxFactsPerMsg,
// each fact once, in the order they came, each message's id its facts'.
func TestPublishFacts(t *testing.T) {
	js := analyticsStream(t, natsembed.Options{})
	var facts []analyticsapi.Fact
	for i := range analyticsapi.MaxFactsPerMsg + 1 {
		facts = append(facts, analyticsapi.Fact{ID: fmt.Sprintf("a-%d:%s", i, analyticsapi.KindMessage), Tenant: "acme", Kind: analyticsapi.KindMessage})
		if i < 2 {
			facts = append(facts, analyticsapi.Fact{ID: fmt.Sprintf("b-%d:%s", i, analyticsapi.KindOpened), Tenant: "beta", Kind: analyticsapi.KindOpened})
		}
	}
	got := publishAndRead(t, js, facts)
	want := []factsMsg{
		{"analytics.acme.facts", idsOf("a", analyticsapi.KindMessage, 0, analyticsapi.MaxFactsPerMsg)},
		{"analytics.acme.facts", idsOf("a", analyticsapi.KindMessage, analyticsapi.MaxFactsPerMsg, analyticsapi.MaxFactsPerMsg+1)},
		{"analytics.beta.facts", idsOf("b", analyticsapi.KindOpened, 0, 2)},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(factsMsg{})); diff != "" {
		t.Errorf("messages of facts (-want +got):\n%s", diff)
	}
}

// TestPublishFactsWithinPayload publishes a batch's facts on a bus whose
// payload limit is far below what MaxFactsPerMsg facts take: each message
// fits it, and every fact is stored once, in order. A message over the
// limit would be refused at every redelivery of its events.
func TestPublishFactsWithinPayload(t *testing.T) {
	const maxPayload = 16 << 10
	js := analyticsStream(t, natsembed.Options{MaxPayload: maxPayload})
	var facts []analyticsapi.Fact
	for i := range 300 {
		facts = append(facts, analyticsapi.Fact{
			ID: fmt.Sprintf("a-%d:%s", i, analyticsapi.KindMessage), Tenant: "acme", Kind: analyticsapi.KindMessage,
			Conversation: strings.Repeat("c", 64), Visitor: strings.Repeat("v", 64), Agent: strings.Repeat("g", 64),
		})
	}
	var ids []string
	for _, m := range publishAndRead(t, js, facts) {
		if m.subject != "analytics.acme.facts" {
			t.Errorf("a message on %s, want analytics.acme.facts", m.subject)
		}
		ids = append(ids, m.ids...)
	}
	if diff := cmp.Diff(idsOf("a", analyticsapi.KindMessage, 0, len(facts)), ids); diff != "" {
		t.Errorf("facts stored (-want +got):\n%s", diff)
	}
}

// analyticsStream starts a server with o and the ANALYTICS stream.
func analyticsStream(t *testing.T, o natsembed.Options) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, natstest.StartWith(t, o))
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Analytics); err != nil {
		t.Fatal(err)
	}
	return js
}

// factsMsg is a message of facts in ANALYTICS: its subject and its facts'
// ids.
type factsMsg struct {
	subject string
	ids     []string
}

// publishAndRead publishes facts as the relay does, waits for every ack,
// and returns the messages of ANALYTICS, each checked to carry its facts'
// id.
func publishAndRead(t *testing.T, js jetstream.JetStream, facts []analyticsapi.Fact) []factsMsg {
	t.Helper()
	r := New(js, nil, slog.New(slog.DiscardHandler), 0)
	futures, err := r.publishFacts(facts, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, fu := range futures {
		select {
		case <-fu.Ok():
		case err := <-fu.Err():
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatal("no ack")
		}
	}
	an, err := js.Stream(t.Context(), stream.Analytics)
	if err != nil {
		t.Fatal(err)
	}
	var got []factsMsg
	for seq := uint64(1); ; seq++ {
		m, err := an.GetMsg(t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var fs []analyticsapi.Fact
		if err := json.Unmarshal(m.Data, &fs); err != nil {
			t.Fatal(err)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != analyticsapi.FactsID(fs) {
			t.Errorf("message %d's id %s, want its facts' %s", seq, id, analyticsapi.FactsID(fs))
		}
		var ids []string
		for _, f := range fs {
			ids = append(ids, f.ID)
		}
		got = append(got, factsMsg{m.Subject, ids})
	}
	return got
}

// idsOf returns the fact ids "<prefix>-<i>:<kind>" for i in [from, to).
func idsOf(prefix, kind string, from, to int) []string {
	var ids []string
	for i := from; i < to; i++ {
		ids = append(ids, fmt.Sprintf("%s-%d:%s", prefix, i, kind))
	}
	return ids
}
