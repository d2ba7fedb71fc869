package httpapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/rpc"
	"golang.org/x/time/rate"
)

// Limit names, the values of the limit label of
// parley_gateway_limit_rejections_total: a fixed set, never a tenant, a
// principal or an address.
const (
	limitRequests        = "requests_per_principal"
	limitSessionsOfOne   = "sessions_per_principal"
	limitSessionsTenant  = "sessions_per_tenant"
	limitSessionsProcess = "sessions_per_process"
	limitRegTenant       = "registrations_per_tenant"
	limitRegAddress      = "registrations_per_address"
	limitOpen            = "open_conversations_per_visitor"
	limitMessages        = "messages_per_conversation_per_minute"
	limitBodyDeadline    = "body_read_deadline"
	limitConnsOfAddress  = "connections_per_address"
	limitConnsProcess    = "connections_per_process"
)

// chatLimits names the limit behind a rpc.CodeLimited answer, by the route
// whose call the chat service refused.
var chatLimits = map[string]string{
	"POST /v1/conversations":               limitOpen,
	"POST /v1/conversations/{id}/messages": limitMessages,
}

// sessionRetry is the Retry-After of a WebSocket session refused for a
// limit: sessions end at the client's pace, not the server's.
const sessionRetry = 10 * time.Second

// idleAfter is how long a key's bucket is kept unused; by then it has
// refilled, so forgetting it changes nothing.
const idleAfter = time.Minute

// limiter is a token bucket per key, safe for concurrent use. Buckets idle
// for idleAfter are swept as new requests arrive, so memory follows the
// number of recently active keys.
type limiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newLimiter(limit rate.Limit, burst int) *limiter {
	return &limiter{limit: limit, burst: burst, now: time.Now, buckets: make(map[string]*bucket), lastSweep: time.Now()}
}

// take spends one of key's requests, or returns a *rateLimited error when
// key has none left.
func (l *limiter) take(key string) error {
	_, err := l.takeWith(key, l.limit, l.burst)
	return err
}

// takePerMinute is take for a key allowed perMinute requests a minute, all
// of them at once if it likes; a key's allowance may change between calls.
// Calling giveBack, at once, returns the request to the key.
func (l *limiter) takePerMinute(key string, perMinute int, detail *statusError) (giveBack func(), err error) {
	giveBack, err = l.takeWith(key, rate.Limit(perMinute)/60, perMinute)
	var rl *rateLimited
	if errors.As(err, &rl) {
		rl.cause = detail
	}
	return giveBack, err
}

func (l *limiter) takeWith(key string, limit rate.Limit, burst int) (giveBack func(), err error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > idleAfter {
		for k, b := range l.buckets {
			if now.Sub(b.used) > idleAfter {
				delete(l.buckets, k)
			}
		}
		l.lastSweep = now
	}
	b := l.buckets[key]
	switch {
	case b == nil:
		b = &bucket{lim: rate.NewLimiter(limit, burst)}
		l.buckets[key] = b
	case b.lim.Limit() != limit || b.lim.Burst() != burst:
		b.lim.SetLimitAt(now, limit)
		b.lim.SetBurstAt(now, burst)
	}
	b.used = now
	r := b.lim.ReserveN(now, 1)
	if r.OK() && r.DelayFrom(now) == 0 {
		// A reservation is cancelled as of when it was made: one already
		// acted on gives nothing back.
		return func() { r.CancelAt(now) }, nil
	}
	r.CancelAt(now)
	// The bucket refills at l.limit tokens a second; a request takes one.
	missing := 1 - b.lim.TokensAt(now)
	return nil, &rateLimited{retryAfter: time.Duration(missing / float64(limit) * float64(time.Second)), cause: errRateLimited}
}

// rateLimited is a 429 error, cause, with when the client may try again.
type rateLimited struct {
	retryAfter time.Duration
	cause      *statusError
}

func (e *rateLimited) Error() string { return e.cause.Error() }

func (e *rateLimited) Unwrap() error { return e.cause }

// retryAfter returns when the client of a request refused with err may
// try again: a limit of the gateway's or of a service (rpc.Error's
// RetryAfter); false when err says nothing about it.
func retryAfter(err error) (time.Duration, bool) {
	var (
		rl *rateLimited
		re *rpc.Error
	)
	switch {
	case errors.As(err, &rl):
		return rl.retryAfter, true
	case errors.As(err, &re) && re.RetryAfter > 0:
		return time.Duration(re.RetryAfter) * time.Second, true
	}
	return 0, false
}

// retryAfterSeconds is d as a Retry-After value: whole seconds, rounded up
// so that a client that waits that long finds a request in the bucket, and
// never 0, which would invite an immediate retry.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// addressKeys turns a client address into a limiter key that cannot be
// turned back into the address: an HMAC-SHA256 under a random key that
// lives in this process's memory only and is replaced every
// addressKeyLifetime, so that no address is stored, logged or linkable
// across key periods. Replacing the key starts every address's allowance
// afresh, once an hour. It is safe for concurrent use.
type addressKeys struct {
	mu   sync.Mutex
	key  [32]byte
	made time.Time
}

const addressKeyLifetime = time.Hour

// of returns the limiter key of addr in tenant.
func (k *addressKeys) of(tenant string, addr netip.Addr) string {
	now := time.Now()
	k.mu.Lock()
	if k.made.IsZero() || now.Sub(k.made) > addressKeyLifetime {
		rand.Read(k.key[:]) // never fails (crypto/rand)
		k.made = now
	}
	mac := hmac.New(sha256.New, k.key[:])
	k.mu.Unlock()
	mac.Write(addr.AsSlice())
	return tenant + ":" + string(mac.Sum(nil)[:16])
}

// ipv6Bits is how much of an IPv6 address tells clients apart: one
// subscriber holds a whole /64.
const ipv6Bits = 64

// clientAddr returns the address r came from: the peer's, or when header
// is set (a trusted reverse proxy writes it) the last address in that
// header, which is the one the proxy saw. An IPv6 address is cut to its
// /64. ok is false when there is none to read.
func clientAddr(r *http.Request, header string) (netip.Addr, bool) {
	var addr netip.Addr
	var err error
	if v := r.Header.Values(header); header != "" && len(v) > 0 {
		last := v[len(v)-1]
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		addr, err = netip.ParseAddr(strings.TrimSpace(last))
	} else {
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(r.RemoteAddr)
		addr = ap.Addr()
	}
	if err != nil {
		return netip.Addr{}, false
	}
	return client(addr), true
}

// client returns what of addr tells one client from another: an IPv6
// address is cut to its /64.
func client(addr netip.Addr) netip.Addr {
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(ipv6Bits)
		addr = p.Addr()
	}
	return addr
}
