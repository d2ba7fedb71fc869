// Package webhook signs Parley's outgoing webhooks and verifies them on the
// receiving side; integrators written in Go use the Verifier as it is.
//
// The scheme: the sender computes HMAC-SHA256, keyed with the integration's
// secret, over the ASCII decimal Unix time in seconds, a full stop and the
// request body exactly as sent:
//
//	v1 = hex(HMAC-SHA256(secret, "<t>.<body>"))
//
// and sends it in one header, Parley-Signature: t=<t>,v1=<hex>. While a
// secret is being rotated the header holds one v1 per secret in use
// (t=<t>,v1=<hex>,v1=<hex>); a receiver accepts the delivery when any v1
// matches any of its secrets. The timestamp is signed, so a receiver that
// refuses timestamps outside a tolerance (five minutes by default) and
// remembers the signatures it has seen within it refuses replays.
//
// Signing and verifying are safe for concurrent use.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader is the header that carries the signature.
const SignatureHeader = "Parley-Signature"

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock, either way, when Verifier.Tolerance is zero.
const DefaultTolerance = 5 * time.Minute

// The errors Verify returns; each is wrapped with detail, check with errors.Is.
var (
	// ErrMalformed: the header is missing or not t=<unix>,v1=<hex>[,v1=<hex>…].
	ErrMalformed = errors.New("webhook: malformed signature header")
	// ErrBadSignature: no v1 in the header matches the body under any secret.
	ErrBadSignature = errors.New("webhook: signature does not match")
	// ErrStale: the signed timestamp is outside the tolerance.
	ErrStale = errors.New("webhook: timestamp outside tolerance")
	// ErrReplayed: this signature was already accepted within the tolerance.
	ErrReplayed = errors.New("webhook: replayed delivery")
	// ErrTooLarge: VerifyRequest's body is over its limit.
	ErrTooLarge = errors.New("webhook: body too large")
	// ErrNoSecret: a signer or verifier was given no secret, or an empty one.
	ErrNoSecret = errors.New("webhook: no secret")
)

// Sign returns the Parley-Signature header value for body sent at t: one v1
// per secret, in the order given. It fails only when secrets is empty or
// holds an empty secret.
func Sign(t time.Time, body []byte, secrets ...[]byte) (string, error) {
	if err := checkSecrets(secrets); err != nil {
		return "", err
	}
	ts := strconv.FormatInt(t.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(ts)
	for _, s := range secrets {
		b.WriteString(",v1=")
		b.WriteString(hex.EncodeToString(mac(s, ts, body)))
	}
	return b.String(), nil
}

func checkSecrets(secrets [][]byte) error {
	if len(secrets) == 0 {
		return ErrNoSecret
	}
	for i, s := range secrets {
		if len(s) == 0 {
			return fmt.Errorf("secret %d is empty: %w", i, ErrNoSecret)
		}
	}
	return nil
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verifier checks deliveries. The zero value with Secrets set works: a
// five-minute tolerance, the system clock, no replay cache.
type Verifier struct {
	// Secrets are the integration's current secrets; during a rotation both
	// the old and the new one.
	Secrets [][]byte
	// Tolerance bounds |now - t|; zero means DefaultTolerance.
	Tolerance time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Seen, when set, refuses a delivery (the same timestamp and body)
	// already accepted within the tolerance. Share one between the Verifiers of one integration.
	Seen *ReplayCache
}

// Verify reports whether header is a valid signature of body: nil, or an
// error wrapping ErrNoSecret, ErrMalformed, ErrStale, ErrBadSignature or
// ErrReplayed. Signatures are compared in constant time.
func (v *Verifier) Verify(header string, body []byte) error {
	if err := checkSecrets(v.Secrets); err != nil {
		return err
	}
	ts, sigs, err := parseHeader(header)
	if err != nil {
		return err
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %w", ts, ErrMalformed)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := v.Tolerance
	if tol == 0 {
		tol = DefaultTolerance
	}
	at := time.Unix(sec, 0)
	clock := now()
	if d := clock.Sub(at); d > tol || d < -tol {
		return fmt.Errorf("signed %v from now: %w", d.Round(time.Second), ErrStale)
	}
	for _, s := range v.Secrets {
		want := mac(s, ts, body)
		for _, got := range sigs {
			if !hmac.Equal(got, want) {
				continue
			}
			// A replay is the same timestamp and body, whichever of a
			// rotation's signatures it carries: keyed on the signature
			// matched, a delivery signed with two secrets could be sent
			// again with only the other one.
			if v.Seen == nil {
				return nil
			}
			digest := sha256.Sum256(body)
			if !v.Seen.add(ts+"."+hex.EncodeToString(digest[:]), at.Add(tol), clock) {
				return ErrReplayed
			}
			return nil
		}
	}
	return ErrBadSignature
}

// maxSignatures bounds the v1 entries read from one header.
const maxSignatures = 8

func parseHeader(h string) (ts string, sigs [][]byte, err error) {
	if h == "" {
		return "", nil, fmt.Errorf("no %s header: %w", SignatureHeader, ErrMalformed)
	}
	for part := range strings.SplitSeq(h, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return "", nil, ErrMalformed
		}
		switch k {
		case "t":
			if ts != "" {
				return "", nil, fmt.Errorf("two timestamps: %w", ErrMalformed)
			}
			ts = val
		case "v1":
			sig, err := hex.DecodeString(val)
			if err != nil || len(sig) != sha256.Size {
				return "", nil, fmt.Errorf("v1 is not a hex SHA-256 MAC: %w", ErrMalformed)
			}
			if len(sigs) == maxSignatures {
				return "", nil, fmt.Errorf("more than %d signatures: %w", maxSignatures, ErrMalformed)
			}
			sigs = append(sigs, sig)
		}
		// Other keys are skipped: a later scheme (v2) can be sent beside v1.
	}
	if ts == "" || len(sigs) == 0 {
		return "", nil, fmt.Errorf("want t= and v1=: %w", ErrMalformed)
	}
	return ts, sigs, nil
}

// VerifyRequest reads r's body, at most limit bytes, and verifies it against
// r's Parley-Signature header. It returns the body only when it verifies.
func (v *Verifier) VerifyRequest(r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read webhook body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("webhook body over %d bytes: %w", limit, ErrTooLarge)
	}
	if err := v.Verify(r.Header.Get(SignatureHeader), body); err != nil {
		return nil, err
	}
	return body, nil
}
