package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/analyticsapi"
	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// trainingExport is a training export as a client reads it: its message
// lines and its manifest, checked to be whole.
type trainingExport struct {
	body     string
	messages []trainingLine
	manifest trainingLine
}

type trainingLine struct {
	Type         string   `json:"type"`
	Conversation string   `json:"conversation"`
	Visitor      string   `json:"visitor"`
	Role         string   `json:"role"`
	Text         string   `json:"text"`
	ExportID     string   `json:"export_id"`
	Messages     int      `json:"messages"`
	Visitors     []string `json:"visitors"`
}

// trainingKeys are the keys of each type of line, sorted: a key added to
// either (a time, an id) fails the test, as guarantee 15 allows none.
var trainingKeys = map[string][]string{
	"message":  {"conversation", "role", "text", "type", "visitor"},
	"manifest": {"export_id", "messages", "type", "visitors"},
}

// getTrainingExport reads GET /v1/training-export as token and checks what
// a client must to know it is whole: every line parses, the last alone is
// the manifest, and it counts the message lines before it; and that every
// line holds the keys of its type and no other.
func getTrainingExport(t *testing.T, base, token string) trainingExport {
	t.Helper()
	resp := send(t, base, "GET", "/v1/training-export", token, nil)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("GET /v1/training-export = %d %s %.300s, want 200 application/x-ndjson", resp.StatusCode, resp.Header.Get("Content-Type"), data)
	}
	// Streamed: flushed page by page, so no length is known up front.
	if resp.ContentLength != -1 {
		t.Errorf("training export with Content-Length %d, want it streamed (chunked)", resp.ContentLength)
	}
	ex := trainingExport{body: string(data)}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	var lines []trainingLine
	for sc.Scan() {
		var l trainingLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d of the training export: %v", len(lines)+1, err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &fields); err != nil {
			t.Fatalf("line %d of the training export: %v", len(lines)+1, err)
		}
		if got, want := slices.Sorted(maps.Keys(fields)), trainingKeys[l.Type]; !slices.Equal(got, want) {
			t.Fatalf("line %d of the training export has keys %v, want those of a %q line, %v", len(lines)+1, got, l.Type, want)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 || !strings.HasSuffix(ex.body, "\n") {
		t.Fatalf("training export ends without its manifest line: %.300q", ex.body)
	}
	ex.messages, ex.manifest = lines[:len(lines)-1], lines[len(lines)-1]
	if ex.manifest.Type != "manifest" || ex.manifest.Messages != len(ex.messages) || ex.manifest.ExportID == "" {
		t.Fatalf("manifest = %+v after %d message lines, want type manifest counting them", ex.manifest, len(ex.messages))
	}
	for i, l := range ex.messages {
		if l.Type != "message" {
			t.Fatalf("line %d type = %q, want message (only the last line is the manifest)", i+1, l.Type)
		}
	}
	return ex
}

// line returns the message line holding mark, and whether there is one.
func (ex trainingExport) line(mark string) (trainingLine, bool) {
	for _, l := range ex.messages {
		if strings.Contains(l.Text, mark) {
			return l, true
		}
	}
	return trainingLine{}, false
}

// letters returns a random word of lowercase letters: a mark that no
// redaction takes for a number.
func letters(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return "mark" + string(b)
}

