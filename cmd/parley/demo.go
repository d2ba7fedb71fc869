package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
)

// The chats `parley demo` plays: a visitor's opening and reply, the agent's answer.
var demoChats = [][3]string{
	{"Hello, my order has not arrived yet.", "Sorry about that, let me check: it left the warehouse yesterday.", "Thanks, I'll wait then."},
	{"Can I change the delivery address?", "Yes, until it ships: I've changed it for you.", "Perfect, thank you."},
	{"How do I return a jacket that doesn't fit?", "Print the label from your account and drop it at any post office.", "Great, will do."},
	{"Is the blue kettle back in stock?", "It is, since this morning.", "Ordering it now."},
	{"I was charged twice for one order.", "I see the second charge: it is refunded and will show in 3 days.", "Thank you for sorting it out."},
	{"Do you ship to Norway?", "We do, in 4 to 6 working days.", "Good to know."},
}

// demoScores are the visitors' ratings, in turn.
var demoScores = []int{5, 4, 5, 3, 4, 5, 2}

// runDemo seeds a running Parley's tenant through the gateway's API, as
// visitors and an agent would, with enough consenting visitors that the
// dashboard's points pass the minimum group size, then says what to open.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("parley demo", flag.ContinueOnError)
	dataDir := flags.String("data-dir", "./data", "data directory of the running parley all, holding signing-key.pem")
	keyFile := flags.String("signing-key-file", "", "signing key file (overrides --data-dir)")
	gateway := flags.String("gateway", "http://127.0.0.1:8080", "the running Parley's HTTP address")
	tenant := flags.String("tenant", "demo", "the tenant to seed")
	visitors := flags.Int("visitors", 12, "consenting visitors, each with a conversation answered, closed and rated (at least 5, the minimum group size)")
	wait := flags.Duration("wait", 2*time.Minute, "how long to wait for the facts to reach analytics")
	if err := parseFlags(flags, args, stdout, stderr); err != nil {
		return err
	}
	if *visitors < 5 {
		return usageError{"--visitors: at least 5, or every point would be suppressed"}
	}
	if !auth.ValidTenantID(*tenant) {
		return usageError{fmt.Sprintf("--tenant %q: want a tenant id, 1-63 of [a-z0-9-]", *tenant)}
	}
	base, err := url.Parse(*gateway)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return usageError{fmt.Sprintf("--gateway %q: want an http:// or https:// address", *gateway)}
	}
	signer, err := readSigner(*dataDir, *keyFile)
	if err != nil {
		return err
	}
	tokens := map[auth.Role]string{}
	for role, id := range map[auth.Role]string{auth.RoleAgent: "alice", auth.RoleAnalyst: "ann", auth.RoleAdmin: "root"} {
		if tokens[role], err = signer.Issue(auth.Principal{Tenant: *tenant, ID: id, Role: role}, 24*time.Hour); err != nil {
			return err
		}
	}
	d := &demo{
		base:   strings.TrimSuffix(base.String(), "/"),
		tenant: *tenant,
		http:   &http.Client{Timeout: 30 * time.Second},
		log:    stderr,
	}
	if err := d.awaitReady(ctx, tokens[auth.RoleAgent], tokens[auth.RoleAnalyst], demoReadyWithin); err != nil {
		return err
	}

	began := time.Now().UTC()
	before, _ := d.conversations(ctx, tokens[auth.RoleAnalyst], began)
	for i := range *visitors {
		if err := d.chat(ctx, i, tokens[auth.RoleAgent]); err != nil {
			return fmt.Errorf("visitor %d: %w", i+1, err)
		}
		fmt.Fprintf(stderr, "visitor %d/%d: consented to analytics, chatted with alice, closed, rated\n", i+1, *visitors)
	}

	fmt.Fprintf(stderr, "waiting for the facts to reach analytics (up to %v)…\n", *wait)
	if err := d.awaitFacts(ctx, tokens[auth.RoleAnalyst], began, before+*visitors, *wait); err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
	}

	fmt.Fprintf(stdout, `
Seeded %d conversations in tenant %q. Open next:
  %s/demo        chat as a visitor through the widget
  %s/console     answer as agent alice, with the token:
    %s
  %s/dashboard   the metrics, as analyst ann, with the token:
    %s
  %s/privacy     settings, export, erase and the audit trail, as admin root, with the token:
    %s
(The tokens last 24 hours; more come from bin/parley token --data-dir %s --tenant %s --role <role> --id <id>.)
`, *visitors, *tenant, d.base, d.base, tokens[auth.RoleAgent], d.base, tokens[auth.RoleAnalyst], d.base, tokens[auth.RoleAdmin], *dataDir, *tenant)
	return nil
}

// demo calls one gateway for `parley demo`.
type demo struct {
	base, tenant string
	http         *http.Client
	log          io.Writer
}

