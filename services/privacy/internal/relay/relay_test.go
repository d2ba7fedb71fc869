package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
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
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Analytics); err != nil {
		t.Fatal(err)
	}
	var facts []analyticsapi.Fact
	for i := range analyticsapi.MaxFactsPerMsg + 1 {
		facts = append(facts, analyticsapi.Fact{ID: fmt.Sprintf("a-%d:%s", i, analyticsapi.KindMessage), Tenant: "acme", Kind: analyticsapi.KindMessage})
		if i < 2 {
			facts = append(facts, analyticsapi.Fact{ID: fmt.Sprintf("b-%d:%s", i, analyticsapi.KindOpened), Tenant: "beta", Kind: analyticsapi.KindOpened})
		}
	}
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
	type msg struct {
		subject string
		ids     []string
	}
	var got []msg
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
		got = append(got, msg{m.Subject, ids})
	}
	idsOf := func(prefix, kind string, from, to int) []string {
		var ids []string
		for i := from; i < to; i++ {
			ids = append(ids, fmt.Sprintf("%s-%d:%s", prefix, i, kind))
		}
		return ids
	}
	want := []msg{
		{"analytics.acme.facts", idsOf("a", analyticsapi.KindMessage, 0, analyticsapi.MaxFactsPerMsg)},
		{"analytics.acme.facts", idsOf("a", analyticsapi.KindMessage, analyticsapi.MaxFactsPerMsg, analyticsapi.MaxFactsPerMsg+1)},
		{"analytics.beta.facts", idsOf("b", analyticsapi.KindOpened, 0, 2)},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(msg{})); diff != "" {
		t.Errorf("messages of facts (-want +got):\n%s", diff)
	}
}
