package chat_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"
)

// settingsBucket creates the SETTINGS bucket, as the privacy service does
// at its start, and returns it.
func settingsBucket(t testing.TB, s *natsembed.Server) jetstream.KeyValue {
	t.Helper()
	_, js := natstest.Connect(t, s)
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: privacyapi.SettingsBucket, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func putSettings(t testing.TB, kv jetstream.KeyValue, tenant string, st privacyapi.Settings) {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), tenant, b); err != nil {
		t.Fatal(err)
	}
}

// unlimited lifts the tenant's limits on open conversations and messages
// for tests that need many: past what the privacy service would store, which
// the chat service takes as it finds it.
func unlimited(t testing.TB, s *natsembed.Server, tenant string) {
	t.Helper()
	putSettings(t, settingsBucket(t, s), tenant, privacyapi.Settings{
		RetentionDays:                    privacyapi.DefaultRetentionDays,
		OpenConversationsPerVisitor:      1 << 20,
		MessagesPerConversationPerMinute: 1 << 20,
	})
}

// TestRetentionExpiresConversations sets a tenant's retention to seconds
// and shows the store removing the conversation's events by their TTL and
// the read models dropping it too, while another tenant's conversation,
// under the default retention, stays.
func TestRetentionExpiresConversations(t *testing.T) {
	s := natstest.Start(t, "")
	ks := startKeyService(t, s)
	kv := settingsBucket(t, s)
	in := startChat(t, s)
	_, js := natstest.Connect(t, s)
	chatStream, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s)

	short, long := "short", "long"
	visitor := principal(short, auth.RoleVisitor, "v1")
	other := principal(long, auth.RoleVisitor, "v2")
	ks.add(t, short, visitor.ID)
	ks.add(t, long, other.ID)
	putSettings(t, kv, short, privacyapi.Settings{RetentionDays: 1, RetentionSeconds: 2})
	// The watch applies the change asynchronously: wait until an append
	// carries the new TTL.
	conv := openUnderTTL(t, c, chatStream, visitor, "2s")
	c.post(visitor, conv, "anyone there?")
	kept := c.open(other, "hi")
	m, err := chatStream.GetLastMsgForSubject(t.Context(), stream.ChatSubject(long, kept))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Header.Get(jetstream.MsgTTLHeader), (365 * 24 * time.Hour).String(); got != want {
		t.Errorf("Nats-TTL under default settings = %q, want %q", got, want)
	}
	if got := len(c.messages(visitor, conv)); got != 2 {
		t.Fatalf("Messages() before expiry holds %d messages, want 2", got)
	}

	natstest.Eventually(t, 10*time.Second, "events removed from the store", func() error {
		_, err := chatStream.GetLastMsgForSubject(t.Context(), stream.ChatSubject(short, conv))
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("last message of the conversation: err = %v, want not found", err)
		}
		return nil
	})
	err = c.call(visitor, chatapi.MessagesSubject, chatapi.MessagesArgs{Conversation: conv}, nil)
	if rpc.CodeOf(err) != rpc.CodeNotFound {
		t.Errorf("Messages(expired conversation) error = %v, want code %s", err, rpc.CodeNotFound)
	}
	// Conversations opened while the new retention was on its way keep the
	// old one; only the expired conversation must be gone from the list.
	for _, sum := range c.list(principal(short, auth.RoleAdmin, "a")) {
		if sum.ID == conv {
			t.Errorf("List() after expiry still holds %s", conv)
		}
	}
	if got := len(c.messages(other, kept)); got != 1 {
		t.Errorf("Messages(default retention) holds %d messages, want 1", got)
	}

	// A restart rebuilds from what the store holds: the conversation stays gone.
	if err := in.stop(); err != nil {
		t.Fatal(err)
	}
	startChat(t, s)
	err = c.call(visitor, chatapi.MessagesSubject, chatapi.MessagesArgs{Conversation: conv}, nil)
	if rpc.CodeOf(err) != rpc.CodeNotFound {
		t.Errorf("Messages(expired conversation) after restart error = %v, want code %s", err, rpc.CodeNotFound)
	}
}

