package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	convs := make([]conversation, min(n, historyConversations))
	errs := make([]error, len(convs))
	var wg sync.WaitGroup
	for i := range convs {
		wg.Go(func() {
			var c struct{ ID string }
			errs[i] = post(ctx, client, base+"/v1/conversations", v.Token, text, http.StatusCreated, &c)
			convs[i] = conversation{id: c.ID, token: v.Token}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("open history conversations: %w", err)
	}
	if err := postMessages(ctx, client, base, convs, n-len(convs), text, len(convs), fmt.Sprintf("history of %d", n)); err != nil {
		return "", err
	}
	return v.Token, nil
}

// postMessages posts n messages of body (JSON) over convs, round robin, in
// workers concurrent workers, printing its progress as name. Worker w
// posts to conversations w, w+workers, …, one post at a time: appends to
// one conversation are serialised, as they must be.
func postMessages(ctx context.Context, client *http.Client, base string, convs []conversation, n int, body []byte, workers int, name string) error {
	workers = min(workers, len(convs))
	if n <= 0 || workers == 0 {
		return nil
	}
	var (
		posted atomic.Int64
		wg     sync.WaitGroup
		errs   = make([]error, workers)
	)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			// Message m goes to conversation m % len(convs); this worker's
			// are those whose conversation is w modulo workers.
			for m := w; m < n; m += workers {
				c := convs[m%len(convs)]
				if errs[w] = post(ctx, client, base+"/v1/conversations/"+c.id+"/messages", c.token, body, http.StatusCreated, nil); errs[w] != nil {
					return
				}
				posted.Add(1)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	progress := func() {
		el := time.Since(start)
		fmt.Fprintf(os.Stderr, "\r%-30s %5.1fs %9d ok %9.0f/s", name, el.Seconds(), posted.Load(), float64(posted.Load())/el.Seconds())
	}
wait:
	for {
		select {
		case <-tick.C:
			progress()
		case <-done:
			break wait
		}
	}
	if time.Since(start) > time.Second {
		progress()
		fmt.Fprintln(os.Stderr)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("post %s: %w", name, err)
	}
	return nil
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
