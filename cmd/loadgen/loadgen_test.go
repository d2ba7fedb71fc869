package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

func TestPaceIsOpenLoop(t *testing.T) {
	// One call blocks, as a post to a system that cannot keep up would if
	// it were made inline: the calls due meanwhile are made late, not
	// dropped or pushed back, and no call is made before it is due.
	const rate, d = 1000.0, 200 * time.Millisecond
	var at []time.Duration
	start := time.Now()
	n := pace(context.Background(), rate, d, func(i int) {
		at = append(at, time.Since(start))
		if i == 10 {
			time.Sleep(50 * time.Millisecond) // a slow call, the lateness under test
		}
	})
	if n != 200 || len(at) != 200 {
		t.Fatalf("pace(1000/s, 200ms) = %d, made %d calls, want 200", n, len(at))
	}
	for i, a := range at {
		if due := time.Duration(float64(i) / rate * float64(time.Second)); a < due {
			t.Errorf("call %d made at %v, before it was due at %v", i, a, due)
		}
	}
}

func TestPaceStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	n := pace(ctx, 100, time.Hour, func(int) {})
	if n > 100 {
		t.Errorf("pace stopped after 50ms at 100/s having fired %d times", n)
	}
}

func TestNonce(t *testing.T) {
	sent := time.Unix(1_700_000_000, 123_456_789)
	nonce := func(phase int) string { return string(appendNonce(nil, phase, sent)) }
	tests := []struct {
		name      string
		give      string
		wantPhase int
		wantSent  time.Time
		wantOK    bool
	}{
		{"padded", nonce(3) + "mmmm", 3, sent, true},
		{"bare", nonce(0), 0, sent, true},
		{"phase of two digits", nonce(11) + "m", 11, sent, true},
		{"not a timed message", "hello there", 0, time.Time{}, false},
		{"bad time", "lat 1 x mmmm", 0, time.Time{}, false},
		{"signed time", "lat 1 -5 mmmm", 0, time.Time{}, false},
		{"cut short", "lat 1 123", 0, time.Time{}, false},
		{"no phase", "lat  123 m", 0, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phase, got, ok := parseNonce([]byte(tt.give))
			if phase != tt.wantPhase || !got.Equal(tt.wantSent) || ok != tt.wantOK {
				t.Errorf("parseNonce(%q) = %d, %v, %v, want %d, %v, %v", tt.give, phase, got, ok, tt.wantPhase, tt.wantSent, tt.wantOK)
			}
		})
	}
}

func TestAppendMessageIsWhatJSONWrites(t *testing.T) {
	sent := time.Unix(1_700_000_000, 123_456_789)
	pad := strings.Repeat("m", 472)
	want, err := json.Marshal(map[string]string{"text": string(appendNonce(nil, 7, sent)) + pad})
	if err != nil {
		t.Fatal(err)
	}
	// Appended to a buffer holding an earlier body, as a poster reuses it.
	old := appendMessage(nil, 6, sent.Add(-time.Hour), pad)
	if got := appendMessage(old[:0], 7, sent, pad); string(got) != string(want) {
		t.Errorf("appendMessage() = %s, want %s", got, want)
	}
}

func TestTimedFrame(t *testing.T) {
	sent := time.Unix(1_700_000_000, 123_456_789)
	text := string(appendNonce(nil, 5, sent)) + "mmmm"
	frame := func(typ string, message any) string {
		b, err := json.Marshal(map[string]any{"type": typ, "seq": 4821, "conversation_id": "c1", "message": message})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name      string
		give      string
		wantPhase int
		wantOK    bool
	}{
		{"as the gateway writes it", `{"type":"message","seq":4821,"conversation_id":"c1","message":{"id":"m1",` +
			`"author":{"role":"visitor","id":"v1"},"text":"` + text + `","at":"2026-01-02T15:04:05Z"}}`, 5, true},
		{"fields in another order", frame("message", map[string]any{"text": text, "author": map[string]string{"role": "visitor"}}), 5, true},
		{"a name that quotes a text field", frame("message", map[string]any{
			"author": map[string]string{"name": `"text":"lat 9 1 `}, "text": text,
		}), 5, true},
		{"untimed message", frame("message", map[string]any{"text": "hello"}), 0, false},
		{"withdrawn, no text", frame("withdrawn", map[string]any{"id": "m1", "withdrawn": true}), 0, false},
		{"opened", frame("opened", nil), 0, false},
		{"typing", `{"type":"typing","conversation_id":"c1","author":{"role":"agent","id":"a1"}}`, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phase, got, ok := timedFrame([]byte(tt.give))
			if ok != tt.wantOK || phase != tt.wantPhase || ok && !got.Equal(sent) {
				t.Errorf("timedFrame(%s) = %d, %v, %v, want %d, %v", tt.give, phase, got, ok, tt.wantPhase, tt.wantOK)
			}
		})
	}
}

