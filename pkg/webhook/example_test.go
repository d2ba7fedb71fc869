package webhook_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/parley-chat/parley/pkg/webhook"
)

// An integrator's endpoint: it verifies every delivery before acting on it,
// and refuses replays for the tolerance window.
func Example() {
	secret := []byte("the secret shown when the integration was registered")
	verifier := &webhook.Verifier{
		Secrets: [][]byte{secret},
		Seen:    webhook.NewReplayCache(10_000),
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := verifier.VerifyRequest(r, 1<<20)
		switch {
		case errors.Is(err, webhook.ErrReplayed):
			w.WriteHeader(http.StatusOK) // already handled: acknowledge, do nothing
			return
		case err != nil:
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		fmt.Printf("handled %s\n", body)
	})

	// What Parley sends.
	body := []byte(`{"type":"subject.erased.v1"}`)
	sig, err := webhook.Sign(time.Now(), body, secret)
	if err != nil {
		panic(err)
	}
	deliver := func(sig string) int {
		req := httptest.NewRequest(http.MethodPost, "/parley", bytes.NewReader(body))
		req.Header.Set(webhook.SignatureHeader, sig)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec.Code
	}
	fmt.Println(deliver(sig))
	fmt.Println(deliver(sig))
	forged, _ := webhook.Sign(time.Now(), body, []byte("guessed"))
	fmt.Println(deliver(forged))
	// Output:
	// handled {"type":"subject.erased.v1"}
	// 200
	// 200
	// 401
}
