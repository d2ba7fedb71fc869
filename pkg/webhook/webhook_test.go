package webhook_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/webhook"
)

var (
	oldSecret = []byte("whsec_old_0123456789")
	newSecret = []byte("whsec_new_9876543210")
	sentAt    = time.Unix(1_800_000_000, 0)
	body      = []byte(`{"type":"chat.message_posted.v1","text":"[email] asked for a refund"}`)
)

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func sign(t *testing.T, at time.Time, b []byte, secrets ...[]byte) string {
	t.Helper()
	h, err := webhook.Sign(at, b, secrets...)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return h
}

func TestVerify(t *testing.T) {
	valid := sign(t, sentAt, body, newSecret)
	forged := "t=1800000000,v1=" + strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		secrets [][]byte
		header  string
		body    []byte
		now     time.Time
		want    error
	}{
		{name: "valid", secrets: [][]byte{newSecret}, header: valid, body: body, now: sentAt},
		{name: "valid within tolerance late", secrets: [][]byte{newSecret}, header: valid, body: body, now: sentAt.Add(5 * time.Minute)},
		{name: "valid within tolerance early", secrets: [][]byte{newSecret}, header: valid, body: body, now: sentAt.Add(-5 * time.Minute)},
		{name: "receiver rotating: old and new secret", secrets: [][]byte{oldSecret, newSecret}, header: valid, body: body, now: sentAt},
		{name: "sender rotating: two v1", secrets: [][]byte{oldSecret}, header: sign(t, sentAt, body, newSecret, oldSecret), body: body, now: sentAt},
		{name: "forged signature", secrets: [][]byte{newSecret}, header: forged, body: body, now: sentAt, want: webhook.ErrBadSignature},
		{name: "wrong secret", secrets: [][]byte{oldSecret}, header: valid, body: body, now: sentAt, want: webhook.ErrBadSignature},
		{name: "changed body", secrets: [][]byte{newSecret}, header: valid, body: append([]byte(nil), append(body, ' ')...), now: sentAt, want: webhook.ErrBadSignature},
		{name: "changed timestamp", secrets: [][]byte{newSecret}, header: strings.Replace(valid, "t=1800000000", "t=1800000001", 1), body: body, now: sentAt, want: webhook.ErrBadSignature},
		{name: "stale", secrets: [][]byte{newSecret}, header: valid, body: body, now: sentAt.Add(5*time.Minute + time.Second), want: webhook.ErrStale},
		{name: "from the future", secrets: [][]byte{newSecret}, header: valid, body: body, now: sentAt.Add(-6 * time.Minute), want: webhook.ErrStale},
		{name: "no header", secrets: [][]byte{newSecret}, header: "", body: body, now: sentAt, want: webhook.ErrMalformed},
		{name: "no v1", secrets: [][]byte{newSecret}, header: "t=1800000000", body: body, now: sentAt, want: webhook.ErrMalformed},
		{name: "short v1", secrets: [][]byte{newSecret}, header: "t=1800000000,v1=abcd", body: body, now: sentAt, want: webhook.ErrMalformed},
		{name: "bad timestamp", secrets: [][]byte{newSecret}, header: "t=soon,v1=" + strings.Repeat("ab", 32), body: body, now: sentAt, want: webhook.ErrMalformed},
		{name: "no secret", secrets: nil, header: valid, body: body, now: sentAt, want: webhook.ErrNoSecret},
		{name: "empty secret", secrets: [][]byte{{}}, header: valid, body: body, now: sentAt, want: webhook.ErrNoSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := webhook.Verifier{Secrets: tt.secrets, Now: fixedClock(tt.now)}
			if err := v.Verify(tt.header, tt.body); !errors.Is(err, tt.want) {
				t.Errorf("Verify(%q) = %v, want %v", tt.header, err, tt.want)
			}
		})
	}
}

func TestVerifyRefusesReplay(t *testing.T) {
	now := sentAt
	v := webhook.Verifier{
		Secrets: [][]byte{newSecret},
		Now:     func() time.Time { return now },
		Seen:    webhook.NewReplayCache(100),
	}
	h := sign(t, sentAt, body, newSecret)
	if err := v.Verify(h, body); err != nil {
		t.Fatalf("first delivery: Verify = %v, want nil", err)
	}
	now = sentAt.Add(time.Minute)
	if err := v.Verify(h, body); !errors.Is(err, webhook.ErrReplayed) {
		t.Errorf("replay: Verify = %v, want %v", err, webhook.ErrReplayed)
	}
	// A retry is a new delivery: signed again, at a new time.
	if err := v.Verify(sign(t, now, body, newSecret), body); err != nil {
		t.Errorf("retry signed anew: Verify = %v, want nil", err)
	}
	// Past the window the timestamp refuses it; the cache has let it go.
	now = sentAt.Add(6 * time.Minute)
	if err := v.Verify(h, body); !errors.Is(err, webhook.ErrStale) {
		t.Errorf("replay after the window: Verify = %v, want %v", err, webhook.ErrStale)
	}
}

