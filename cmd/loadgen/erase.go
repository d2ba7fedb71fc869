package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// erasure is the erasure of one visitor with History messages.
type erasure struct {
	History int
	// Elapsed is from sending DELETE /v1/me to reading "completed".
	Elapsed time.Duration
	// Reported is the report's own duration, request to completion.
	Reported time.Duration
	Counts   map[string]int64
}

// export is the export of a visitor's history.
type export struct {
	History int
	Elapsed time.Duration
	Bytes   int64
	// Failed is the answer of an export that failed.
	Failed string
}

// historyConversations is how many conversations a large history is spread
// over: appends to one conversation are serialised, as they must be.
const historyConversations = 100

// historyPayload is the size of a history message of the erasure phase:
// only their number matters to an erasure.
const historyPayload = 64

// measureErasure builds a visitor with each history size through the API,
// erases them once parley has settled and times the erasure to
// completion. The export of the
// visitor whose history is exportAt messages is timed on the way.
func measureErasure(ctx context.Context, p *parley, cfg config, sizes []int, exportAt int) ([]erasure, *export, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * historyConversations}}
	// A first erasure pays for what any first call pays for; it is not
	// one of the figures.
	tok, err := visitorWithHistory(ctx, client, p.base, 1, historyPayload)
	if err != nil {
		return nil, nil, err
	}
	if _, err := erase(ctx, client, p.base, tok); err != nil {
		return nil, nil, err
	}
	var out []erasure
	var ex *export
	for _, n := range sizes {
		tok, err := visitorWithHistory(ctx, client, p.base, n, historyPayload)
		if err != nil {
			return nil, nil, err
		}
		// Parley relays the history's facts in the background: let it
		// finish, so that the figures are the erasure's and the export's.
		if err := p.settle(ctx, cfg.Settle); err != nil {
			return nil, nil, err
		}
		if n == exportAt {
			e, err := timeExport(ctx, client, p.base, tok)
			if err != nil {
				return nil, nil, err
			}
			e.History = n
			ex = &e
		}
		e, err := erase(ctx, client, p.base, tok)
		if err != nil {
			return nil, nil, err
		}
		e.History = n
		out = append(out, e)
		fmt.Fprintf(os.Stderr, "%-30s %9d messages: %v to completion (report: %v)\n", "erase: DELETE /v1/me", n, e.Elapsed.Round(100*time.Microsecond), e.Reported)
	}
	return out, ex, nil
}

// visitorWithHistory creates a visitor and posts n messages of payload
// bytes as them, the first of each conversation included, and returns
// their token.
func visitorWithHistory(ctx context.Context, client *http.Client, base string, n, payload int) (string, error) {
	var v struct{ Token string }
	body := []byte(`{"consent":{"analytics":true,"network_data":false,"ai":false},"notice_version":"bench"}`)
	if err := post(ctx, client, base+"/v1/tenants/demo/visitors", "", body, http.StatusCreated, &v); err != nil {
		return "", fmt.Errorf("history visitor: %w", err)
	}
	text, _ := json.Marshal(map[string]string{"text": strings.Repeat("h", payload)})
	convs := min(n, historyConversations)
	var (
		posted atomic.Int64
		wg     sync.WaitGroup
		errs   = make([]error, convs)
	)
	name := fmt.Sprintf("history of %d", n)
	start := time.Now()
	for w := range convs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c struct{ ID string }
			if errs[w] = post(ctx, client, base+"/v1/conversations", v.Token, text, http.StatusCreated, &c); errs[w] != nil {
				return
			}
			posted.Add(1)
			// This conversation's share of the rest.
			for range (n-convs)/convs + btoi(w < (n-convs)%convs) {
				if errs[w] = post(ctx, client, base+"/v1/conversations/"+c.ID+"/messages", v.Token, text, http.StatusCreated, nil); errs[w] != nil {
					return
				}
				posted.Add(1)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-tick.C:
			el := time.Since(start)
			fmt.Fprintf(os.Stderr, "\r%-30s %5.1fs %9d ok %9.0f/s", name, el.Seconds(), posted.Load(), float64(posted.Load())/el.Seconds())
		case <-done:
			break wait
		}
	}
	if time.Since(start) > time.Second {
		fmt.Fprintln(os.Stderr)
	}
	for _, err := range errs {
		if err != nil {
			return "", fmt.Errorf("post history: %w", err)
		}
	}
	return v.Token, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// erase erases the visitor of token with DELETE /v1/me and polls the
// erasure until it is completed.
func erase(ctx context.Context, client *http.Client, base, token string) (erasure, error) {
	type status struct {
		ErasureID string `json:"erasure_id"`
		Status    string `json:"status"`
		Report    *struct {
			DurationMS int64            `json:"duration_ms"`
			Counts     map[string]int64 `json:"counts"`
		} `json:"report"`
	}
	start := time.Now()
	var req status
	if err := call(ctx, client, http.MethodDelete, base+"/v1/me", token, nil, http.StatusAccepted, &req); err != nil {
		return erasure{}, fmt.Errorf("erase: %w", err)
	}
	deadline := start.Add(time.Minute)
	for {
		var s status
		if err := call(ctx, client, http.MethodGet, base+"/v1/erasures/"+req.ErasureID, token, nil, http.StatusOK, &s); err != nil {
			return erasure{}, fmt.Errorf("erasure status: %w", err)
		}
		if s.Status == "completed" && s.Report != nil {
			return erasure{
				Elapsed:  time.Since(start),
				Reported: time.Duration(s.Report.DurationMS) * time.Millisecond,
				Counts:   s.Report.Counts,
			}, nil
		}
		if time.Now().After(deadline) {
			return erasure{}, fmt.Errorf("erasure %s still %q after a minute", req.ErasureID, s.Status)
		}
		time.Sleep(time.Millisecond)
	}
}

// timeExport times GET /v1/me/export, reading the whole document. An
// export that fails is a figure too: the error is an answer.
func timeExport(ctx context.Context, client *http.Client, base, token string) (export, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/me/export", nil)
	if err != nil {
		return export{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return export{}, fmt.Errorf("export: %w", err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	n, err := io.Copy(&body, resp.Body)
	if err != nil {
		return export{}, fmt.Errorf("read export: %w", err)
	}
	e := export{Elapsed: time.Since(start), Bytes: n}
	if resp.StatusCode != http.StatusOK {
		var prob struct{ Detail string }
		_ = json.Unmarshal(body.Bytes(), &prob)
		e.Failed = strings.TrimSpace(fmt.Sprintf("%d %s", resp.StatusCode, prob.Detail))
		fmt.Fprintf(os.Stderr, "%-30s failed: %s\n", "export: GET /v1/me/export", e.Failed)
		return e, nil
	}
	fmt.Fprintf(os.Stderr, "%-30s %9s: %v\n", "export: GET /v1/me/export", fmt.Sprintf("%d B", n), e.Elapsed.Round(100*time.Microsecond))
	return e, nil
}
