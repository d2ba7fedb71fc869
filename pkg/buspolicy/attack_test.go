package buspolicy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/buspolicy"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// attemptTimeout bounds one attempt: a refused publish gets no reply, only
// an asynchronous permissions violation, so a refused request times out.
const attemptTimeout = 500 * time.Millisecond

// client is one user's connection that records the permissions violations
// the server reports to it.
type client struct {
	user string
	nc   *nats.Conn
	js   jetstream.JetStream

	mu         sync.Mutex
	violations []string
}

func (c *client) violated(subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.violations {
		if strings.Contains(v, `"`+subject) {
			return true
		}
	}
	return false
}

// bus is an embedded server with every bus user, holding a key in KEYS, an
// event in CHAT, its entry in CHAT_VIEW, a fact in ANALYTICS, a profile, and
// a message in each of privacy's and the gateway's streams of secrets and
// records that the attacks read.
type bus struct {
	srv       *natsembed.Server
	passwords map[string]string
	admin     *client
	// served are the connections serving internal endpoints, by user.
	served map[string]*client
}

func startBus(t *testing.T) *bus {
	t.Helper()
	b := &bus{passwords: map[string]string{}, served: map[string]*client{}}
	for _, u := range append(buspolicy.Services(), buspolicy.Admin) {
		b.passwords[u] = u + "-secret"
	}
	users, err := buspolicy.Users(b.passwords)
	if err != nil {
		t.Fatal(err)
	}
	b.srv, err = natsembed.Start(natsembed.Options{StoreDir: t.TempDir(), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.srv.Close)
	b.admin = b.connect(t, buspolicy.Admin)
	ctx := context.Background()
	if _, err := stream.Apply(ctx, b.admin.js, stream.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"keys.demo.s1", "chat.demo.c1", "$KV." + stream.ChatViewBucket + ".demo.c1", "analytics.demo.message", stream.ProfileSubject("demo", "v1"),
		"$KV." + stream.SessionsBucket + ".demo.s1", "$KV." + stream.IdentityProvidersBucket + ".demo", "$KV." + stream.SignInBucket + ".demo.x",
		"delivery.demo.d1", "recipient.demo.b1.s1", "notice.demo.n1"} {
		if _, err := b.admin.js.Publish(ctx, subj, []byte("stored")); err != nil {
			t.Fatal(err)
		}
	}
	// The key service, served as privacy, answering on the reply subject
	// it was given: allow_responses at work.
	privacy := b.connect(t, buspolicy.Privacy)
	if _, err := privacy.nc.QueueSubscribe(personkey.GetSubject, "privacy", func(m *nats.Msg) {
		_ = m.Respond([]byte(`{}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := privacy.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	b.serveInternal(t, buspolicy.Chat, chatapi.Service, "parley.internal.chat", chatapi.VisitorConversationsSubject)
	b.serveInternal(t, buspolicy.Analytics, analyticsapi.Service, "parley.internal.analytics", analyticsapi.EraseSubject)
	return b
}

// serveInternal serves subject, an internal endpoint of group, as the
// micro service name on a connection of user, as the service does.
func (b *bus) serveInternal(t *testing.T, user, name, group, subject string) {
	t.Helper()
	c := b.connect(t, user)
	served, err := rpc.Serve(t.Context(), c.nc, slog.New(slog.DiscardHandler), rpc.Service{Name: name, Queue: user,
		Groups: []rpc.Group{{Prefix: group, Internal: true, Routes: []rpc.Route{{Subject: subject,
			Handler: rpc.Handle(func(context.Context, rpc.Request[struct{}]) (struct{}, error) { return struct{}{}, nil })}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(served.Stop)
	b.served[user] = c
}

// callAsSystem calls subject as c with the system principal.
func callAsSystem(ctx context.Context, c *client, subject string) error {
	return rpc.Call(ctx, c.nc, subject, rpc.Request[struct{}]{Principal: auth.System("demo", "parley-"+c.user)}, nil)
}

func (b *bus) connect(t *testing.T, user string) *client {
	t.Helper()
	c := &client{user: user}
	opts := []nats.Option{
		nats.UserInfo(user, b.passwords[user]),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				c.mu.Lock()
				c.violations = append(c.violations, err.Error())
				c.mu.Unlock()
			}
		}),
	}
	if user != buspolicy.Admin {
		opts = append(opts, nats.CustomInboxPrefix(buspolicy.InboxPrefix(user)))
	}
	nc, err := nats.Connect(b.srv.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// subscribeGets subscribes c to subject, has admin publish on trigger, and
// returns nil when the message arrives.
func (b *bus) subscribeGets(ctx context.Context, c *client, subject, trigger string) error {
	sub, err := c.nc.SubscribeSync(subject)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := c.nc.Flush(); err != nil {
		return err
	}
	if err := b.admin.nc.Publish(trigger, []byte("secret")); err != nil {
		return err
	}
	_, err = sub.NextMsgWithContext(ctx)
	return err
}

// jsRequest sends a raw JetStream API request and returns nil when it
// answered with a message or without an API error.
func jsRequest(ctx context.Context, c *client, subject string, body []byte) error {
	m, err := c.nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return err
	}
	if m.Header.Get("Nats-Stream") != "" {
		return nil // a direct get answers with the message itself
	}
	var r struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return err
	}
	if r.Error != nil {
		return errors.New(r.Error.Description)
	}
	return nil
}

// TestAttacks tries, as each service that must not, what privacy
// guarantee 4 forbids; the same attempt as admin proves that it would
// otherwise succeed.
func TestAttacks(t *testing.T) {
	b := startBus(t)
	tests := []struct {
		name string
		as   []string
		// violation is the start of the subject the server must refuse.
		violation string
		try       func(ctx context.Context, c *client) error
	}{
		{
			name: "subscribe to conversations", as: []string{buspolicy.Analytics}, violation: "chat.>",
			try: func(ctx context.Context, c *client) error { return b.subscribeGets(ctx, c, "chat.>", "chat.demo.c1") },
		},
		{
			name: "subscribe to the stored conversations CHAT republishes", as: []string{buspolicy.Analytics}, violation: stream.LiveChatSubjects,
			try: func(ctx context.Context, c *client) error {
				return b.subscribeGets(ctx, c, stream.LiveChatSubjects, "chat.demo.c1")
			},
		},
		{
			name: "hear who is typing", as: []string{buspolicy.Analytics, buspolicy.Chat, buspolicy.Privacy}, violation: chatapi.TypingSignals,
			try: func(ctx context.Context, c *client) error {
				return b.subscribeGets(ctx, c, chatapi.TypingSignals, chatapi.TypingSignal("demo", "c1"))
			},
		},
		{
			name: "forge a typing signal", as: []string{buspolicy.Analytics, buspolicy.Chat, buspolicy.Privacy}, violation: chatapi.TypingSignal("demo", "c2"),
			// c2: the subtests run in parallel, and admin publishes on c1's.
			try: func(ctx context.Context, c *client) error {
				return b.publishArrives(ctx, c, chatapi.TypingSignal("demo", "c2"))
			},
		},
		{
			name: "subscribe to keys", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Chat}, violation: "keys.>",
			try: func(ctx context.Context, c *client) error { return b.subscribeGets(ctx, c, "keys.>", "keys.demo.live") },
		},
		{
			name: "snoop on the shared inbox", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Chat}, violation: "_INBOX.>",
			try: func(ctx context.Context, c *client) error { return b.subscribeGets(ctx, c, "_INBOX.>", "_INBOX.x.1") },
		},
		{
			name: "snoop on the gateway's replies", as: []string{buspolicy.Analytics, buspolicy.Chat}, violation: "_INBOX_gateway.>",
			try: func(ctx context.Context, c *client) error {
				return b.subscribeGets(ctx, c, "_INBOX_gateway.>", "_INBOX_gateway.x.1")
			},
		},
		{
			name: "ask the key service", as: []string{buspolicy.Analytics}, violation: personkey.GetSubject,
			try: func(ctx context.Context, c *client) error {
				_, err := c.nc.RequestWithContext(ctx, personkey.GetSubject, []byte(`{"tenant":"demo","subject":"s1"}`))
				return err
			},
		},
		{
			name: "consume CHAT", as: []string{buspolicy.Analytics}, violation: "$JS.API.CONSUMER.CREATE.CHAT",
			try: func(ctx context.Context, c *client) error {
				_, err := c.js.CreateConsumer(ctx, stream.Chat, jetstream.ConsumerConfig{})
				return err
			},
		},
		{
			name: "read CHAT by direct get", as: []string{buspolicy.Analytics, buspolicy.Gateway}, violation: "$JS.API.DIRECT.GET.CHAT",
			try: func(ctx context.Context, c *client) error {
				return jsRequest(ctx, c, "$JS.API.DIRECT.GET.CHAT.chat.demo.c1", nil)
			},
		},
		{
			// The gateway replays one tenant's conversations, never the
			// whole stream at once.
			name: "consume CHAT unfiltered", as: []string{buspolicy.Analytics, buspolicy.Gateway}, violation: "$JS.API.CONSUMER.CREATE.CHAT",
			try: func(ctx context.Context, c *client) error {
				cons, err := c.js.CreateConsumer(ctx, stream.Chat, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Second})
				if err != nil {
					return err
				}
				return c.js.DeleteConsumer(ctx, stream.Chat, cons.CachedInfo().Name)
			},
		},
		{
			name: "consume KEYS", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Chat}, violation: "$JS.API.CONSUMER.CREATE.KEYS",
			try: func(ctx context.Context, c *client) error {
				_, err := c.js.CreateConsumer(ctx, stream.Keys, jetstream.ConsumerConfig{})
				return err
			},
		},
		{
			name: "durable consumer on KEYS", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Chat}, violation: "$JS.API.CONSUMER.CREATE.KEYS.steal",
			try: func(ctx context.Context, c *client) error {
				_, err := c.js.CreateOrUpdateConsumer(ctx, stream.Keys, jetstream.ConsumerConfig{Durable: "steal", FilterSubject: "keys.>"})
				return err
			},
		},
		{
			name: "pull from KEYS with an ordered consumer", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Chat}, violation: "$JS.API.CONSUMER.CREATE.KEYS",
			try: func(ctx context.Context, c *client) error { return pullOne(ctx, c, stream.Keys) },
		},
		{
			// The relay, in privacy, cannot pass on what it cannot read.
			name: "read the visitors' profiles", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Privacy}, violation: "$JS.API.DIRECT.GET." + stream.Profiles,
			try: func(ctx context.Context, c *client) error {
				return jsRequest(ctx, c, "$JS.API.DIRECT.GET."+stream.Profiles+"."+stream.ProfileSubject("demo", "v1"), nil)
			},
		},
		{
			name: "subscribe to the visitors' profiles", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Privacy}, violation: "profile.>",
			try: func(ctx context.Context, c *client) error {
				return b.subscribeGets(ctx, c, "profile.>", stream.ProfileSubject("demo", "v1"))
			},
		},
		{
			name: "read chat's view of the conversations", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Privacy}, violation: "$JS.API.DIRECT.GET.KV_" + stream.ChatViewBucket,
			try: func(ctx context.Context, c *client) error {
				return jsRequest(ctx, c, "$JS.API.DIRECT.GET.KV_"+stream.ChatViewBucket+".$KV."+stream.ChatViewBucket+".demo.c1", nil)
			},
		},
		{
			name: "direct get of a key by subject", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Chat}, violation: "$JS.API.DIRECT.GET.KEYS.keys.demo.s1",
			try: func(ctx context.Context, c *client) error {
				return jsRequest(ctx, c, "$JS.API.DIRECT.GET.KEYS.keys.demo.s1", nil)
			},
		},
		{
			name: "direct get of a key by sequence", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Chat}, violation: "$JS.API.DIRECT.GET.KEYS",
			try: func(ctx context.Context, c *client) error {
				return jsRequest(ctx, c, "$JS.API.DIRECT.GET.KEYS", []byte(`{"seq":1}`))
			},
		},
		{
			name: "stream message get of a key", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Chat}, violation: "$JS.API.STREAM.MSG.GET.KEYS",
			try: func(ctx context.Context, c *client) error {
				return jsRequest(ctx, c, "$JS.API.STREAM.MSG.GET.KEYS", []byte(`{"seq":1}`))
			},
		},
		{
			name: "stream info of KEYS", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Chat}, violation: "$JS.API.STREAM.INFO.KEYS",
			try: func(ctx context.Context, c *client) error {
				_, err := c.js.Stream(ctx, stream.Keys)
				return err
			},
		},
		{
			name: "source KEYS into a stream of its own", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Chat}, violation: "$JS.API.STREAM.CREATE.STEAL",
			try: func(ctx context.Context, c *client) error {
				_, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: "STEAL", Sources: []*jetstream.StreamSource{{Name: stream.Keys}}})
				if err != nil {
					return err
				}
				return c.js.DeleteStream(ctx, "STEAL")
			},
		},
		{
			name: "reconfigure its own stream to source KEYS", as: []string{buspolicy.Gateway, buspolicy.Chat, buspolicy.Analytics, buspolicy.Privacy}, violation: "$JS.API.STREAM.UPDATE.",
			try: func(ctx context.Context, c *client) error {
				own := map[string]string{
					buspolicy.Gateway:   stream.BucketStream(stream.TenantsBucket),
					buspolicy.Chat:      stream.Chat,
					buspolicy.Analytics: stream.Analytics,
					// SETTINGS, which the gateway and chat read.
					buspolicy.Privacy: stream.BucketStream(stream.SettingsBucket),
					buspolicy.Admin:   stream.Audit,
				}
				return b.sourceKeys(ctx, c, own[c.user])
			},
		},
		{
			name: "reconfigure CHAT to source KEYS", as: []string{buspolicy.Privacy, buspolicy.Gateway, buspolicy.Analytics}, violation: "$JS.API.STREAM.UPDATE.CHAT",
			try: func(ctx context.Context, c *client) error { return b.sourceKeys(ctx, c, stream.Chat) },
		},
		{
			name: "write a key", as: []string{buspolicy.Analytics, buspolicy.Gateway, buspolicy.Chat}, violation: "keys.demo.forged",
			try: func(ctx context.Context, c *client) error {
				_, err := c.js.Publish(ctx, "keys.demo.forged", []byte("forged"))
				return err
			},
		},
		{
			// Not the conversation of "forge a chat event", run in
			// parallel: CHAT republishes what admin stores there on the
			// live subject, which would arrive here as if forged.
			name: "forge a stored chat event for live sessions", as: buspolicy.Services(), violation: stream.LiveChatSubject("demo", "forged-live"),
			try: func(ctx context.Context, c *client) error {
				return b.publishArrives(ctx, c, stream.LiveChatSubject("demo", "forged-live"))
			},
		},
		{
			// What the system principal is trusted for: only services
			// that need an internal endpoint may publish to it.
			name: "call chat's internal endpoint as the system principal", as: []string{buspolicy.Gateway, buspolicy.Analytics, buspolicy.Chat}, violation: chatapi.VisitorConversationsSubject,
			try: func(ctx context.Context, c *client) error {
				return callAsSystem(ctx, c, chatapi.VisitorConversationsSubject)
			},
		},
		{
			name: "erase analytics rows as the system principal", as: []string{buspolicy.Gateway, buspolicy.Chat}, violation: analyticsapi.EraseSubject,
			try: func(ctx context.Context, c *client) error { return callAsSystem(ctx, c, analyticsapi.EraseSubject) },
		},
		{
			name: "listen on internal endpoints", as: buspolicy.Services(), violation: "parley.internal.>",
			try: func(ctx context.Context, c *client) error {
				return b.subscribeGets(ctx, c, "parley.internal.>", chatapi.VisitorConversationsSubject)
			},
		},
		{
			name: "answer discovery as another service", as: []string{buspolicy.Gateway, buspolicy.Analytics, buspolicy.Privacy}, violation: "$SRV.INFO." + chatapi.Service,
			try: func(ctx context.Context, c *client) error {
				return b.subscribeGets(ctx, c, "$SRV.INFO."+chatapi.Service, "$SRV.INFO."+chatapi.Service)
			},
		},
		{
			// Chat reads a bot's record to assign it; registering one is
			// privacy's alone.
			name: "register a bot", as: []string{buspolicy.Chat, buspolicy.Gateway, buspolicy.Analytics}, violation: "$KV." + stream.IntegrationsBucket + ".demo.forged",
			try: func(ctx context.Context, c *client) error {
				_, err := c.js.Publish(ctx, "$KV."+stream.IntegrationsBucket+".demo.forged", []byte(`{"kind":"bot"}`))
				return err
			},
		},
		{
			// Refresh-token hashes: privacy's alone (guarantee 10).
			name: "read the sessions", as: []string{buspolicy.Gateway, buspolicy.Chat, buspolicy.Analytics}, violation: "$JS.API.CONSUMER.CREATE.KV_" + stream.SessionsBucket,
			try: func(ctx context.Context, c *client) error {
				return pullOne(ctx, c, stream.BucketStream(stream.SessionsBucket))
			},
		},
		{
			// Client secrets and PKCE verifiers: the gateway's alone.
			name: "read the identity providers", as: []string{buspolicy.Chat, buspolicy.Privacy, buspolicy.Analytics}, violation: "$JS.API.CONSUMER.CREATE.KV_" + stream.IdentityProvidersBucket,
			try: func(ctx context.Context, c *client) error {
				return pullOne(ctx, c, stream.BucketStream(stream.IdentityProvidersBucket))
			},
		},
		{
			name: "read the pending sign-ins", as: []string{buspolicy.Chat, buspolicy.Privacy, buspolicy.Analytics}, violation: "$JS.API.CONSUMER.CREATE.KV_" + stream.SignInBucket,
			try: func(ctx context.Context, c *client) error {
				return pullOne(ctx, c, stream.BucketStream(stream.SignInBucket))
			},
		},
		{
			// Who received whose events, and the notices owed: privacy's.
			name: "read the delivery log", as: []string{buspolicy.Gateway, buspolicy.Chat, buspolicy.Analytics}, violation: "$JS.API.CONSUMER.CREATE." + stream.Deliveries,
			try: func(ctx context.Context, c *client) error { return pullOne(ctx, c, stream.Deliveries) },
		},
		{
			name: "read who received whom", as: []string{buspolicy.Gateway, buspolicy.Chat, buspolicy.Analytics}, violation: "$JS.API.CONSUMER.CREATE." + stream.Recipients,
			try: func(ctx context.Context, c *client) error { return pullOne(ctx, c, stream.Recipients) },
		},
		{
			// A work queue: no consumer beside privacy's, so read by
			// sequence.
			name: "read the erasure notices owed", as: []string{buspolicy.Gateway, buspolicy.Chat, buspolicy.Analytics}, violation: "$JS.API.STREAM.MSG.GET." + stream.Notices,
			try: func(ctx context.Context, c *client) error {
				return jsRequest(ctx, c, "$JS.API.STREAM.MSG.GET."+stream.Notices, []byte(`{"seq":1}`))
			},
		},
		{
			// The audit trail's keeper is privacy: no other caller
			// writes an entry or a checkpoint past it.
			name: "forge an audit entry", as: []string{buspolicy.Gateway, buspolicy.Chat, buspolicy.Analytics}, violation: "audit.demo",
			try: func(ctx context.Context, c *client) error {
				_, err := c.js.Publish(ctx, "audit.demo", []byte("forged"))
				return err
			},
		},
		{
			name: "forge an audit checkpoint", as: []string{buspolicy.Gateway, buspolicy.Chat, buspolicy.Analytics}, violation: "audit_checkpoint.demo",
			try: func(ctx context.Context, c *client) error {
				_, err := c.js.Publish(ctx, "audit_checkpoint.demo", []byte("forged"))
				return err
			},
		},
		{
			// A bot is sent a visitor's messages by privacy alone, with
			// their ai consent.
			name: "send a bot a delivery", as: []string{buspolicy.Gateway, buspolicy.Chat, buspolicy.Analytics}, violation: "parley.bots.demo",
			try: func(ctx context.Context, c *client) error { return b.publishArrives(ctx, c, "parley.bots.demo.b1") },
		},
		{
			name: "forge a chat event", as: []string{buspolicy.Analytics, buspolicy.Gateway}, violation: "chat.demo.forged",
			try: func(ctx context.Context, c *client) error {
				_, err := c.js.Publish(ctx, "chat.demo.forged", []byte("forged"))
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
			defer cancel()
			if err := tt.try(ctx, b.admin); err != nil {
				t.Fatalf("as admin: %v, want the attempt to succeed when permitted", err)
			}
			for _, user := range tt.as {
				c := b.connect(t, user)
				ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
				err := tt.try(ctx, c)
				cancel()
				if err == nil {
					t.Errorf("as %s: succeeded, want refused", user)
					continue
				}
				waitViolation(t, c, tt.violation)
			}
		})
	}
}

// pullOne reads one message of the stream name as c, with an ordered
// consumer.
func pullOne(ctx context.Context, c *client, name string) error {
	cons, err := c.js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(attemptTimeout))
	if err != nil {
		return err
	}
	for range batch.Messages() {
		return nil
	}
	return errors.New("no message")
}

// publishArrives publishes on subject as c and returns nil when admin, who
// may read anything, receives it: a refused publish is dropped without an
// error to the publisher.
func (b *bus) publishArrives(ctx context.Context, c *client, subject string) error {
	sub, err := b.admin.nc.SubscribeSync(subject)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	if err := b.admin.nc.Flush(); err != nil {
		return err
	}
	if err := c.nc.Publish(subject, []byte("forged")); err != nil {
		return err
	}
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return err
	}
	_, err = sub.NextMsgWithContext(ctx)
	return err
}

// sourceKeys updates the stream name, as c, to source KEYS; when that
// succeeded, it sets the stream back.
func (b *bus) sourceKeys(ctx context.Context, c *client, name string) error {
	s, err := b.admin.js.Stream(ctx, name)
	if err != nil {
		return err
	}
	cfg := s.CachedInfo().Config
	steal := cfg
	steal.Sources = []*jetstream.StreamSource{{Name: stream.Keys}}
	if _, err := c.js.UpdateStream(ctx, steal); err != nil {
		return err
	}
	_, err = b.admin.js.UpdateStream(ctx, cfg)
	return err
}

// TestCreateCannotReconfigure checks what makes the right to create a
// service's own streams safe to grant: the server refuses a create of a
// stream that exists with another configuration, so a service cannot use
// it to make its stream source another.
func TestCreateCannotReconfigure(t *testing.T) {
	b := startBus(t)
	tests := []struct {
		as     string
		stream string
	}{
		{buspolicy.Gateway, stream.BucketStream(stream.TenantsBucket)},
		{buspolicy.Chat, stream.Chat},
		{buspolicy.Privacy, stream.BucketStream(stream.SettingsBucket)},
		{buspolicy.Privacy, stream.Audit},
	}
	for _, tt := range tests {
		t.Run(tt.as+" "+tt.stream, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			s, err := b.admin.js.Stream(ctx, tt.stream)
			if err != nil {
				t.Fatal(err)
			}
			steal := s.CachedInfo().Config
			steal.Sources = []*jetstream.StreamSource{{Name: stream.Keys}}
			c := b.connect(t, tt.as)
			if _, err := c.js.CreateStream(ctx, steal); !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				t.Errorf("CreateStream(%s sourcing KEYS) as %s = %v, want ErrStreamNameAlreadyInUse", tt.stream, tt.as, err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Config.Sources) > 0 || info.Config.Mirror != nil {
				t.Errorf("%s after the create: sources %v, mirror %v, want none", tt.stream, info.Config.Sources, info.Config.Mirror)
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if len(c.violations) > 0 {
				t.Errorf("as %s: permissions violations %q, want none: creating its own stream is allowed", tt.as, c.violations)
			}
		})
	}
}

// waitViolation waits until the server has reported that c was refused subject.
func waitViolation(t *testing.T, c *client, subject string) {
	t.Helper()
	natstest.Eventually(t, 2*time.Second, fmt.Sprintf("as %s: a permissions violation for %q", c.user, subject), func() error {
		if c.violated(subject) {
			return nil
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return fmt.Errorf("violations %q", c.violations)
	})
}

// TestServicesDoTheirWork checks a few things each service needs; the
// cmd/parley end-to-end tests, which run every service as its own user,
// check the rest.
func TestServicesDoTheirWork(t *testing.T) {
	b := startBus(t)
	tests := []struct {
		name string
		as   string
		try  func(ctx context.Context, c *client) error
	}{
		{
			name: "gateway asks the key service", as: buspolicy.Gateway,
			try: func(ctx context.Context, c *client) error {
				_, err := c.nc.RequestWithContext(ctx, personkey.GetSubject, []byte(`{}`))
				return err
			},
		},
		{
			name: "gateway follows the chat events CHAT stored", as: buspolicy.Gateway,
			try: func(ctx context.Context, c *client) error {
				return b.subscribeGets(ctx, c, stream.LiveChatSubjects, "chat.demo.c1")
			},
		},
		{
			name: "gateway replays what a reconnecting client missed", as: buspolicy.Gateway,
			try: func(ctx context.Context, c *client) error {
				cons, err := c.js.CreateConsumer(ctx, stream.Chat, jetstream.ConsumerConfig{
					FilterSubject: stream.ChatSubject("demo", "*"),
					AckPolicy:     jetstream.AckNonePolicy,
					MemoryStorage: true,
				})
				if err != nil {
					return err
				}
				batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
				if err != nil {
					return err
				}
				n := 0
				for range batch.Messages() {
					n++
				}
				if n != 1 {
					return fmt.Errorf("replayed %d messages, want 1", n)
				}
				return c.js.DeleteConsumer(ctx, stream.Chat, cons.CachedInfo().Name)
			},
		},
		{
			name: "privacy lists a visitor's conversations as the system principal", as: buspolicy.Privacy,
			try: func(ctx context.Context, c *client) error {
				return callAsSystem(ctx, c, chatapi.VisitorConversationsSubject)
			},
		},
		{
			name: "privacy erases analytics rows as the system principal", as: buspolicy.Privacy,
			try: func(ctx context.Context, c *client) error { return callAsSystem(ctx, c, analyticsapi.EraseSubject) },
		},
		{
			// What `nats micro info` asks; admin has full access.
			name: "services answer discovery", as: buspolicy.Admin,
			try: func(ctx context.Context, c *client) error {
				for _, name := range []string{chatapi.Service, analyticsapi.Service} {
					m, err := c.nc.RequestWithContext(ctx, "$SRV.INFO."+name, nil)
					if err != nil {
						return fmt.Errorf("info %s: %w", name, err)
					}
					var info micro.Info
					if err := json.Unmarshal(m.Data, &info); err != nil {
						return err
					}
					if info.Name != name || len(info.Endpoints) != 1 {
						return fmt.Errorf("info %s = %+v, want its one endpoint", name, info)
					}
				}
				return nil
			},
		},
		{
			name: "chat reads a conversation by direct get", as: buspolicy.Chat,
			try: func(ctx context.Context, c *client) error {
				s, err := c.js.Stream(ctx, stream.Chat)
				if err != nil {
					return err
				}
				_, err = s.GetLastMsgForSubject(ctx, "chat.demo.c1")
				return err
			},
		},
		{
			name: "chat reads a conversation by batched direct get", as: buspolicy.Chat,
			try: func(ctx context.Context, c *client) error {
				return jsRequest(ctx, c, "$JS.API.DIRECT.GET."+stream.Chat, []byte(`{"seq":1,"batch":10,"next_by_subj":"chat.demo.c1"}`))
			},
		},
		{
			name: "chat keeps its view", as: buspolicy.Chat,
			try: func(ctx context.Context, c *client) error {
				kv, err := c.js.KeyValue(ctx, stream.ChatViewBucket)
				if err != nil {
					return err
				}
				if _, err := kv.Put(ctx, "demo.c2", []byte("{}")); err != nil {
					return err
				}
				_, err = kv.Get(ctx, "demo.c1")
				return err
			},
		},
		{
			name: "privacy reads a key by direct get", as: buspolicy.Privacy,
			try: func(ctx context.Context, c *client) error {
				s, err := c.js.Stream(ctx, stream.Keys)
				if err != nil {
					return err
				}
				_, err = s.GetLastMsgForSubject(ctx, "keys.demo.s1")
				return err
			},
		},
		{
			name: "analytics pulls from its durable consumer", as: buspolicy.Analytics,
			try: func(ctx context.Context, c *client) error {
				cons, err := c.js.CreateOrUpdateConsumer(ctx, stream.Analytics, jetstream.ConsumerConfig{Durable: "analytics", AckPolicy: jetstream.AckExplicitPolicy})
				if err != nil {
					return err
				}
				batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
				if err != nil {
					return err
				}
				for m := range batch.Messages() {
					return m.DoubleAck(ctx)
				}
				return errors.New("no message")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := b.connect(t, tt.as)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := tt.try(ctx, c); err != nil {
				t.Errorf("as %s: %v, want success", tt.as, err)
			}
			for _, c := range append([]*client{c}, b.served[buspolicy.Chat], b.served[buspolicy.Analytics]) {
				c.mu.Lock()
				if len(c.violations) > 0 {
					t.Errorf("as %s: permissions violations %q, want none", c.user, c.violations)
				}
				c.mu.Unlock()
			}
		})
	}
}
