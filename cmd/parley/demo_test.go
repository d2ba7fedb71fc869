package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/chserver/chtest"
)

// TestDemoSeedsTheDashboard runs `parley demo` against `parley all` with a
// real ClickHouse: the metrics it seeds pass the minimum group size, and
// the tokens it prints open the pages it names.
func TestDemoSeedsTheDashboard(t *testing.T) {
	if now := time.Now().UTC(); now.Add(2*time.Minute).Hour() != now.Hour() {
		t.Skip("too close to the hour: the facts would span two buckets")
	}
	ch := chtest.Start(t)
	dir := t.TempDir()
	a := testAllWithClickHouse(t, dir, ch)
	var out, progress bytes.Buffer
	err := run(context.Background(), []string{"demo", "--data-dir", dir, "--gateway", a.URL(), "--visitors", "6"}, &out, &progress)
	if err != nil {
		t.Fatalf("parley demo: %v\n%s", err, progress.String())
	}
	if !strings.Contains(progress.String(), "visitor 6/6:") || !strings.Contains(progress.String(), "the dashboard counts them: 6 conversations") {
		t.Errorf("parley demo's progress = %q, want each visitor and the facts counted", progress.String())
	}

	// demo waited for the facts: every metric has today's point, shown.
	tokens := regexp.MustCompile(`(?m)^    (\S+)$`).FindAllStringSubmatch(out.String(), -1)
	if len(tokens) != 3 {
		t.Fatalf("parley demo printed %d tokens, want 3 (agent, analyst, admin):\n%s", len(tokens), out.String())
	}
	analyst := tokens[1][1]
	day := time.Now().UTC().Truncate(24 * time.Hour)
	for _, name := range []string{"conversations", "messages", "first_response_seconds", "resolution_seconds", "csat"} {
		p, ok := metric(t, a.URL(), analyst, name, day)
		if !ok || p.value == nil {
			t.Errorf("%s after parley demo = %+v (found %v), want a point not suppressed", name, p, ok)
		}
	}
	if p, _ := metric(t, a.URL(), analyst, "conversations", day); p.value != nil && *p.value != 6 {
		t.Errorf("conversations after parley demo = %v, want 6", *p.value)
	}
	// The agent's token answers the console's first call.
	mustCall(t, a.URL(), "GET", "/v1/conversations", tokens[0][1], nil, http.StatusOK)
	for _, page := range []string{"/demo", "/console", "/dashboard", "/privacy"} {
		if !strings.Contains(out.String(), a.URL()+page) {
			t.Errorf("parley demo's output does not name %s:\n%s", page, out.String())
		}
	}
}

func TestDemoRefuses(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		give  []string
		usage bool
		want  string
	}{
		{"too few visitors", []string{"--visitors", "4"}, true, "at least 5"},
		{"a gateway that is no URL", []string{"--gateway", "localhost:8080"}, true, "--gateway"},
		{"a bad tenant", []string{"--tenant", "Demo!"}, true, "--tenant"},
		{"no signing key", []string{"--data-dir", dir}, true, "no signing key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), append([]string{"demo"}, tt.give...), new(bytes.Buffer), new(bytes.Buffer))
			if err == nil || errors.As(err, new(usageError)) != tt.usage || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parley demo %v = %v, want an error (usage %v) saying %q", tt.give, err, tt.usage, tt.want)
			}
		})
	}
}

// TestDemoWithoutParley: a demo with no Parley to seed says to start one.
func TestDemoWithoutParley(t *testing.T) {
	dir := t.TempDir()
	a, _ := testAll(t, dir)
	gone := a.URL()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"demo", "--data-dir", dir, "--gateway", gone}, new(bytes.Buffer), new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "make run") {
		t.Errorf("parley demo without Parley = %v, want an error naming `make run`", err)
	}
}
