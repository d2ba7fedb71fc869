package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// request is what the test server saw of one request.
type request struct {
	Method, Path, Auth, ContentType, Body string
}

func TestPoster(t *testing.T) {
	var (
		mu    sync.Mutex
		seen  []request
		conns atomic.Int32
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, request{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(body)})
		mu.Unlock()
		switch string(body) {
		case `{"text":"refuse"}`:
			http.Error(w, "no such conversation", http.StatusNotFound)
			return
		case `{"text":"bye"}`:
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"m1"}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	p, err := newPoster(srv.URL+"/v1/conversations/c1/messages", "tok")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, text := range []string{"one", "two", "bye", "three"} {
		if err := p.post(ctx, []byte(`{"text":"`+text+`"}`), http.StatusCreated); err != nil {
			t.Fatalf("post(%s) = %v", text, err)
		}
	}
	if err := p.post(ctx, []byte(`{"text":"refuse"}`), http.StatusCreated); err == nil || !strings.Contains(err.Error(), "404 no such conversation") {
		t.Errorf("post() answered 404 = %v, want an error with the status and the answer", err)
	}
	if err := p.post(ctx, []byte(`{"text":"four"}`), http.StatusCreated); err != nil {
		t.Fatalf("post() after a refusal = %v", err)
	}
	want := []request{}
	for _, text := range []string{"one", "two", "bye", "three", "refuse", "four"} {
		want = append(want, request{http.MethodPost, "/v1/conversations/c1/messages", "Bearer tok", "application/json", `{"text":"` + text + `"}`})
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("requests mismatch (-want +got):\n%s", diff)
	}
	// Kept alive but for the server's close and the refusal's.
	if got := conns.Load(); got != 3 {
		t.Errorf("posts made over %d connections, want 3", got)
	}
}

func TestPosterStopsWithContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	defer close(release)
	p, err := newPoster(srv.URL+"/x", "tok")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.post(ctx, []byte(`{}`), http.StatusCreated) }()
	cancel()
	if err := <-errc; err == nil || !errors.Is(err, context.Canceled) && !isTimeout(err) {
		t.Errorf("post() with its context cancelled = %v, want it to fail", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