// chat plays visitor i: registers them consenting to analytics, opens a
// conversation the agent answers, replies, and closes and rates it.
func (d *demo) chat(ctx context.Context, i int, agent string) error {
	var v struct {
		Token string `json:"token"`
	}
	consent := map[string]any{"consent": map[string]bool{"analytics": true, "network_data": false, "ai": false}, "notice_version": "2026-01"}
	if err := d.call(ctx, "POST", "/v1/tenants/"+d.tenant+"/visitors", "", consent, &v); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	lines := demoChats[i%len(demoChats)]
	var conv struct {
		ID string `json:"id"`
	}
	if err := d.call(ctx, "POST", "/v1/conversations", v.Token, map[string]string{"text": lines[0]}, &conv); err != nil {
		return fmt.Errorf("open a conversation: %w", err)
	}
	path := "/v1/conversations/" + conv.ID
	steps := []struct {
		what, token, path string
		body              any
	}{
		{"answer", agent, path + "/messages", map[string]string{"text": lines[1]}},
		{"reply", v.Token, path + "/messages", map[string]string{"text": lines[2]}},
		{"close", agent, path + "/close", nil},
		{"rate", v.Token, path + "/rating", map[string]int{"score": demoScores[i%len(demoScores)]}},
	}
	for _, s := range steps {
		if err := d.call(ctx, "POST", s.path, s.token, s.body, nil); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

// conversations sums the shown points of the conversations metric from the
// hour of since on; 0 when analytics does not answer.
func (d *demo) conversations(ctx context.Context, analyst string, since time.Time) (int, error) {
	from := since.Truncate(time.Hour)
	q := url.Values{"from": {from.Format(time.RFC3339)}, "to": {from.Add(48 * time.Hour).Format(time.RFC3339)}, "interval": {"hour"}}
	var m struct {
		Points []struct {
			Value *float64 `json:"value"`
		} `json:"points"`
	}
	if err := d.call(ctx, "GET", "/v1/metrics/conversations?"+q.Encode(), analyst, nil, &m); err != nil {
		return 0, err
	}
	n := 0
	for _, p := range m.Points {
		if p.Value != nil {
			n += int(*p.Value)
		}
	}
	return n, nil
}

// demoReadyWithin is how long `parley demo` waits for a Parley that answers,
// started a moment before it (`make run`, then `make demo`), to be ready.
const demoReadyWithin = time.Minute

// awaitReady waits within for the gateway's /readyz to answer 200, or for
// Parley to be ready but for analytics: `parley all --clickhouse auto` on a
// machine without ClickHouse answers 503 there for good while the chat
// works, and the chat is what the demo plays (awaitFacts then says why the
// dashboard stays empty). No answer at all means no Parley: it says to
// start one.
func (d *demo) awaitReady(ctx context.Context, agent, analyst string, within time.Duration) error {
	deadline := time.Now().Add(within)
	told := false
	for {
		err := d.call(ctx, "GET", "/readyz", "", nil, nil)
		var p *demoProblem
		switch {
		case err == nil:
			return nil
		case !errors.As(err, &p):
			return fmt.Errorf("no Parley at %s (start it with `make run`): %w", d.base, err)
		case d.chatOnly(ctx, agent, analyst):
			fmt.Fprintf(d.log, "Parley's chat is ready and its analytics is not: seeding the chat all the same\n")
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("no ready Parley at %s after %v (its log says why): %w", d.base, within, err)
		case !told:
			fmt.Fprintf(d.log, "waiting for Parley at %s to be ready (up to %v)…\n", d.base, within)
			told = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// chatOnly reports whether the chat answers the agent while analytics
// answers the analyst 503.
func (d *demo) chatOnly(ctx context.Context, agent, analyst string) bool {
	_, err := d.conversations(ctx, analyst, time.Now())
	var p *demoProblem
	if !errors.As(err, &p) || p.status != http.StatusServiceUnavailable {
		return false
	}
	return d.call(ctx, "GET", "/v1/conversations?status=open&limit=1", agent, nil, nil) == nil
}

// awaitFacts polls the conversations metric until it counts want since
// since, or within has passed; its error says why the dashboard may not
// show them yet.
func (d *demo) awaitFacts(ctx context.Context, analyst string, since time.Time, want int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		n, err := d.conversations(ctx, analyst, since)
		var p *demoProblem
		switch {
		case errors.As(err, &p) && p.status == http.StatusServiceUnavailable:
			return fmt.Errorf("analytics is not available (%s): install clickhouse-server and restart `make run` for the dashboard to fill", p.detail)
		case err == nil && n >= want:
			fmt.Fprintf(d.log, "the dashboard counts them: %d conversations since %s\n", n, since.Truncate(time.Hour).Format("15:04 UTC"))
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("analytics counts %d of %d conversations so far (%v): the dashboard shows the rest when they arrive", n, want, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// demoProblem is an error answer of the API: its status and the problem
// document's detail.
type demoProblem struct {
	status int
	detail string
}

func (p *demoProblem) Error() string { return fmt.Sprintf("%d: %s", p.status, p.detail) }

// call sends a request and decodes the answer into out. A 429 is waited out
// as its Retry-After says — the per-address registration limit is the one a
// demo meets — and the call made again.
func (d *demo) call(ctx context.Context, method, path, token string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
	}
	for {
		req, err := http.NewRequestWithContext(ctx, method, d.base+path, bytes.NewReader(payload))
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := d.http.Do(req)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%s %s: read the answer: %w", method, path, err)
		}
		if resp.StatusCode < 300 {
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(raw, out); err != nil {
				return fmt.Errorf("%s %s: decode the answer: %w", method, path, err)
			}
			return nil
		}
		var doc struct {
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(raw, &doc) // not a problem document: the status says enough
		p := &demoProblem{status: resp.StatusCode, detail: doc.Detail}
		secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != http.StatusTooManyRequests || err != nil {
			return fmt.Errorf("%s %s: %w", method, path, p)
		}
		fmt.Fprintf(d.log, "%s; waiting %d s as the gateway asks…\n", p.detail, secs)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(secs) * time.Second):
		}
	}
}
