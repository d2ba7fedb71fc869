package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// testAll runs `parley all` in-process on a random port with its data in
// dir, without ClickHouse, and returns once it is ready.
func testAll(t *testing.T, dir string) (*allInOne, *syncBuffer) {
	t.Helper()
	return testAllWith(t, dir, func(*allConfig) {})
}

// testAllWith is testAll with its configuration changed by set.
func testAllWith(t *testing.T, dir string, set func(*allConfig)) (*allInOne, *syncBuffer) {
	t.Helper()
	cfg := allConfig{HTTPAddr: "127.0.0.1:0", DataDir: dir, ClickHouse: "off"}
	set(&cfg)
	a, logs := startAllForTest(t, cfg)
	waitReady(t, a.URL())
	return a, logs
}

// localWebhooks lets the bots and integrations of a test have webhooks on
// this host, where its receivers are.
func localWebhooks(c *allConfig) { c.PrivateWebhooks = true }

// visitorScene is `parley all` in a temp dir with a visitor of tenant demo
// and alice, an agent of it: where the tests of what becomes of a visitor's
// data begin.
type visitorScene struct {
	dir       string
	all       *allInOne
	logs      *syncBuffer
	base      string
	js        jetstream.JetStream // the admin's
	visitorID string
	visitor   string // the visitor's token
	alice     string // alice's token
}

func startVisitorScene(t *testing.T) visitorScene {
	t.Helper()
	sc := visitorScene{dir: t.TempDir()}
	sc.all, sc.logs = testAll(t, sc.dir)
	sc.base = sc.all.URL()
	_, sc.js = adminConn(t, sc.all)
	sc.visitorID, sc.visitor = newVisitor(t, sc.base, "demo")
	sc.alice = staffToken(t, sc.dir, "demo", "agent", "alice")
	return sc
}

// startAllForTest runs `parley all` in-process with cfg, its logs in the
// returned buffer, and closes it when the test ends.
func startAllForTest(t *testing.T, cfg allConfig) (*allInOne, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := startAll(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("startAll() error = %v", err)
	}
	// Close is idempotent, so a test may stop the process itself first.
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("Close() error = %v", err)
		}
	})
	return a, logs
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	natstest.Until(t, 15*time.Second, "parley ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
		// The chat service answers only once its read models are rebuilt.
		status, _ := call(t, base, "GET", "/v1/tenants", "", nil)
		return status == http.StatusUnauthorized
	})
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// call sends a JSON request and decodes a JSON response into a map.
func call(t testing.TB, base, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	resp := send(t, base, method, path, token, r)
	defer resp.Body.Close()
	var out map[string]any
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, path, data)
		}
	}
	return resp.StatusCode, out
}

func send(t testing.TB, base, method, path, token string, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := contractClient(t).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func mustCall(t testing.TB, base, method, path, token string, body any, want int) map[string]any {
	t.Helper()
	status, out := call(t, base, method, path, token, body)
	if status != want {
		t.Fatalf("%s %s = %d %v, want %d", method, path, status, out, want)
	}
	return out
}

// staffToken issues a token with the CLI, as an operator would.
func staffToken(t testing.TB, dataDir, tenant, role, id string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"token", "--data-dir", dataDir, "--tenant", tenant, "--role", role, "--id", id}, &out, &errOut)
	if err != nil {
		t.Fatalf("parley token: %v (%s)", err, errOut.String())
	}
	return strings.TrimSpace(out.String())
}

// newVisitor registers a visitor of tenant consenting to analytics only.
func newVisitor(t testing.TB, base, tenant string) (id, token string) {
	t.Helper()
	out := register(t, base, tenant, map[string]bool{"analytics": true, "network_data": false, "ai": false})
	return out["visitor_id"].(string), out["token"].(string)
}

// register registers a visitor of tenant with consent under the notice
// 2026-01, and returns the answer: visitor_id, token, access_token,
// refresh_token, expires_in.
func register(t testing.TB, base, tenant string, consent map[string]bool) map[string]any {
	t.Helper()
	return mustCall(t, base, "POST", "/v1/tenants/"+tenant+"/visitors", "", map[string]any{
		"consent": consent, "notice_version": "2026-01",
	}, http.StatusCreated)
}

// marker returns a unique random string to look for in stored bytes.
func marker(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "MARKER-" + hex.EncodeToString(b)
}

type liveEvent struct {
	Type           string `json:"type"`
	Seq            uint64 `json:"seq"`
	ConversationID string `json:"conversation_id"`
	// Visitor is who was erased, on an erased notice.
	Visitor string `json:"visitor"`
	// Assignee is who the conversation is assigned to, on an assigned event.
	Assignee string `json:"assignee"`
	// At is when it happened, on a handed_off event.
	At time.Time `json:"at"`
	// Author is who is typing, on a typing event.
	Author struct {
		Role string `json:"role"`
		ID   string `json:"id"`
	} `json:"author"`
	Message struct {
		ID     string `json:"id"`
		Text   string `json:"text"`
		Author struct {
			Role string `json:"role"`
			ID   string `json:"id"`
		} `json:"author"`
	} `json:"message"`
}

// liveClient is an open /v1/stream WebSocket collecting the events it
// receives, and how the server closed it ("" until it did).
type liveClient struct {
	conn   *websocket.Conn
	mu     sync.Mutex
	events []liveEvent
	closed string
}

