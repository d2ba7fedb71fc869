package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/rpc"
)

func TestProblemFor(t *testing.T) {
	tests := []struct {
		name         string
		give         error
		wantStatus   int
		wantDetail   string
		wantInternal bool
	}{
		{"invalid", rpc.Errorf(rpc.CodeInvalid, "bad score"), http.StatusUnprocessableEntity, "bad score", false},
		{"not found", rpc.Errorf(rpc.CodeNotFound, "no such conversation"), http.StatusNotFound, "no such conversation", false},
		{"conflict", fmt.Errorf("call: %w", rpc.Errorf(rpc.CodeConflict, "closed")), http.StatusConflict, "closed", false},
		{"forbidden", rpc.Errorf(rpc.CodeForbidden, "not yours"), http.StatusForbidden, "not yours", false},
		{"gone", rpc.Errorf(rpc.CodeGone, "erased"), http.StatusGone, "erased", false},
		{"unavailable", rpc.Errorf(rpc.CodeUnavailable, "store down"), http.StatusServiceUnavailable, "store down", false},
		{"no responders", fmt.Errorf("call x: %w", nats.ErrNoResponders), http.StatusServiceUnavailable, "a service this call needs did not answer", false},
		{"timeout", fmt.Errorf("call x: %w", context.DeadlineExceeded), http.StatusServiceUnavailable, "a service this call needs did not answer", false},
		{"remote internal", rpc.Errorf(rpc.CodeInternal, "internal error"), http.StatusInternalServerError, "internal error", true},
		{"local bug", fmt.Errorf("encode: boom with secret"), http.StatusInternalServerError, "internal error", true},
		{"expired token", auth.ErrExpiredToken, http.StatusUnauthorized, "the token has expired", false},
		{"invalid token", auth.ErrInvalidToken, http.StatusUnauthorized, "the token is not valid", false},
		{"body too large", &http.MaxBytesError{Limit: 1}, http.StatusRequestEntityTooLarge, "the body is too large", false},
		{"rate limited", errRateLimited, http.StatusTooManyRequests, errRateLimited.detail, false},
		{"rate limited with retry", &rateLimited{retryAfter: time.Second, cause: errRateLimited}, http.StatusTooManyRequests, errRateLimited.detail, false},
		{"session limit", &rateLimited{retryAfter: sessionRetry, cause: errSessionsOfOne}, http.StatusTooManyRequests, errSessionsOfOne.detail, false},
		{"limited by a service", &rpc.Error{Code: rpc.CodeLimited, Message: "slow down", RetryAfter: 3}, http.StatusTooManyRequests, "slow down", false},
		{"body deadline", errBodyDeadline, http.StatusRequestTimeout, errBodyDeadline.detail, false},
		{"erased visitor", errErased, http.StatusGone, errErased.detail, false},
		{"malformed", errMalformed, http.StatusBadRequest, errMalformed.detail, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, internal := problemFor(tt.give)
			want := Problem{Type: p.Type, Title: http.StatusText(tt.wantStatus), Status: tt.wantStatus, Detail: tt.wantDetail}
			if diff := cmp.Diff(want, p); diff != "" || internal != tt.wantInternal {
				t.Errorf("problemFor(%v) = %+v, %v; want %+v, %v", tt.give, p, internal, want, tt.wantInternal)
			}
			if p.Type == "" {
				t.Errorf("problemFor(%v) has no type", tt.give)
			}
		})
	}
}

func TestRateLimitedRetryAfter(t *testing.T) {
	tests := []struct {
		name  string
		limit rate.Limit
		burst int
		want  int // Retry-After of the request after the burst
	}{
		{"many a second", 50, 2, 1},
		{"one every 2.5 s", 0.4, 1, 3},
		{"one a minute", rate.Every(time.Minute), 1, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(tt.limit, tt.burst)
			for i := range tt.burst {
				if err := l.take("k"); err != nil {
					t.Fatalf("take() %d of the burst = %v, want nil", i+1, err)
				}
			}
			err := l.take("k")
			var limited *rateLimited
			if !errors.As(err, &limited) {
				t.Fatalf("take() after the burst = %v, want *rateLimited", err)
			}
			if got := retryAfterSeconds(limited.retryAfter); got != tt.want {
				t.Errorf("Retry-After = %d (wait %v), want %d", got, limited.retryAfter, tt.want)
			}
			if err := l.take("other"); err != nil {
				t.Errorf("take() of another key = %v, want nil", err)
			}
		})
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, time.Minute: 60} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}