// TestPubAcked checks pubAcked against the answers of a real JetStream
// server, the same request rawPublish makes: its acks, plain and of a
// duplicate, are acks of their stream only, and its refusal, which names
// the stream too, is none. A server whose answers change shape fails it.
func TestPubAcked(t *testing.T) {
	nc, js := natstest.Connect(t, natstest.Start(t, ""))
	ctx := t.Context()
	for _, cfg := range []jetstream.StreamConfig{
		// One message a subject, and no more: the second is refused.
		{Name: rawStream, Subjects: []string{"rawbench.>"}, MaxMsgsPerSubject: 1, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true},
		{Name: rawStream + "2", Subjects: []string{"rawbench2.>"}},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	answer := func(subject, msgID string) []byte {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Data = []byte("m")
		if msgID != "" {
			m.Header.Set(jetstream.MsgIDHeader, msgID)
		}
		ack, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			t.Fatalf("publish to %s: %v", subject, err)
		}
		return ack.Data
	}
	// In this order: each answer depends on what came before.
	tests := []struct {
		name        string
		subject, id string
		stream      string
		want        bool
		wantRefused bool // the answer is an error, not an ack
	}{
		{"stored", "rawbench.0", "", rawStream, true, false},
		{"stored with an id", "rawbench.1", "a", rawStream, true, false},
		{"a duplicate", "rawbench.1", "a", rawStream, true, false},
		{"refused", "rawbench.0", "", rawStream, false, true},
		{"stored in a stream whose name begins as asked", "rawbench2.0", "", rawStream, false, false},
		{"stored in another stream", "rawbench2.1", "", "OTHER", false, false},
	}
	for _, tt := range tests {
		got := answer(tt.subject, tt.id)
		var parsed struct {
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(got, &parsed); err != nil {
			t.Fatalf("%s: answer %s: %v", tt.name, got, err)
		}
		if refused := parsed.Error != nil; refused != tt.wantRefused {
			t.Fatalf("%s: answer %s, want refused %v", tt.name, got, tt.wantRefused)
		}
		if ok := pubAcked(got, tt.stream); ok != tt.want {
			t.Errorf("%s: pubAcked(%s, %s) = %v, want %v", tt.name, got, tt.stream, ok, tt.want)
		}
	}
}

// TestPubAckedShapes checks pubAcked against answers an embedded server
// does not give: an ack of a server in a JetStream domain (as
// nats-server's server/stream.go writes it) and malformed ones.
func TestPubAckedShapes(t *testing.T) {
	tests := []struct {
		give string
		want bool
	}{
		{`{"stream":"RAWBENCH","domain":"hub","seq":42}`, true},
		{`{"stream":"RAWBENCH"}`, false},
		{``, false},
	}
	for _, tt := range tests {
		if got := pubAcked([]byte(tt.give), "RAWBENCH"); got != tt.want {
			t.Errorf("pubAcked(%s) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

func TestParseProm(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 2042
go_memstats_heap_inuse_bytes 3.3554432e+07
parley_gateway_live_sessions 2000 1700000000000
parley_gateway_http_requests_total{route="x",code="200"} 5
`
	got, err := parseProm(strings.NewReader(text), []string{metricGoroutines, metricHeap, metricSessions, metricStacks})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{metricGoroutines: 2042, metricHeap: 33554432, metricSessions: 2000}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseProm() mismatch (-want +got):\n%s", diff)
	}
}

func TestReplaceSection(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    string
		wantErr bool
	}{
		{
			name: "keeps the prose around",
			give: "# B\nprose\n" + startMarker + "\nold\n" + endMarker + "\nafter\n",
			want: "# B\nprose\n" + startMarker + "\nnew\n" + endMarker + "\nafter\n",
		},
		{name: "no markers", give: "# B\n", wantErr: true},
		{name: "markers reversed", give: endMarker + "\n" + startMarker + "\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := replaceSection([]byte(tt.give), "new\n")
			if (err != nil) != tt.wantErr {
				t.Fatalf("replaceSection() error = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, string(got)); !tt.wantErr && diff != "" {
				t.Errorf("replaceSection() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestThousands(t *testing.T) {
	tests := []struct {
		give int
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {15000, "15,000"}, {100000, "100,000"}, {1234567, "1,234,567"}, {-4200, "-4,200"}}
	for _, tt := range tests {
		if got := thousands(tt.give); got != tt.want {
			t.Errorf("thousands(%d) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(101-i)*time.Millisecond)
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}}
	for _, tt := range tests {
		if got := percentile(d, tt.p); got != tt.want {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil, 50) = %v, want 0", got)
	}
}

func TestParseList(t *testing.T) {
	got, err := parseList("10, 10000,100000", strconv.Atoi)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{10, 10000, 100000}, got); diff != "" {
		t.Errorf("parseList() mismatch (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "10,x", "0", "-5"} {
		if _, err := parseList(bad, strconv.Atoi); err == nil {
			t.Errorf("parseList(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseSizes(t *testing.T) {
	tests := []struct {
		give    string
		want    []int
		wantErr bool
	}{
		{give: "0,300000,1000000", want: []int{0, 300000, 1000000}},
		{give: "off", want: nil},
		{give: "5000", want: []int{5000}},
		{give: "10,10", wantErr: true},
		{give: "10,5", wantErr: true},
		{give: "-1", wantErr: true},
		{give: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := parseSizes(tt.give)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseSizes(%q) error = %v, want error %v", tt.give, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseSizes(%q) mismatch (-want +got):\n%s", tt.give, diff)
			}
		})
	}
}

func TestExportMemorySummary(t *testing.T) {
	m := exportMemory{
		RSSBefore: 400 << 20, PeakRSS: 442 << 20, HWMReset: true, ExportBytes: 48 << 20, Elapsed: 14 * time.Second,
		HeapBefore: goHeap{InUse: 272 << 20, Resident: 412 << 20, Goal: 429 << 20, GCs: 100},
		HeapPeak:   goHeap{InUse: 430 << 20, Resident: 454 << 20, Goal: 429 << 20, GCs: 116},
	}
	want := "400.0 MiB before, peak (VmHWM) 442.0 MiB: +42.0 MiB; Go heap resident 412.0 → 454.0 MiB most (+42.0), " +
		"in use 272.0 → 430.0 MiB most, goal 429.0 → 429.0 MiB most, 16 collections; 48.0 MiB each export, all in 14s"
	if got := m.summary(); got != want {
		t.Errorf("summary() = %q, want %q", got, want)
	}
}