// TestRetentionExpiresViewEntries closes a conversation and leaves another
// open under a retention of seconds: their CHAT_VIEW entries carry a
// Nats-TTL, so that the bucket drops them by itself once their events
// expired, within the minute the periodic prune allowed before, with no
// pass listing the bucket while the service runs (the drop itself:
// internal/jetstream's TestViewEntriesExpire). A message stored under a
// longer retention extends its conversation's entry's TTL with it.
func TestRetentionExpiresViewEntries(t *testing.T) {
	s := natstest.Start(t, "")
	ks := startKeyService(t, s)
	kv := settingsBucket(t, s)
	short := "short"
	visitor := principal(short, auth.RoleVisitor, "v1")
	ks.add(t, short, visitor.ID)
	putSettings(t, kv, short, privacyapi.Settings{RetentionDays: 1, RetentionSeconds: 10})
	startChat(t, s)
	_, js := natstest.Connect(t, s)
	chatStream, err := js.Stream(t.Context(), stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s)
	conv := openUnderTTL(t, c, chatStream, visitor, "10s")
	left := c.open(visitor, "left open")
	c.must(visitor, chatapi.CloseSubject, chatapi.ConversationArgs{Conversation: conv}, nil)
	openKey := short + ".open." + visitor.ID + "." + left
	for _, k := range []string{closedKey(short, visitor.ID, conv), openKey} {
		natstest.Eventually(t, 10*time.Second, "the entry "+k+" written to expire", func() error {
			ttl, err := viewTTL(t, s, k)
			if err != nil {
				return err
			}
			if ttl <= 0 || ttl > 10*time.Second+time.Minute {
				return fmt.Errorf("Nats-TTL of %s = %v, want some, at most the retention and a minute", k, ttl)
			}
			return nil
		})
	}

	putSettings(t, kv, short, privacyapi.Settings{RetentionDays: 1})
	natstest.Eventually(t, 5*time.Second, "a message stored with Nats-TTL 24h", func() error {
		c.post(visitor, left, "still there?")
		m, err := chatStream.GetLastMsgForSubject(t.Context(), stream.ChatSubject(short, left))
		if err != nil {
			return err
		}
		if got := m.Header.Get(jetstream.MsgTTLHeader); got != "24h0m0s" {
			return fmt.Errorf("Nats-TTL = %q, want 24h0m0s", got)
		}
		return nil
	})
	natstest.Eventually(t, 10*time.Second, "the open entry's TTL extended", func() error {
		ttl, err := viewTTL(t, s, openKey)
		if err != nil {
			return err
		}
		if ttl < 24*time.Hour-time.Minute {
			return fmt.Errorf("Nats-TTL of %s = %v, want a day", openKey, ttl)
		}
		return nil
	})
}

// viewTTL returns the Nats-TTL of the last write of the CHAT_VIEW entry
// under key, 0 when it has none.
func viewTTL(t *testing.T, s *natsembed.Server, key string) (time.Duration, error) {
	t.Helper()
	_, js := natstest.Connect(t, s)
	bucket, err := js.Stream(t.Context(), stream.BucketStream(stream.ChatViewBucket))
	if err != nil {
		t.Fatal(err)
	}
	m, err := bucket.GetLastMsgForSubject(t.Context(), "$KV."+stream.ChatViewBucket+"."+key)
	if err != nil {
		return 0, fmt.Errorf("view key %s: %w", key, err)
	}
	h := m.Header.Get(jetstream.MsgTTLHeader)
	if h == "" {
		return 0, nil
	}
	return time.ParseDuration(h)
}

// openUnderTTL opens conversations as visitor until one's opening is
// stored with the TTL ttl: the settings' watch applies a change
// asynchronously. It answers that conversation.
func openUnderTTL(t *testing.T, c client, chatStream jetstream.Stream, visitor auth.Principal, ttl string) string {
	t.Helper()
	var conv string
	natstest.Eventually(t, 10*time.Second, "an opening stored with Nats-TTL "+ttl, func() error {
		conv = c.open(visitor, "hello")
		m, err := chatStream.GetLastMsgForSubject(t.Context(), stream.ChatSubject(visitor.Tenant, conv))
		if err != nil {
			return err
		}
		if got := m.Header.Get(jetstream.MsgTTLHeader); got != ttl {
			return fmt.Errorf("Nats-TTL = %q, want %s", got, ttl)
		}
		return nil
	})
	return conv
}
