package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// retained is what parley costs with a retained history: its start to
// ready and resident memory with each size of history, the read of a
// 500-message transcript among them, and an agent's inbox of many open
// conversations listed a page at a time.
type retained struct {
	// Conversations is how many conversations (one visitor each) the
	// history is spread over.
	Conversations int
	// Closed tells a history of closed conversations (--retained-closed).
	Closed bool `json:",omitempty"`
	Runs   []retainedRun
	// SeedPerSec is the rate the history was posted at through the API.
	SeedPerSec float64
	// Inbox is nil when the inbox was not measured.
	Inbox *inbox
}

// retainedRun is parley restarted on a history of Messages messages.
type retainedRun struct {
	Messages int
	// Ready is from the process's start to /readyz answering 200.
	Ready time.Duration
	// RSS is VmRSS once ready and settled; Peak is VmHWM then, the most
	// it was resident since it started: what a memory limit must hold.
	RSS, Peak int64
	// Reads of the transcript of transcriptMessages messages, one page
	// each; none with an empty history.
	Reads            int
	ReadP50, ReadP99 time.Duration
	ReadMax          time.Duration
}

// inbox is an agent listing Conversations open conversations, PageSize a
// page, again and again: each page is timed.
type inbox struct {
	Conversations int
	PageSize      int
	Pages         int
	P50, P99, Max time.Duration
}

const (
	// transcriptMessages is the transcript read at each size: the issue's
	// "500-message transcript", one page of the API's largest.
	transcriptMessages = 500
	// retainedPayload is the size of a history message, as in the issue's
	// measurement (64 bytes).
	retainedPayload = 64
	// inboxPage is the page size of the inbox listing: the API's default.
	inboxPage = 100
	// inboxPages is how many inbox pages are timed at least.
	inboxPages = 300
)

// measureRetained runs parley on a data dir of its own: it restarts it
// empty, then posts the history up to each size of cfg.Retained through
// the API and restarts parley on it, timing the start and reading the
// resident size and a transcript's reads; then it opens cfg.Inbox
// conversations in a tenant of their own and times an agent's listing.
func measureRetained(ctx context.Context, bin string, cfg config) (retained, error) {
	r := retained{Conversations: cfg.RetainedConversations, Closed: cfg.RetainedClosed}
	p, err := startParley(ctx, bin, startOptions{})
	if err != nil {
		return r, err
	}
	defer func() {
		p.stop()
		p.remove()
	}()
	if p, err = p.restart(ctx); err != nil {
		return r, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * cfg.Concurrency}}
	body, _ := json.Marshal(map[string]string{"text": strings.Repeat("r", retainedPayload)})
	var (
		reader   []conversation // the transcript read, then the history's conversations
		have     int            // messages retained
		seeded   int            // of them posted flat out, for SeedPerSec
		seedTime time.Duration
		closed   bool // the history's conversations are
	)
	for _, size := range cfg.Retained {
		if size > 0 && reader == nil {
			if reader, err = openConversations(ctx, client, p.base, "demo", 1); err != nil {
				return r, err
			}
			if err := postMessages(ctx, client, p.base, reader, transcriptMessages-1, body, 1, "retained: transcript"); err != nil {
				return r, err
			}
			convs, err := spreadConversations(ctx, p, client, cfg.RetainedConversations)
			if err != nil {
				return r, err
			}
			reader = append(reader, convs...)
			have = transcriptMessages + len(convs)
		}
		if size > have && closed {
			return r, fmt.Errorf("--retained-closed: %d messages need posts to the closed conversations of the %d before", size, have)
		}
		if size > have {
			start := time.Now()
			if err := postMessages(ctx, client, p.base, reader[1:], size-have, body, cfg.Concurrency, "retained: history of "+thousands(size)); err != nil {
				return r, err
			}
			seedTime += time.Since(start)
			seeded += size - have
			have = size
			r.SeedPerSec = float64(seeded) / seedTime.Seconds()
		}
		if cfg.RetainedClosed && !closed && reader != nil {
			if err := closeConversations(ctx, client, p.base, reader[1:], cfg.Concurrency); err != nil {
				return r, err
			}
			closed = true
		}
		// What the posting left to do in the background (chat writing its
		// view, the relay's facts) is done before the stop, as before any
		// timing: a restart right after a burst times its catch-up.
		if err := p.settle(ctx, cfg.Settle); err != nil {
			return r, err
		}
		if p, err = p.restart(ctx); err != nil {
			return r, err
		}
		run := retainedRun{Messages: have, Ready: p.readyIn}
		if err := p.settle(ctx, cfg.Settle); err != nil {
			return r, err
		}
		if run.RSS, err = p.rss(); err != nil {
			return r, err
		}
		if run.Peak, err = p.procStatus("VmHWM"); err != nil {
			return r, err
		}
		if reader != nil {
			took, err := readTranscripts(ctx, client, p.base, reader[0], cfg.TranscriptReads)
			if err != nil {
				return r, err
			}
			run.Reads, run.ReadP50, run.ReadP99, run.ReadMax = len(took), percentile(took, 50), percentile(took, 99), percentile(took, 100)
			fmt.Fprintf(os.Stderr, "%-30s %9d messages: p50 %v, p99 %v; first %v, %v, %v; slowest (read: time) %s\n", "retained: transcript reads", have,
				fmtDur(run.ReadP50), fmtDur(run.ReadP99), fmtDur(took[0]), fmtDur(took[min(1, len(took)-1)]), fmtDur(took[min(2, len(took)-1)]), slowest(took, 8))
		}
		fmt.Fprintf(os.Stderr, "%-30s %9d messages: ready in %v, %.1f MiB resident (peak %.1f MiB)\n", "retained: restart", run.Messages, fmtDur(run.Ready), mib(run.RSS), mib(run.Peak))
		r.Runs = append(r.Runs, run)
	}
	if cfg.Inbox > 0 {
		in, err := measureInbox(ctx, p, client, cfg.Inbox, cfg.Settle)
		if err != nil {
			return r, fmt.Errorf("inbox: %w", err)
		}
		r.Inbox = &in
	}
	return r, nil
}

