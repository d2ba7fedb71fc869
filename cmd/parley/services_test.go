package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/buspolicy"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/services/gateway"
	"github.com/parley-chat/parley/services/privacy"
)

// TestServicesAgainstExternalNATS runs each service as its own command, as
// a cluster deployment does: a NATS server with one user per service, the
// definitions applied by the admin (`parley streams apply`), then `parley
// privacy`, `chat`, `analytics` and `gateway`, each with its own
// credentials, and a conversation through the gateway.
func TestServicesAgainstExternalNATS(t *testing.T) {
	dir := t.TempDir()
	bus := startSplitBus(t, dir)
	natsURL := bus.userURL

	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"streams", "apply", "--nats-url", natsURL(buspolicy.Admin), "--replicas", "1"}, &out, &errOut); err != nil {
		t.Fatalf("parley streams apply: %v\n%s", err, errOut.String())
	}
	keyFile, auditKeyFile := splitKeys(t, dir)
	t.Setenv("PARLEY_KEK", strings.Repeat("ab", 32))
	httpAddr := freeAddr(t)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var logs syncBuffer
	commands := [][]string{
		{"privacy", "--nats-url", natsURL(buspolicy.Privacy), "--replicas", "1", "--audit-key-file", auditKeyFile, "--health-addr", "127.0.0.1:0"},
		{"chat", "--nats-url", natsURL(buspolicy.Chat), "--replicas", "1", "--health-addr", "127.0.0.1:0"},
		{"analytics", "--nats-url", natsURL(buspolicy.Analytics), "--health-addr", "127.0.0.1:0"},
		{"gateway", "--nats-url", natsURL(buspolicy.Gateway), "--replicas", "1", "--http-addr", httpAddr,
			"--signing-key-file", keyFile, "--default-tenant", "demo"},
	}
	errs := make([]error, len(commands))
	for i, args := range commands {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = run(ctx, args, &bytes.Buffer{}, &logs)
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("parley %s: %v", commands[i][0], err)
			}
		}
		if strings.Contains(logs.String(), "Permissions Violation") {
			t.Errorf("a service was refused by the bus:\n%s", logs.String())
		}
	})

	base := "http://" + httpAddr
	// Each service starts on its own; wait until the calls the gateway
	// makes are served, as an operator watches every deployment roll out.
	admin, err := nats.Connect(natsURL(buspolicy.Admin))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	natstest.Until(t, 30*time.Second, "the services answering pings", func() bool {
		return gateway.PingServices(t.Context(), admin) == nil
	})
	natstest.Until(t, 20*time.Second, "/readyz 200", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	converse(t, base, keyFile)
}

// converse has a visitor of tenant demo and an agent, whose token is
// signed with the key in keyFile, talk through the gateway at base, and
// checks the visitor reads both messages back.
func converse(t *testing.T, base, keyFile string) {
	t.Helper()
	_, visitor := newVisitor(t, base, "demo")
	key, err := auth.ReadKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := auth.NewSigner(key).Issue(auth.Principal{Tenant: "demo", ID: "alice", Role: auth.RoleAgent}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)["id"].(string)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", agent, map[string]any{"text": "hi, how can I help?"}, http.StatusCreated)
	msgs := mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", visitor, nil, http.StatusOK)["messages"].([]any)
	if len(msgs) != 2 {
		t.Errorf("transcript has %d messages, want 2", len(msgs))
	}
}

// splitKeys makes the gateway's signing key and privacy's audit key in
// dir, as an operator provisions them for split mode, and returns their
// files.
func splitKeys(t *testing.T, dir string) (signingKey, auditKey string) {
	t.Helper()
	signingKey = filepath.Join(dir, "signing-key.pem")
	if _, err := auth.LoadOrCreateKey(signingKey); err != nil {
		t.Fatal(err)
	}
	auditKey = filepath.Join(dir, privacy.AuditKeyFile)
	if _, err := privacy.LoadOrCreateAuditKey(auditKey); err != nil {
		t.Fatal(err)
	}
	return signingKey, auditKey
}

// splitBus is a NATS server with one user per service and an admin, as a
// cluster deployment has, each user's password also in a file under dir.
type splitBus struct {
	srv       *natsembed.Server
	passwords map[string]string
	dir       string
}

func startSplitBus(t *testing.T, dir string) *splitBus {
	t.Helper()
	return startSplitBusTLS(t, dir, nil)
}

// startSplitBusTLS is startSplitBus with the server's TLS configuration
// (natsembed.Options.TLS); nil means plain text.
func startSplitBusTLS(t *testing.T, dir string, cfg *tls.Config) *splitBus {
	t.Helper()
	b := &splitBus{passwords: map[string]string{}, dir: dir}
	for _, u := range append(buspolicy.Services(), buspolicy.Admin) {
		b.passwords[u] = rand.Text()
		if err := os.WriteFile(b.passwordFile(u), []byte(b.passwords[u]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	users, err := buspolicy.Users(b.passwords)
	if err != nil {
		t.Fatal(err)
	}
	b.srv, err = natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "nats"), Users: users, TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.srv.Close)
	return b
}

// passwordFile is where user's password is.
func (b *splitBus) passwordFile(user string) string {
	return filepath.Join(b.dir, user+".password")
}

// as is the flags of a command connecting to the server as user, its
// password in a file.
func (b *splitBus) as(user string) []string {
	return []string{"--nats-url", b.srv.ClientURL(), "--nats-user", user, "--nats-password-file", b.passwordFile(user)}
}

// userURL is the server's URL with user's name and password in it.
func (b *splitBus) userURL(user string) string {
	u, err := url.Parse(b.srv.ClientURL())
	if err != nil {
		panic(err)
	}
	u.User = url.UserPassword(user, b.passwords[user])
	return u.String()
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
