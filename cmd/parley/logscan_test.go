package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/rpc"
)

// TestLogsHoldNoSecrets runs a whole scenario — conversation, live stream,
// consent change, export, settings, erasure — with debug logging, then scans
// every log line for message texts, tokens, keys, the client's address,
// user agent and language. The client's address comes, as behind a proxy,
// in X-Forwarded-For, and the tenant collects network data with the
// visitor's consent, so the address is one Parley reads and stores: the
// scan looks for it without a port, and the store is scanned for it in
// the clear, with the user agent and the language, which it never keeps.
func TestLogsHoldNoSecrets(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAllWith(t, dir, func(cfg *allConfig) { cfg.ClientAddrHeader = "X-Forwarded-For" })
	base := a.URL()

	// A documentation address (RFC 5737), which nothing else here uses.
	const clientIP, clientNet = "203.0.113.77", "203.0.113."
	userAgent, language := "ParleyProbe/"+marker(t), "x-"+strings.ToLower(marker(t))
	// Record the client side of every connection too.
	var mu sync.Mutex
	var clientAddrs []string
	dialer := &net.Dialer{}
	http.DefaultClient = &http.Client{Transport: headerTransport{
		header: http.Header{"X-Forwarded-For": {clientIP}, "User-Agent": {userAgent}, "Accept-Language": {language}},
		next: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dialer.DialContext(ctx, network, addr)
				if err == nil {
					mu.Lock()
					clientAddrs = append(clientAddrs, c.LocalAddr().String())
					mu.Unlock()
				}
				return c, err
			},
		},
	}}
	t.Cleanup(func() { http.DefaultClient = &http.Client{} })

	agent := staffToken(t, dir, "demo", "agent", "alice")
	admin := staffToken(t, dir, "demo", "admin", "ada")
	mustCall(t, base, "PUT", "/v1/settings", admin, map[string]any{"retention_days": 30, "collect_network_data": true}, http.StatusOK)
	// The gateway learns the setting from its mirror of the privacy
	// service's: a visitor registered before that is not recorded. One is
	// needed, or the scan below proves nothing of the address.
	var visitorID, visitor string
	natstest.Eventually(t, 10*time.Second, "a visitor's network data recorded", func() error {
		v := visitorWith(t, base, true)
		visitorID, visitor = v["visitor_id"].(string), v["token"].(string)
		nd := mustCall(t, base, "GET", "/v1/me/export", visitor, nil, http.StatusOK)["network_data"].([]any)
		if len(nd) != 1 || nd[0].(map[string]any)["ip_prefix"] != clientNet+"0/24" {
			return fmt.Errorf("network data %v, want the forwarded address's /24, %s0/24", nd, clientNet)
		}
		return nil
	})
	live := openStream(t, base, agent)
	hello, reply := marker(t), marker(t)
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": hello}, http.StatusCreated)["id"].(string)
	live.waitMessage(t, hello, liveWithin)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", agent, map[string]any{"text": reply}, http.StatusCreated)
	mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", admin, nil, http.StatusOK)
	mustCall(t, base, "PUT", "/v1/me/consent", visitor, map[string]any{"analytics": false, "network_data": false, "ai": false}, http.StatusOK)
	// Bad requests get logged too, if anything is: they must not echo input.
	call(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor+"x", map[string]any{"text": hello})
	call(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor, []byte(`{"text":"`+hello))

	nc, _ := adminConn(t, a)
	var keys personkey.Keys
	if err := rpc.Call(t.Context(), nc, personkey.GetSubject, personkey.Request{Tenant: "demo", Person: visitorID}, &keys); err != nil {
		t.Fatalf("get the visitor's keys: %v", err)
	}
	mustCall(t, base, "DELETE", "/v1/me", visitor, nil, http.StatusAccepted)
	kek, err := os.ReadFile(filepath.Join(dir, "kek.key"))
	if err != nil {
		t.Fatal(err)
	}

	secrets := map[string]string{
		"client address":      clientNet,
		"user agent":          userAgent,
		"language":            language,
		"message text":        hello,
		"reply text":          reply,
		"visitor token":       visitor,
		"agent token":         agent,
		"admin token":         admin,
		"KEK":                 strings.TrimSpace(string(kek)),
		"data key (hex)":      hex.EncodeToString(keys.Data[:]),
		"data key (base64)":   base64.StdEncoding.EncodeToString(keys.Data[:]),
		"pseudonym key (hex)": hex.EncodeToString(keys.Pseudonym[:]),
		"pseudonym key (b64)": base64.StdEncoding.EncodeToString(keys.Pseudonym[:]),
	}
	mu.Lock()
	for _, addr := range clientAddrs {
		secrets["client address "+addr] = addr
	}
	mu.Unlock()
	if len(clientAddrs) == 0 {
		t.Fatal("no client connection was recorded")
	}
	logsHoldNone(t, a, logs, secrets)
	if !strings.Contains(logs.String(), "parley started") {
		t.Fatal("the scenario logged nothing: the scan would prove nothing")
	}
	if hits := storeContains(t, filepath.Join(dir, "nats"), clientNet, userAgent, language); len(hits) > 0 {
		t.Errorf("the store holds the client's address, user agent or language in the clear: %v", hits)
	}
}

// headerTransport sets header on every request it sends through next.
type headerTransport struct {
	header http.Header
	next   http.RoundTripper
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.header {
		r.Header[k] = v
	}
	return h.next.RoundTrip(r)
}