// TestTrainingExportEndToEnd attacks the training export (docs/privacy.md,
// guarantee 15): a corpus seeded with e-mail addresses, card
// numbers, IBANs, phone numbers and IP addresses, written by visitors with
// and without `ai` consent and by one who gave it midway, leaves the export
// redacted, pseudonymized and only with what was written under consent;
// after one visitor withdraws and another is erased, a second export and
// its manifest leave both out; it shares no pseudonym with analytics; it
// is whole over several pages; only an admin gets it, each is audited, and
// the services needed nothing beyond their bus permissions and logged
// nothing of it.
func TestTrainingExportEndToEnd(t *testing.T) {
	a, logs := testAll(t, t.TempDir())
	checkBus(t, logs)
	base, dir := a.URL(), a.cfg.DataDir
	admin := staffToken(t, dir, "demo", "admin", "ada")
	agent := staffToken(t, dir, "demo", "agent", "alice")
	auditor := staffToken(t, dir, "demo", "auditor", "aud")

	identifiers := map[string]string{
		"[email]": "jane.doe@example.com",
		"[phone]": "+44 20 7946 0958",
		"[card]":  "4111 1111 1111 1111",
		"[iban]":  "DE89 3704 0044 0532 0130 00",
		"[ip]":    "203.0.113.42",
	}
	say := func(mark string) string {
		return mark + " mail jane.doe@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, from 203.0.113.42"
	}
	// raw holds every id the export must not: visitors, conversations,
	// messages, staff.
	raw := []string{"alice"}
	var in, out []string // marks the export must, and must not, hold
	written := 0         // messages written, each a fact for analytics
	type visitor struct{ id, token string }
	withAI := func(ai bool) visitor {
		res := register(t, base, "demo", map[string]bool{"analytics": true, "network_data": false, "ai": ai})
		v := visitor{res["visitor_id"].(string), res["token"].(string)}
		raw = append(raw, v.id)
		return v
	}
	setAI := func(v visitor, ai bool) {
		mustCall(t, base, "PUT", "/v1/me/consent", v.token, map[string]bool{"analytics": true, "network_data": false, "ai": ai}, http.StatusOK)
	}
	open := func(v visitor, text string) string {
		id := mustCall(t, base, "POST", "/v1/conversations", v.token, map[string]any{"text": text}, http.StatusCreated)["id"].(string)
		raw, written = append(raw, id), written+1
		return id
	}
	post := func(conv, token, text string) {
		res := mustCall(t, base, "POST", "/v1/conversations/"+conv+"/messages", token, map[string]any{"text": text}, http.StatusCreated)
		raw, written = append(raw, res["id"].(string)), written+1
	}

	// keep holds ai throughout; their opening, their reply and the agent's
	// are in, the opening they withdrew in another conversation is not.
	keep := withAI(true)
	keepOpens, keepAgent, keepReply, keepWithdrawn, keepLater := letters(t), letters(t), letters(t), letters(t), letters(t)
	conv := open(keep, say(keepOpens))
	post(conv, agent, say(keepAgent))
	post(conv, keep.token, say(keepReply))
	conv2 := open(keep, say(keepWithdrawn))
	msgs := mustCall(t, base, "GET", "/v1/conversations/"+conv2+"/messages", keep.token, nil, http.StatusOK)["messages"].([]any)
	opening := msgs[0].(map[string]any)["id"].(string)
	raw = append(raw, opening)
	mustCall(t, base, "DELETE", "/v1/conversations/"+conv2+"/messages/"+opening, keep.token, nil, http.StatusNoContent)
	post(conv2, keep.token, say(keepLater))
	in = append(in, keepOpens, keepAgent, keepReply, keepLater)
	out = append(out, keepWithdrawn)
	// late gives ai consent midway: only what was written after is in.
	late := withAI(false)
	lateBefore, lateAgentBefore, lateAfter, lateAgentAfter := letters(t), letters(t), letters(t), letters(t)
	conv = open(late, say(lateBefore))
	post(conv, agent, say(lateAgentBefore))
	setAI(late, true)
	post(conv, late.token, say(lateAfter))
	post(conv, agent, say(lateAgentAfter))
	in = append(in, lateAfter, lateAgentAfter)
	out = append(out, lateBefore, lateAgentBefore)
	// refuser never gives it.
	refuser := withAI(false)
	refuserOpens, refuserAgent := letters(t), letters(t)
	conv = open(refuser, say(refuserOpens))
	post(conv, agent, say(refuserAgent))
	out = append(out, refuserOpens, refuserAgent)
	// withdrawer and erased give it, and are in the first export only.
	withdrawer, erased := withAI(true), withAI(true)
	withdrawerOpens, erasedOpens := letters(t), letters(t)
	open(withdrawer, say(withdrawerOpens))
	open(erased, say(erasedOpens))
	in = append(in, withdrawerOpens, erasedOpens)
	// chatty writes more than a page holds.
	chatty := withAI(true)
	chattyMarks := []string{letters(t)}
	conv = open(chatty, say(chattyMarks[0]))
	for range 10 {
		mark := letters(t)
		post(conv, chatty.token, say(mark)+strings.Repeat(" the quick brown fox jumps over the lazy dog", 60000/44))
		chattyMarks = append(chattyMarks, mark)
	}
	in = append(in, chattyMarks...)

	// Only an admin may export.
	for _, token := range []string{keep.token, agent, auditor, staffToken(t, dir, "demo", "supervisor", "sue")} {
		mustCall(t, base, "GET", "/v1/training-export", token, nil, http.StatusForbidden)
	}
	mustCall(t, base, "GET", "/v1/training-export", "", nil, http.StatusUnauthorized)

	first := getTrainingExport(t, base, admin)
	checkTrainingExport(t, first, identifiers, raw, in, out)
	// Over several pages: more than a page of lines, all there.
	if size := len(first.body); size <= 2*chatapi.PageBytes {
		t.Errorf("training export of %d bytes, want more than two pages' worth (%d)", size, 2*chatapi.PageBytes)
	}
	pseudonym := func(ex trainingExport, mark string) string {
		l, _ := ex.line(mark)
		return l.Visitor
	}
	keepLine, _ := first.line(keepOpens)
	agentLine, _ := first.line(keepAgent)
	replyLine, _ := first.line(keepReply)
	laterLine, _ := first.line(keepLater)
	if keepLine.Role != "visitor" || agentLine.Role != "agent" || keepLine.Conversation != agentLine.Conversation ||
		replyLine.Conversation != keepLine.Conversation || laterLine.Conversation == keepLine.Conversation ||
		agentLine.Visitor != keepLine.Visitor || laterLine.Visitor != keepLine.Visitor {
		t.Errorf("lines of one visitor: %+v %+v %+v %+v, want roles visitor and agent, one visitor, conversations told apart", keepLine, agentLine, replyLine, laterLine)
	}
	wantManifest := []string{pseudonym(first, keepOpens), pseudonym(first, lateAfter), pseudonym(first, withdrawerOpens), pseudonym(first, erasedOpens), pseudonym(first, chattyMarks[0])}
	checkManifest(t, first, wantManifest)

	// Analytics holds pseudonyms of the same visitors and conversations:
	// none is a training one, so the two cannot be joined.
	_, js := adminConn(t, a)
	var facts []string
	natstest.Until(t, 20*time.Second, "the written messages' facts on ANALYTICS", func() bool {
		facts = analyticsFacts(t, js)
		n := 0
		for _, f := range facts {
			if strings.Contains(f, `"kind":"message_posted"`) {
				n++
			}
		}
		return n == written
	})
	for _, p := range append(wantManifest, keepLine.Conversation, laterLine.Conversation) {
		for _, f := range facts {
			if strings.Contains(f, p) {
				t.Errorf("ANALYTICS fact %s holds training pseudonym %s", f, p)
			}
		}
	}

	// withdrawer withdraws ai, erased is erased: the next export leaves
	// both out, and so does its manifest.
	setAI(withdrawer, false)
	mustCall(t, base, "DELETE", "/v1/me", erased.token, nil, http.StatusAccepted)
	second := getTrainingExport(t, base, admin)
	checkTrainingExport(t, second, identifiers, raw, slices.DeleteFunc(slices.Clone(in), func(m string) bool {
		return m == withdrawerOpens || m == erasedOpens
	}), append(out, withdrawerOpens, erasedOpens))
	checkManifest(t, second, []string{wantManifest[0], wantManifest[1], wantManifest[4]})

	// Nothing of the corpus reached the logs.
	for _, secret := range append(slices.Collect(maps.Values(identifiers)), append(in, out...)...) {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the logs hold %q", secret)
		}
	}

	// Both exports are in the audit trail.
	var audited []string
	for _, e := range mustCall(t, base, "GET", "/v1/audit", auditor, nil, http.StatusOK)["entries"].([]any) {
		if e := e.(map[string]any); e["action"] == "training.export" {
			audited = append(audited, e["target"].(string))
		}
	}
	if want := []string{"training_export:" + first.manifest.ExportID, "training_export:" + second.manifest.ExportID}; !slices.Equal(audited, want) {
		t.Errorf("audited training exports = %v, want %v", audited, want)
	}
}