// TestReplayDuringRotationRefused: a delivery signed with both secrets of a
// rotation, sent again carrying only the other signature, is a replay.
func TestReplayDuringRotationRefused(t *testing.T) {
	v := webhook.Verifier{Secrets: [][]byte{oldSecret, newSecret}, Now: fixedClock(sentAt), Seen: webhook.NewReplayCache(100)}
	if err := v.Verify(sign(t, sentAt, body, oldSecret, newSecret), body); err != nil {
		t.Fatalf("first delivery: Verify = %v, want nil", err)
	}
	for _, s := range [][]byte{oldSecret, newSecret} {
		if err := v.Verify(sign(t, sentAt, body, s), body); !errors.Is(err, webhook.ErrReplayed) {
			t.Errorf("replay with one signature: Verify = %v, want %v", err, webhook.ErrReplayed)
		}
	}
}

func TestReplayCacheIsBounded(t *testing.T) {
	now := sentAt
	cache := webhook.NewReplayCache(10)
	v := webhook.Verifier{Secrets: [][]byte{newSecret}, Now: func() time.Time { return now }, Seen: cache}
	for i := range 50 {
		b := fmt.Appendf(nil, `{"n":%d}`, i)
		if err := v.Verify(sign(t, now, b, newSecret), b); err != nil {
			t.Fatalf("delivery %d: Verify = %v", i, err)
		}
	}
	if got := cache.Len(); got != 10 {
		t.Errorf("cache.Len() = %d after 50 deliveries, want 10", got)
	}
	// Expired entries are swept as new ones arrive.
	now = now.Add(2 * webhook.DefaultTolerance)
	b := []byte(`{"n":"late"}`)
	if err := v.Verify(sign(t, now, b, newSecret), b); err != nil {
		t.Fatalf("late delivery: Verify = %v", err)
	}
	if got := cache.Len(); got != 1 {
		t.Errorf("cache.Len() = %d after the window, want 1", got)
	}
}

// TestSignFormat holds Sign to the scheme as documented (docs/api.md,
// "Webhooks"), with values computed outside Go.
func TestSignFormat(t *testing.T) {
	tests := []struct {
		name   string
		at     int64
		body   string
		secret string
		want   string
	}{
		{name: "short", at: 1, body: "x", secret: "k", want: "t=1,v1=976cb87e4f568d1c0f03f32859e90af8597cf00b978ba37c229c97d3a15b8449"},
		{
			name: "the guide's example", at: 1_800_000_000, body: `{"type":"subject.erased.v1"}`, secret: "whsec_example",
			want: "t=1800000000,v1=f76ea00219cfa2aeb593e728013ff69f5904b699da82ab2bbb0dbe7e7407595e",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sign(t, time.Unix(tt.at, 0), []byte(tt.body), []byte(tt.secret)); got != tt.want {
				t.Errorf("Sign(%d, %q) = %q, want %q", tt.at, tt.body, got, tt.want)
			}
		})
	}
}

// TestReplayRefusedUnderConcurrency: of the same delivery arriving many times
// at once, exactly one is accepted.
func TestReplayRefusedUnderConcurrency(t *testing.T) {
	v := webhook.Verifier{Secrets: [][]byte{newSecret}, Now: fixedClock(sentAt), Seen: webhook.NewReplayCache(100)}
	h := sign(t, sentAt, body, newSecret)
	results := make(chan error, 16)
	for range cap(results) {
		go func() { results <- v.Verify(h, body) }()
	}
	accepted := 0
	for range cap(results) {
		switch err := <-results; {
		case err == nil:
			accepted++
		case !errors.Is(err, webhook.ErrReplayed):
			t.Errorf("Verify = %v, want nil or %v", err, webhook.ErrReplayed)
		}
	}
	if accepted != 1 {
		t.Errorf("%d of %d identical deliveries accepted, want 1", accepted, cap(results))
	}
}

func TestVerifyRequestLimitsBody(t *testing.T) {
	v := webhook.Verifier{Secrets: [][]byte{newSecret}, Now: fixedClock(sentAt)}
	req := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
	req.Header.Set(webhook.SignatureHeader, sign(t, sentAt, body, newSecret))
	if _, err := v.VerifyRequest(req, int64(len(body)-1)); !errors.Is(err, webhook.ErrTooLarge) {
		t.Errorf("VerifyRequest(limit %d) = %v, want %v", len(body)-1, err, webhook.ErrTooLarge)
	}
}
