package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/chserver"
	"github.com/parley-chat/parley/pkg/chserver/chtest"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// testAllWithClickHouse is testAll with analytics on: facts go to the
// ClickHouse server ch.
func testAllWithClickHouse(t *testing.T, dir string, ch *chserver.Server) *allInOne {
	t.Helper()
	a, _ := startAllForTest(t, allConfig{HTTPAddr: "127.0.0.1:0", DataDir: dir, ClickHouse: ch.DSN()})
	waitReady(t, a.URL())
	return a
}

// chQuery runs q over ClickHouse's HTTP interface as the user "default":
// the analysts' user reads none of facts (services/analytics/internal/clickhouse,
// TestAnalystReadsOnlySuppressingViews).
func chQuery(t *testing.T, ch *chserver.Server, q string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + ch.HTTPAddr() + "/?user=default&query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s %v", q, resp.StatusCode, body, err)
	}
	return strings.TrimSpace(string(body))
}

// metricPoint is a point of GET /v1/metrics/{name}.
type metricPoint struct {
	value *float64
	count *float64
}

// metric returns the single point of a metric over today (UTC).
func metric(t *testing.T, base, token, name string, day time.Time) (metricPoint, bool) {
	t.Helper()
	q := url.Values{"from": {day.Format(time.RFC3339)}, "to": {day.Add(24 * time.Hour).Format(time.RFC3339)}, "interval": {"day"}}
	out := mustCall(t, base, "GET", "/v1/metrics/"+name+"?"+q.Encode(), token, nil, http.StatusOK)
	points := out["points"].([]any)
	if len(points) == 0 {
		return metricPoint{}, false
	}
	if len(points) != 1 {
		t.Fatalf("%s has %d points in a day, want 1: %v", name, len(points), out)
	}
	p := points[0].(map[string]any)
	var mp metricPoint
	if v, ok := p["value"].(float64); ok {
		mp.value = &v
	}
	if c, ok := p["count"].(float64); ok {
		mp.count = &c
	}
	return mp, true
}

// conversation is one scripted conversation and what it should count.
type conversation struct {
	visitor, token, id string
	openedAt           time.Time
	firstResponse      time.Duration
	closedWithin       [2]time.Duration // resolution lies between the two
	score              int
}

