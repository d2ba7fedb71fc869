package privacy_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy"
)

// runPrivacy runs the privacy service on s until the test ends; done gets
// what Run returned.
func runPrivacy(t *testing.T, s *natsembed.Server, giveUp time.Duration) (done <-chan error) {
	t.Helper()
	nc, _ := natstest.Connect(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	runErr := make(chan error, 1) // buffered: Run ends at cleanup whether or not a test reads it
	kek := newKEK(t)
	go func() {
		defer close(ended)
		runErr <- privacy.Run(ctx, privacy.Deps{NC: nc, Log: slog.New(slog.DiscardHandler), KEK: kek, AuditKey: auditKey, GiveUp: giveUp})
	}()
	t.Cleanup(func() {
		cancel()
		<-ended
	})
	return runErr
}

// A relay without its CHAT stream is a dead consumer: the service answers
// its pings that it is not ready, naming the relay, until the stream is
// there.
func TestPingSaysNotReadyWhileTheRelayFails(t *testing.T) {
	s := natstest.Start(t, "")
	runPrivacy(t, s, time.Hour)
	nc, js := natstest.Connect(t, s)

	notReadyUntilChat(t, nc, js, "relay")
}

// Consumers that keep failing for GiveUp (the relay and the erasures after
// close, both without CHAT) end Run with the error, which ends the process
// non-zero.
func TestRunFailsWhenAConsumerGivesUp(t *testing.T) {
	s := natstest.Start(t, "")
	err := natstest.Returns(t, 30*time.Second, "its consumers should have given up", runPrivacy(t, s, 2*time.Second))
	if err == nil || !strings.Contains(err.Error(), "gave up") || !strings.Contains(err.Error(), "stream not found") {
		t.Fatalf("Run() = %v, want a consumer's error", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "ready"
	}
	return err.Error()
}

// An integration's consumer without CHAT is a dead consumer too: the
// pings name it until the stream is there.
func TestPingSaysNotReadyWhileADeliveryConsumerFails(t *testing.T) {
	s := natstest.Start(t, "")
	runPrivacy(t, s, time.Hour)
	nc, js := natstest.Connect(t, s)
	var kv jetstream.KeyValue
	natstest.Eventually(t, 20*time.Second, "the INTEGRATIONS bucket", func() (err error) {
		kv, err = js.KeyValue(t.Context(), privacyapi.IntegrationsBucket)
		return err
	})
	rec, err := json.Marshal(privacyapi.Integration{Tenant: tenant, ID: "crm", Kind: privacyapi.KindIntegration, WebhookURL: "https://crm.example/hook", CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), privacyapi.IntegrationKey(tenant, "crm"), rec); err != nil {
		t.Fatal(err)
	}
	notReadyUntilChat(t, nc, js, "delivery "+tenant+"/crm")
}

// notReadyUntilChat waits for the service's pings to answer not ready,
// naming part, then creates CHAT and waits for them to answer ready.
func notReadyUntilChat(t *testing.T, nc *nats.Conn, js jetstream.JetStream, part string) {
	t.Helper()
	natstest.Eventually(t, 20*time.Second, "a ping naming "+part, func() error {
		err := rpc.Ping(t.Context(), nc, privacyapi.RegisterVisitorSubject)
		if rpc.CodeOf(err) != rpc.CodeUnavailable || !strings.Contains(err.Error(), part) {
			return errors.New(errString(err))
		}
		return nil
	})
	if err := stream.Create(t.Context(), js, stream.Options{}, stream.Chat); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 20*time.Second, "ready once CHAT exists", func() error {
		return rpc.Ping(t.Context(), nc, privacyapi.RegisterVisitorSubject)
	})
}
