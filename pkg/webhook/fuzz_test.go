package webhook_test

import (
	"errors"
	"testing"

	"github.com/parley-chat/parley/pkg/webhook"
)

// FuzzVerify: no header and body but the signed ones verify, and Verify
// never panics on what a sender puts in the header.
func FuzzVerify(f *testing.F) {
	valid, err := webhook.Sign(sentAt, body, newSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, body)
	f.Add("t=1800000000,v1=00,v1=zz,t=1", []byte("{}"))
	f.Add("v1=,t=,x=y,,=", []byte(nil))
	f.Fuzz(func(t *testing.T, header string, b []byte) {
		v := webhook.Verifier{Secrets: [][]byte{newSecret}, Now: fixedClock(sentAt)}
		err := v.Verify(header, b)
		if err == nil && string(b) != string(body) {
			t.Fatalf("Verify(%q, %q) = nil for a body never signed", header, b)
		}
		if err != nil && !errors.Is(err, webhook.ErrMalformed) && !errors.Is(err, webhook.ErrStale) && !errors.Is(err, webhook.ErrBadSignature) {
			t.Fatalf("Verify(%q) = %v, not one of the documented errors", header, err)
		}
	})
}