func messageTimes(t *testing.T, base, token, conv string) []time.Time {
	t.Helper()
	msgs := mustCall(t, base, "GET", "/v1/conversations/"+conv+"/messages", token, nil, http.StatusOK)["messages"].([]any)
	var out []time.Time
	for _, m := range msgs {
		at, err := time.Parse(time.RFC3339Nano, m.(map[string]any)["at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, at)
	}
	return out
}

// TestAnalyticsEndToEnd runs a scripted scenario through `parley all` with a
// real ClickHouse and compares the metrics API with its ground truth.
func TestAnalyticsEndToEnd(t *testing.T) {
	if now := time.Now().UTC(); now.Add(2*time.Minute).Day() != now.Day() {
		t.Skip("too close to midnight UTC: the scenario would span two days")
	}
	ch := chtest.Start(t)
	dir := t.TempDir()
	a := testAllWithClickHouse(t, dir, ch)
	base := a.URL()
	agent := staffToken(t, dir, "demo", "agent", "alice")
	analyst := staffToken(t, dir, "demo", "analyst", "ann")
	day := time.Now().UTC().Truncate(24 * time.Hour)
	var texts []string
	say := func() string {
		m := marker(t)
		texts = append(texts, m)
		return m
	}

	// Six visitors who consent, each: open, agent reply, visitor reply,
	// close, rate.
	var convs []conversation
	for i := range 6 {
		var c conversation
		c.visitor, c.token = newVisitor(t, base, "demo")
		c.id = mustCall(t, base, "POST", "/v1/conversations", c.token, map[string]any{"text": say()}, http.StatusCreated)["id"].(string)
		mustCall(t, base, "POST", "/v1/conversations/"+c.id+"/messages", agent, map[string]any{"text": say()}, http.StatusCreated)
		mustCall(t, base, "POST", "/v1/conversations/"+c.id+"/messages", c.token, map[string]any{"text": say()}, http.StatusCreated)
		at := messageTimes(t, base, c.token, c.id)
		c.openedAt, c.firstResponse = at[0], at[1].Sub(at[0])
		before := time.Now()
		mustCall(t, base, "POST", "/v1/conversations/"+c.id+"/close", agent, nil, http.StatusOK)
		c.closedWithin = [2]time.Duration{before.Sub(c.openedAt), time.Since(c.openedAt)}
		c.score = 1 + i%5
		mustCall(t, base, "POST", "/v1/conversations/"+c.id+"/rating", c.token, map[string]any{"score": c.score}, http.StatusOK)
		convs = append(convs, c)
	}
	// A visitor who refused analytics.
	refuser := visitorWith(t, base, false)
	refusedConv := mustCall(t, base, "POST", "/v1/conversations", refuser["token"].(string), map[string]any{"text": say()}, http.StatusCreated)["id"].(string)
	mustCall(t, base, "POST", "/v1/conversations/"+refusedConv+"/messages", agent, map[string]any{"text": say()}, http.StatusCreated)
	// A visitor who withdraws consent after opening: nothing after counts.
	withdrawer, withdrawerToken := newVisitor(t, base, "demo")
	withdrawnConv := mustCall(t, base, "POST", "/v1/conversations", withdrawerToken, map[string]any{"text": say()}, http.StatusCreated)["id"].(string)
	mustCall(t, base, "PUT", "/v1/me/consent", withdrawerToken, map[string]bool{"analytics": false, "network_data": false, "ai": false}, http.StatusOK)
	mustCall(t, base, "POST", "/v1/conversations/"+withdrawnConv+"/messages", agent, map[string]any{"text": say()}, http.StatusCreated)
	mustCall(t, base, "POST", "/v1/conversations/"+withdrawnConv+"/close", agent, nil, http.StatusOK)

	// Ground truth: 6 + 1 conversations, 6×3 + 1 messages, the rest from
	// the six consenting conversations only.
	var sumFirst, sumScore, minClose, maxClose float64
	for _, c := range convs {
		sumFirst += c.firstResponse.Seconds()
		sumScore += float64(c.score)
		minClose += c.closedWithin[0].Seconds()
		maxClose += c.closedWithin[1].Seconds()
	}
	n := float64(len(convs))
	const facts = 7 + 19 + 6 + 6 + 6
	natstest.Until(t, 20*time.Second, "every fact in ClickHouse", func() bool {
		return chQuery(t, ch, "SELECT count() FROM facts FINAL") == fmt.Sprint(facts)
	})

	tests := []struct {
		name      string
		wantCount float64
		wantValue float64
		tolerance float64
	}{
		{name: "conversations", wantCount: 7, wantValue: 7},
		{name: "messages", wantCount: 19, wantValue: 19},
		{name: "first_response_seconds", wantCount: n, wantValue: sumFirst / n, tolerance: 0.002},
		{name: "resolution_seconds", wantCount: n, wantValue: (minClose + maxClose) / 2 / n, tolerance: (maxClose-minClose)/2/n + 0.002},
		{name: "csat", wantCount: n, wantValue: sumScore / n},
	}
	for _, tt := range tests {
		got, ok := metric(t, base, analyst, tt.name, day)
		if !ok || got.value == nil || got.count == nil {
			t.Errorf("%s = %+v (found %v), want a point", tt.name, got, ok)
			continue
		}
		if *got.count != tt.wantCount || math.Abs(*got.value-tt.wantValue) > tt.tolerance+1e-9 {
			t.Errorf("%s = value %v count %v, want value %v (±%v) count %v", tt.name, *got.value, *got.count, tt.wantValue, tt.tolerance, tt.wantCount)
		}
	}
	mustCall(t, base, "GET", "/v1/metrics/conversations?from=yesterday&to=now", analyst, nil, http.StatusUnprocessableEntity)
	mustCall(t, base, "GET", "/v1/metrics/conversations?from="+day.Format(time.RFC3339)+"&to="+day.Add(time.Hour).Format(time.RFC3339)+"&interval=week", analyst, nil, http.StatusUnprocessableEntity)
	mustCall(t, base, "GET", "/v1/metrics/visitors?from="+day.Format(time.RFC3339)+"&to="+day.Add(time.Hour).Format(time.RFC3339), analyst, nil, http.StatusNotFound)
	mustCall(t, base, "GET", "/v1/metrics/csat?from="+day.Format(time.RFC3339)+"&to="+day.Add(time.Hour).Format(time.RFC3339), agent, nil, http.StatusForbidden)

	// No column of any row holds an id or a text.
	rows := chQuery(t, ch, "SELECT * FROM facts FORMAT TabSeparated")
	secrets := append([]string{"alice", refuser["visitor_id"].(string), withdrawer, refusedConv, withdrawnConv}, texts...)
	for _, c := range convs {
		secrets = append(secrets, c.visitor, c.id)
	}
	for _, s := range secrets {
		if strings.Contains(rows, s) {
			t.Errorf("a row of facts holds %q", s)
		}
	}
	// The views for analysts' tools agree.
	if got := chQuery(t, ch, "SELECT conversations FROM daily_conversations WHERE tenant = 'demo'"); got != "7" {
		t.Errorf("daily_conversations = %q, want 7", got)
	}

	// Erasing a visitor deletes their rows and says how many.
	erasure := mustCall(t, base, "DELETE", "/v1/me", convs[0].token, nil, http.StatusAccepted)
	status := mustCall(t, base, "GET", "/v1/erasures/"+erasure["erasure_id"].(string), convs[0].token, nil, http.StatusOK)
	counts, _ := status["report"].(map[string]any)["counts"].(map[string]any)
	if counts["analytics_rows_deleted"] != 7.0 {
		t.Errorf("erasure report counts = %v, want analytics_rows_deleted 7", counts)
	}
	if got := chQuery(t, ch, "SELECT count() FROM facts"); got != fmt.Sprint(facts-7) {
		t.Errorf("rows after erasure = %s, want %d", got, facts-7)
	}
	// Five visitors are left with first responses: still shown; with one
	// more gone the group is too small and the point is suppressed.
	erasure = mustCall(t, base, "DELETE", "/v1/me", convs[1].token, nil, http.StatusAccepted)
	natstest.Until(t, 10*time.Second, "the erased visitor's facts deleted from ClickHouse", func() bool {
		return chQuery(t, ch, "SELECT count() FROM facts") == fmt.Sprint(facts-14)
	})
	if got, ok := metric(t, base, analyst, "csat", day); !ok || got.value != nil || got.count != nil {
		t.Errorf("csat of 4 visitors = %+v, want value and count null", got)
	}
	if got, ok := metric(t, base, analyst, "conversations", day); !ok || got.value == nil || *got.value != 5 {
		t.Errorf("conversations of 5 visitors = %+v, want 5", got)
	}
	// A tenant may ask for larger groups, never smaller ones.
	admin := staffToken(t, dir, "demo", "admin", "ada")
	mustCall(t, base, "PUT", "/v1/settings", admin, map[string]any{"retention_days": 365, "collect_network_data": false, "min_group_size": 3}, http.StatusUnprocessableEntity)
	mustCall(t, base, "PUT", "/v1/settings", admin, map[string]any{"retention_days": 365, "collect_network_data": false, "min_group_size": 6}, http.StatusOK)
	// The gateway reads settings from its mirror of SETTINGS, which the
	// change reaches a moment after the PUT is answered.
	natstest.Until(t, 10*time.Second, "conversations suppressed under min_group_size 6", func() bool {
		got, ok := metric(t, base, analyst, "conversations", day)
		return ok && got.value == nil
	})
}

// TestAutoWithoutClickHouseIsNotReady runs `parley all --clickhouse auto`
// where no ClickHouse is installed: the chat works, /readyz says analytics
// is not ready, and `parley demo` seeds the chat and says why the
// dashboard stays empty.
func TestAutoWithoutClickHouseIsNotReady(t *testing.T) {
	dir := t.TempDir()
	a, logs := startAllForTest(t, allConfig{
		HTTPAddr:         "127.0.0.1:0",
		DataDir:          dir,
		ClickHouse:       "auto",
		ClickHouseBinary: "no-such-clickhouse-server",
	})
	base := a.URL()
	natstest.Until(t, 15*time.Second, "the chat service answering", func() bool {
		status, _ := call(t, base, "GET", "/v1/tenants", "", nil)
		return status == http.StatusUnauthorized
	})
	_, visitor := newVisitor(t, base, "demo")
	mustCall(t, base, "POST", "/v1/conversations", visitor, map[string]any{"text": "hello"}, http.StatusCreated)

	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("GET /readyz = %d %s, want 503 application/problem+json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(logs.String(), "analytics not ready") {
		t.Errorf("logs do not say why Parley is not ready:\n%s", logs.String())
	}

	var out, progress bytes.Buffer
	if err := run(t.Context(), []string{"demo", "--data-dir", dir, "--gateway", base, "--visitors", "5"}, &out, &progress); err != nil {
		t.Fatalf("parley demo without ClickHouse: %v\n%s", err, progress.String())
	}
	for _, want := range []string{"its analytics is not", "visitor 5/5:", "analytics is not available", "install clickhouse-server"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("parley demo's progress does not say %q:\n%s", want, progress.String())
		}
	}
	agent := staffToken(t, dir, "demo", "agent", "alice")
	if n := len(mustCall(t, base, "GET", "/v1/conversations?status=closed", agent, nil, http.StatusOK)["conversations"].([]any)); n != 5 {
		t.Errorf("after parley demo alice lists %d closed conversations, want 5", n)
	}
}
