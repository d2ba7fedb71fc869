package privacy_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy"
)

// TestStartReadsNoPerson: an instance started longer after the people's
// events were stored than it follows PRIVACY back reads none of them, however many there are:
// no direct get of PRIVACY before it serves, and its follower starts past
// the last event.
func TestStartReadsNoPerson(t *testing.T) {
	s := natstest.Start(t, "")
	kek := newKEK(t)
	start(t, s, kek).stop()
	nc, js := natstest.Connect(t, s)
	for i := range 50 {
		person := "v" + strconv.Itoa(i)
		e, err := event.NewClear(event.ConsentRecorded, tenant, person, person, time.Now(), event.Consent{Analytics: true, NoticeVersion: "n1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(t.Context(), e.Msg(stream.PrivacySubject(tenant, person))); err != nil {
			t.Fatal(err)
		}
	}
	last := streamState(t, js, stream.Privacy).LastSeq

	gets, err := nc.SubscribeSync("$JS.API.DIRECT.GET." + stream.Privacy + ".>")
	if err != nil {
		t.Fatal(err)
	}
	batchGets, err := nc.SubscribeSync("$JS.API.DIRECT.GET." + stream.Privacy)
	if err != nil {
		t.Fatal(err)
	}
	creates, err := nc.SubscribeSync("$JS.API.CONSUMER.CREATE." + stream.Privacy + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Hour)
	start(t, s, kek, func(d *privacy.Deps) { d.Now = func() time.Time { return later } })
	// Every request made before it served is pending once a round trip
	// made after it is done.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []*nats.Subscription{gets, batchGets} {
		if n, _, err := sub.Pending(); err != nil || n != 0 {
			t.Errorf("a start made %d direct gets of PRIVACY on %s (%v), want none", n, sub.Subject, err)
		}
	}
	followed := false
	for {
		m, err := creates.NextMsg(0)
		if err != nil {
			break
		}
		var req struct {
			Config struct {
				DeliverPolicy string `json:"deliver_policy"`
				OptStartSeq   uint64 `json:"opt_start_seq"`
			} `json:"config"`
		}
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Fatal(err)
		}
		followed = true
		if req.Config.DeliverPolicy != "by_start_sequence" || req.Config.OptStartSeq != last+1 {
			t.Errorf("a consumer of PRIVACY made at the start: %s from %d, want by_start_sequence from %d", req.Config.DeliverPolicy, req.Config.OptStartSeq, last+1)
		}
	}
	if !followed {
		t.Error("no consumer of PRIVACY made at the start: nothing follows it")
	}
}
