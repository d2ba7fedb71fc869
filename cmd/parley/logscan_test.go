package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/parley-chat/parley/pkg/personkey"
	"github.com/parley-chat/parley/pkg/rpc"
)

// TestLogsHoldNoSecrets runs a whole scenario — conversation, live stream,
// consent change, export, settings, erasure — with debug logging, then scans
// every log line for message texts, tokens, keys and the client's address.
func TestLogsHoldNoSecrets(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	base := a.URL()

	// Record the client side of every connection: the "visitor IP" here.
	var mu sync.Mutex
	var clientAddrs []string
	dialer := &net.Dialer{}
	http.DefaultClient = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				clientAddrs = append(clientAddrs, c.LocalAddr().String())
				mu.Unlock()
			}
			return c, err
		},
	}}
	t.Cleanup(func() { http.DefaultClient = &http.Client{} })

	visitorID, visitor := newVisitor(t, base, "demo")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	admin := staffToken(t, dir, "demo", "admin", "ada")
	live := openStream(t, base, agent)
	hello, reply := marker(t), marker(t)
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": hello}, http.StatusCreated)["id"].(string)
	live.waitMessage(t, hello, liveWithin)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", agent, map[string]any{"text": reply}, http.StatusCreated)
	mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", admin, nil, http.StatusOK)
	mustCall(t, base, "PUT", "/v1/me/consent", visitor, map[string]any{"analytics": false, "network_data": false, "ai": false}, http.StatusOK)
	mustCall(t, base, "GET", "/v1/me/export", visitor, nil, http.StatusOK)
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
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	secrets := map[string]string{
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
	text := logs.String()
	if !strings.Contains(text, "parley started") {
		t.Fatal("the scenario logged nothing: the scan would prove nothing")
	}
	for what, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("the logs hold the %s", what)
		}
	}
}
