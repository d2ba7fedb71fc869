package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/egress"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/retry"
	"github.com/parley-chat/parley/pkg/stream"
	"github.com/parley-chat/parley/pkg/webhook"
)

// Headers of a delivery, besides webhook.SignatureHeader.
const (
	// DeliveryHeader names what is delivered: the event's id, or the
	// erasure notice's. A receiver that sees it twice has seen a retry.
	DeliveryHeader = "Parley-Delivery"
	// AttemptHeader counts the attempts at this delivery, from 1.
	AttemptHeader = "Parley-Attempt"
)

// SecretOpener opens an integration's signing secret (sealed under the
// KEK in its record).
type SecretOpener func(rec privacyapi.Integration) ([]byte, error)

// maxAnswer bounds what is read of a webhook's answer: only its status
// counts, and the connection is reused only when the body is drained.
const maxAnswer = 64 << 10

// sender signs and sends deliveries, and writes each attempt to the
// delivery log.
type sender struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	client  *http.Client
	timeout time.Duration
	secret  SecretOpener
	log     *slog.Logger
	now     func() time.Time
}

// newSender returns the sender of c's client and timeout.
func newSender(nc *nats.Conn, js jetstream.JetStream, c Config, secret SecretOpener, log *slog.Logger) *sender {
	return &sender{nc: nc, js: js, client: c.HTTPClient, timeout: c.Timeout, secret: secret, log: log, now: time.Now}
}

// attempt is one try at a delivery.
type attempt struct {
	rec  privacyapi.Integration
	id   string // the event's or notice's id
	typ  string
	n    int // from 1
	body []byte
	// secret signs it, opened before the attempt: a secret that does not
	// open is a failure on Parley's side, not an attempt.
	secret []byte
	// visitor is whose event or notice it is.
	visitor string
}

// send delivers a to its integration, signed, within the sender's
// timeout, and reports whether it was acknowledged and the HTTP status
// (0 for none). An error means it could not even be tried.
func (s *sender) send(ctx context.Context, a attempt) (bool, int, error) {
	sig, err := webhook.Sign(s.now(), a.body, a.secret)
	if err != nil {
		return false, 0, fmt.Errorf("sign delivery: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if a.rec.NATSSubject != "" {
		m := nats.NewMsg(a.rec.NATSSubject)
		m.Header.Set(webhook.SignatureHeader, sig)
		m.Header.Set(DeliveryHeader, a.id)
		m.Header.Set(AttemptHeader, strconv.Itoa(a.n))
		m.Data = a.body
		// Any reply acknowledges; no responder or no reply in time is a
		// failed attempt.
		_, err := s.nc.RequestMsgWithContext(ctx, m)
		return err == nil, 0, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.rec.WebhookURL, bytes.NewReader(a.body))
	if err != nil {
		return false, 0, fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Parley-Webhook/1")
	req.Header.Set(webhook.SignatureHeader, sig)
	req.Header.Set(DeliveryHeader, a.id)
	req.Header.Set(AttemptHeader, strconv.Itoa(a.n))
	resp, err := s.client.Do(req)
	if err != nil {
		return false, 0, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode, nil
}

// ackWait is the AckWait of the consumers whose messages s sends: an
// attempt ends within the timeout; the rest covers the bus.
func (s *sender) ackWait() time.Duration { return s.timeout + 20*time.Second }

// keepInProgress tells the server, every third of ackWait, that m is
// still being handled, until the returned function is called: a slow
// attempt, or a wait for Parley's side to recover, does not let m go to
// another instance meanwhile, which would send it twice at once.
func keepInProgress(m jetstream.Msg, ackWait time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(ackWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				_ = m.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// untilDone calls f until it returns nil or ctx ends (ctx's error),
// waiting as pkg/retry says after each failure, which it logs as what: for
// failures on Parley's side (the bus, the keys, the secret), which are
// no attempt at the integration and must not use up its retries.
func untilDone(ctx context.Context, log *slog.Logger, what string, f func() error) error {
	_, err := retry.Until(ctx, 0, func(err error) { log.Warn(what+", will retry", "err", err) },
		func() (struct{}, error) { return struct{}{}, f() })
	return err
}

// logAttempt writes an attempt to the delivery log: ids, type, outcome,
// status and duration, never the body.
func (s *sender) logAttempt(ctx context.Context, a attempt, outcome string, status int, took time.Duration) error {
	d := privacyapi.Delivery{EventID: a.id, Type: a.typ, Attempt: a.n, Outcome: outcome, Status: status,
		DurationMS: took.Milliseconds(), At: s.now().UTC()}
	m := nats.NewMsg(stream.DeliverySubject(a.rec.Tenant, a.rec.ID))
	// The same event goes to several integrations: each entry is theirs.
	m.Header.Set(jetstream.MsgIDHeader, a.rec.ID+"."+a.id+"."+strconv.Itoa(a.n))
	var err error
	if m.Data, err = json.Marshal(d); err != nil {
		return err
	}
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("log delivery: %w", err)
	}
	return nil
}

// noRedirects keeps the webhook client from following a redirect: an
// answer that sends elsewhere is no acknowledgement, and following it
// would take a signed body to a host the admin did not register.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// newClient returns the client of webhooks. Unless private is true it
// connects to public addresses only (egress.PublicOnly), and it never goes
// through a proxy: the check sees the address dialled, which would be the
// proxy's.
func newClient(private bool) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if !private {
		tr.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: egress.PublicOnly}).DialContext
	}
	return &http.Client{CheckRedirect: noRedirects, Transport: tr}
}
