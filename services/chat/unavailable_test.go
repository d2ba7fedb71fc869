package chat_test

import (
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/rpc"
)

// TestBusUnavailableIsUnavailable takes JetStream away under a running
// chat service, as a stream without a leader does for a while: commands
// answer CodeUnavailable (the gateway's 503 with Retry-After), never
// internal, and work again once it is back.
func TestBusUnavailableIsUnavailable(t *testing.T) {
	s := natstest.Start(t, t.TempDir())
	ks := startKeyService(t, s)
	ks.add(t, tenant, visitor.ID)
	startChat(t, s)
	c := newClient(t, s)
	conv := c.open(visitor, "hello")

	if err := s.DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	err := c.call(visitor, chatapi.PostSubject, chatapi.PostArgs{Conversation: conv, Text: "while away"}, nil)
	if rpc.CodeOf(err) != rpc.CodeUnavailable {
		t.Errorf("Post() without JetStream error = %v, want code %s", err, rpc.CodeUnavailable)
	}
	err = c.call(visitor, chatapi.OpenSubject, chatapi.OpenArgs{Text: "while away"}, nil)
	if rpc.CodeOf(err) != rpc.CodeUnavailable {
		t.Errorf("Open() without JetStream error = %v, want code %s", err, rpc.CodeUnavailable)
	}
}

// TestLatePostNotStored delivers a post after the deadline its caller set,
// as a frozen server that held it on its way does once it thaws: the
// caller answered 503 long ago, so chat must not store it; the same post
// in time is stored.
func TestLatePostNotStored(t *testing.T) {
	s := natstest.Start(t, t.TempDir())
	ks := startKeyService(t, s)
	ks.add(t, tenant, visitor.ID)
	startChat(t, s)
	c := newClient(t, s)
	conv := c.open(visitor, "hello")

	post := func(text string, deadline time.Time) error {
		data, err := json.Marshal(rpc.Request[chatapi.PostArgs]{Principal: visitor, Args: chatapi.PostArgs{Conversation: conv, Text: text}})
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(chatapi.PostSubject)
		m.Data = data
		m.Header.Set(rpc.DeadlineHeader, strconv.FormatInt(deadline.UnixMilli(), 10))
		r, err := c.nc.RequestMsg(m, rpc.DefaultTimeout)
		if err != nil {
			return err
		}
		if code := r.Header.Get(micro.ErrorCodeHeader); code != "" {
			return &rpc.Error{Code: rpc.Code(code), Message: r.Header.Get(micro.ErrorHeader)}
		}
		return nil
	}
	if err := post("too late", time.Now().Add(-time.Second)); rpc.CodeOf(err) != rpc.CodeUnavailable {
		t.Errorf("late Post() = %v, want code %s", err, rpc.CodeUnavailable)
	}
	if err := post("in time", time.Now().Add(rpc.DefaultTimeout)); err != nil {
		t.Fatalf("Post() in time = %v", err)
	}
	var got []string
	for _, m := range c.messages(visitor, conv) {
		got = append(got, *m.Text)
	}
	if want := []string{"hello", "in time"}; !slices.Equal(got, want) {
		t.Errorf("transcript = %q, want %q: the late post must not be stored", got, want)
	}
}