// closeConversations closes convs, each by its visitor, workers at a time.
func closeConversations(ctx context.Context, client *http.Client, base string, convs []conversation, workers int) error {
	return repeat(ctx, len(convs), workers, "retained: close", func(ctx context.Context, i int) error {
		c := convs[i]
		return post(ctx, client, base+"/v1/conversations/"+c.id+"/close", c.token, nil, http.StatusOK, nil)
	})
}

// restart stops p and starts parley again on its data dir, returning the
// new process. A start that replays a long history may take minutes: it
// is a figure, not a failure.
func (p *parley) restart(ctx context.Context) (*parley, error) {
	p.stop()
	np, err := startParley(ctx, p.bin, startOptions{DataDir: p.dataDir, ReadyWithin: 10 * time.Minute})
	if err != nil {
		return p, fmt.Errorf("restart on %s: %w", p.dataDir, err)
	}
	return np, nil
}

// readTranscripts reads c's transcript reads times, one page of
// transcriptMessages, as its visitor, and returns how long each took.
func readTranscripts(ctx context.Context, client *http.Client, base string, c conversation, reads int) ([]time.Duration, error) {
	u := fmt.Sprintf("%s/v1/conversations/%s/messages?limit=%d", base, c.id, transcriptMessages)
	took := make([]time.Duration, 0, reads)
	for range reads {
		var page struct {
			Messages []json.RawMessage `json:"messages"`
		}
		start := time.Now()
		if err := call(ctx, client, http.MethodGet, u, c.token, nil, http.StatusOK, &page); err != nil {
			return nil, fmt.Errorf("read transcript: %w", err)
		}
		took = append(took, time.Since(start))
		if len(page.Messages) != transcriptMessages {
			return nil, fmt.Errorf("read transcript: %d messages, want %d", len(page.Messages), transcriptMessages)
		}
	}
	return took, nil
}

// slowest lists the n longest of took with their indexes, longest first:
// whether a tail is the first reads after a start, or spread over the run.
func slowest(took []time.Duration, n int) string {
	idx := make([]int, len(took))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return took[idx[a]] > took[idx[b]] })
	var b strings.Builder
	for k, i := range idx[:min(n, len(idx))] {
		if k > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "#%d: %v", i, fmtDur(took[i]))
	}
	return b.String()
}

// measureInbox opens n conversations of one visitor in a tenant of their
// own, then lists them as an agent of it, inboxPage a page, from the first
// page to the last, until at least inboxPages pages are timed. Every
// listing must hold the n conversations.
func measureInbox(ctx context.Context, p *parley, client *http.Client, n int, settle time.Duration) (inbox, error) {
	in := inbox{Conversations: n, PageSize: inboxPage}
	if err := p.putTenant(ctx, client, "inbox", "Inbox", http.StatusCreated); err != nil {
		return in, err
	}
	v, err := openConversations(ctx, client, p.base, "inbox", 1)
	if err != nil {
		return in, err
	}
	open := func(ctx context.Context, _ int) error {
		return post(ctx, client, p.base+"/v1/conversations", v[0].token, []byte(`{"text":"hello"}`), http.StatusCreated, nil)
	}
	if err := repeat(ctx, n-1, 32, "inbox: open conversations", open); err != nil {
		return in, err
	}
	if err := p.settle(ctx, settle); err != nil {
		return in, err
	}
	agent, err := p.token(ctx, "inbox", "agent", "bench")
	if err != nil {
		return in, err
	}
	var took []time.Duration
	for len(took) < inboxPages {
		seen, cursor := 0, ""
		for {
			u := fmt.Sprintf("%s/v1/conversations?limit=%d", p.base, inboxPage)
			if cursor != "" {
				u += "&cursor=" + url.QueryEscape(cursor)
			}
			var page struct {
				Conversations []json.RawMessage `json:"conversations"`
				NextCursor    *string           `json:"next_cursor"`
			}
			start := time.Now()
			if err := call(ctx, client, http.MethodGet, u, agent, nil, http.StatusOK, &page); err != nil {
				return in, fmt.Errorf("list conversations: %w", err)
			}
			took = append(took, time.Since(start))
			seen += len(page.Conversations)
			if page.NextCursor == nil {
				break
			}
			cursor = *page.NextCursor
		}
		if seen != n {
			return in, fmt.Errorf("the agent's inbox listed %d conversations, want %d", seen, n)
		}
	}
	in.Pages, in.P50, in.P99, in.Max = len(took), percentile(took, 50), percentile(took, 99), percentile(took, 100)
	fmt.Fprintf(os.Stderr, "%-30s %9d open: %d pages of %d, p50 %v, p99 %v\n", "inbox: list as an agent", n, in.Pages, inboxPage, fmtDur(in.P50), fmtDur(in.P99))
	return in, nil
}

// repeat calls op n times in workers concurrent workers and returns the
// first error.
func repeat(ctx context.Context, n, workers int, name string, op func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		once sync.Once
		err  error
		next = make(chan int)
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if e := op(ctx, i); e != nil {
					once.Do(func() { err = e; cancel() })
				}
			}
		})
	}
	start := time.Now()
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(os.Stderr, "%-30s %9d in %v\n", name, n, fmtDur(time.Since(start)))
	return ctx.Err()
}