// checkTrainingExport checks that ex holds none of identifiers nor raw ids,
// each identifier's placeholder, each mark of in and none of out.
func checkTrainingExport(t *testing.T, ex trainingExport, identifiers map[string]string, raw, in, out []string) {
	t.Helper()
	for placeholder, id := range identifiers {
		if strings.Contains(ex.body, id) {
			t.Errorf("training export holds %s %q unredacted", placeholder, id)
		}
		if !strings.Contains(ex.body, placeholder) {
			t.Errorf("training export holds no %s", placeholder)
		}
	}
	for _, id := range raw {
		if strings.Contains(ex.body, id) {
			t.Errorf("training export holds raw id %q", id)
		}
	}
	for _, m := range in {
		if _, ok := ex.line(m); !ok {
			t.Errorf("training export lacks the message marked %s", m)
		}
	}
	for _, m := range out {
		if _, ok := ex.line(m); ok {
			t.Errorf("training export holds the message marked %s", m)
		}
	}
	if len(ex.messages) != len(in) {
		t.Errorf("training export holds %d messages, want %d", len(ex.messages), len(in))
	}
	for _, l := range ex.messages {
		if !slices.Contains(ex.manifest.Visitors, l.Visitor) {
			t.Errorf("line of visitor %s, not in the manifest %v", l.Visitor, ex.manifest.Visitors)
		}
	}
}

// checkManifest checks that ex's manifest lists want and nothing else.
func checkManifest(t *testing.T, ex trainingExport, want []string) {
	t.Helper()
	got := slices.Sorted(slices.Values(ex.manifest.Visitors))
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) || slices.Contains(want, "") {
		t.Errorf("manifest visitors = %v, want %v", got, want)
	}
}

// analyticsFacts returns every fact in ANALYTICS, each once, as JSON.
func analyticsFacts(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var facts []string
	for _, r := range readAnalytics(t, js) {
		if r.kind == analyticsapi.KindErasure {
			continue
		}
		b, err := json.Marshal(r.fact)
		if err != nil {
			t.Fatal(err)
		}
		facts = append(facts, string(b))
	}
	return facts
}