// dialStream opens the live stream as token with query ("since=0"), closed
// when the test ends; on a refusal it returns the answer.
func dialStream(t *testing.T, base, token, query string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(base, "http") + "/v1/stream?" + query
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err == nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

// openStream opens the live stream as token and collects its events until
// the test ends.
func openStream(t *testing.T, base, token string) *liveClient {
	t.Helper()
	return openStreamWith(t, base, token, "")
}

// openStreamWith is openStream with query ("since=0").
func openStreamWith(t *testing.T, base, token, query string) *liveClient {
	t.Helper()
	conn, _, err := dialStream(t, base, token, query)
	if err != nil {
		t.Fatalf("dial the stream as %s: %v", query, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lc := &liveClient{conn: conn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				var ce websocket.CloseError
				if errors.As(err, &ce) {
					lc.mu.Lock()
					lc.closed = fmt.Sprintf("%d %s", ce.Code, ce.Reason)
					lc.mu.Unlock()
				}
				return
			}
			var e liveEvent
			if json.Unmarshal(data, &e) == nil {
				lc.mu.Lock()
				lc.events = append(lc.events, e)
				lc.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		conn.CloseNow()
		<-done
	})
	return lc
}

// liveWithin bounds the wait for a live event: generous, since CI runs every
// module's tests at once under -race. How fast delivery is, is measured by
// `make bench`, not here.
const liveWithin = 10 * time.Second

// waitMessage waits for a live message event with text and returns when it came.
func (lc *liveClient) waitMessage(t *testing.T, text string, within time.Duration) {
	t.Helper()
	natstest.Until(t, within, fmt.Sprintf("live message %q", text), func() bool { return lc.has(text) })
}

func (lc *liveClient) has(text string) bool {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	for _, e := range lc.events {
		if e.Type == "message" && e.Message.Text == text {
			return true
		}
	}
	return false
}

// storeContains reports the files under dir whose bytes contain any needle.
func storeContains(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(data, []byte(n)) {
				hits = append(hits, path+": "+n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func TestConversationEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a, logs := testAll(t, dir)
	base := a.URL()
	_, visitor := newVisitor(t, base, "demo")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	otherAgent := staffToken(t, dir, "demo", "agent", "bob")
	supervisor := staffToken(t, dir, "demo", "supervisor", "sue")

	agentLive := openStream(t, base, agent)
	visitorLive := openStream(t, base, visitor)
	_, strangerToken := newVisitor(t, base, "demo")
	strangerLive := openStream(t, base, strangerToken)

	hello, reply, thanks := marker(t), marker(t), marker(t)
	conv := mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": hello}, http.StatusCreated)["id"].(string)
	agentLive.waitMessage(t, hello, liveWithin)

	start := time.Now()
	posted := mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", agent, map[string]any{"text": reply}, http.StatusCreated)
	for _, field := range []string{"id", "seq", "at"} {
		if posted[field] == nil {
			t.Errorf("POST messages response lacks %q: %v", field, posted)
		}
	}
	visitorLive.waitMessage(t, reply, liveWithin)
	t.Logf("agent reply reached the visitor's WebSocket in %v", time.Since(start))
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor, map[string]any{"text": thanks}, http.StatusCreated)
	agentLive.waitMessage(t, thanks, liveWithin)

	// The agent took the conversation by answering: another agent no longer sees it.
	list := mustCall(t, base, "GET", "/v1/conversations", otherAgent, nil, http.StatusOK)
	if n := len(list["conversations"].([]any)); n != 0 {
		t.Errorf("another agent lists %d conversations, want 0", n)
	}
	mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", otherAgent, nil, http.StatusForbidden)

	for _, tok := range []string{visitor, agent, supervisor} {
		msgs := mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", tok, nil, http.StatusOK)["messages"].([]any)
		var texts []string
		for _, m := range msgs {
			texts = append(texts, m.(map[string]any)["text"].(string))
		}
		if got, want := strings.Join(texts, ","), strings.Join([]string{hello, reply, thanks}, ","); got != want {
			t.Errorf("transcript = %s, want %s", got, want)
		}
	}
	list = mustCall(t, base, "GET", "/v1/conversations", visitor, nil, http.StatusOK)
	convs := list["conversations"].([]any)
	if len(convs) != 1 || convs[0].(map[string]any)["assignee"] != "alice" || convs[0].(map[string]any)["status"] != "open" {
		t.Errorf("visitor's conversations = %v, want one open, assigned to alice", convs)
	}

	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/rating", visitor, map[string]any{"score": 5}, http.StatusConflict)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/close", agent, nil, http.StatusOK)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", visitor, map[string]any{"text": "late"}, http.StatusConflict)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/rating", visitor, map[string]any{"score": 5}, http.StatusOK)
	mustCall(t, base, "POST", "/v1/conversations/"+conv+"/rating", visitor, map[string]any{"score": 4}, http.StatusConflict)

	if strangerLive.has(hello) || strangerLive.has(reply) {
		t.Error("another visitor received this conversation's messages")
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// The scan sees what the store holds in clear: the conversation's
	// id, in its events' subjects.
	if hits := storeContains(t, filepath.Join(dir, "nats"), conv); len(hits) == 0 {
		t.Fatalf("the scan finds not even the conversation's id %s in the raw JetStream files: it reads no store", conv)
	}
	if hits := storeContains(t, filepath.Join(dir, "nats"), hello, reply, thanks); len(hits) > 0 {
		t.Errorf("raw JetStream files hold message text: %v", hits)
	}
	if hits := storeContains(t, dir, hello, reply, thanks); len(hits) > 0 {
		t.Errorf("data dir holds message text: %v", hits)
	}
	for _, secret := range []string{hello, reply, thanks, visitor, agent} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs hold a message text or token")
		}
	}
}
