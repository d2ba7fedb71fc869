package stream_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestGetBatch reads pages of one subject among others, the last of
// several subjects and nothing, each answer whole and in order, with the
// server's count of what is left.
func TestGetBatch(t *testing.T) {
	_, js := twoSubjects(t)
	ctx := t.Context()
	type got struct {
		Subject, Data, Pending string
		Seq                    uint64
	}
	tests := []struct {
		name string
		give stream.BatchRequest
		want []got
	}{
		{"a page", stream.BatchRequest{Seq: 4, NextFor: "t.a", Batch: 3}, []got{
			{"t.a", "t.a2", "7", 5}, {"t.a", "t.a3", "6", 7}, {"t.a", "t.a4", "5", 9},
		}},
		{"the last page", stream.BatchRequest{Seq: 17, NextFor: "t.b", Batch: 5}, []got{
			{"t.b", "t.b8", "1", 18}, {"t.b", "t.b9", "0", 20},
		}},
		{"past the end", stream.BatchRequest{Seq: 21, NextFor: "t.a", Batch: 5}, nil},
		{"a subject with none", stream.BatchRequest{Seq: 1, NextFor: "t.c", Batch: 5}, nil},
		{"the last of each", stream.BatchRequest{MultiLast: []string{"t.b", "t.a", "t.c"}}, []got{
			{"t.a", "t.a9", "1", 19}, {"t.b", "t.b9", "0", 20},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out []got
			err := stream.GetBatch(ctx, js, "T", tt.give, func(m *jetstream.RawStreamMsg) error {
				if m.Time.IsZero() {
					t.Errorf("sequence %d has no time", m.Sequence)
				}
				out = append(out, got{m.Subject, string(m.Data), m.Header.Get(stream.PendingHeader), m.Sequence})
				return nil
			})
			if err != nil {
				t.Fatalf("GetBatch(%+v) = %v", tt.give, err)
			}
			if diff := cmp.Diff(tt.want, out); diff != "" {
				t.Errorf("GetBatch(%+v) (-want +got):\n%s", tt.give, diff)
			}
		})
	}
}

// TestGetPages reads a subject a page at a time to its end, asking the
// server once a page and not again once it says none is left, and stops at
// the first error of the page function.
func TestGetPages(t *testing.T) {
	nc, js := twoSubjects(t)
	ctx := t.Context()
	// The direct gets GetPages asks, seen as any subscriber sees them.
	asks, err := nc.SubscribeSync("$JS.API.DIRECT.GET.T")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		give      stream.BatchRequest
		wantPages [][]string
		wantNext  uint64
		wantAsks  int
	}{
		{"several pages", stream.BatchRequest{Seq: 1, NextFor: "t.a", Batch: 3}, [][]string{
			{"t.a0", "t.a1", "t.a2"}, {"t.a3", "t.a4", "t.a5"}, {"t.a6", "t.a7", "t.a8"}, {"t.a9"},
		}, 20, 4},
		{"pages ending with the subject", stream.BatchRequest{Seq: 1, NextFor: "t.b", Batch: 5}, [][]string{
			{"t.b0", "t.b1", "t.b2", "t.b3", "t.b4"}, {"t.b5", "t.b6", "t.b7", "t.b8", "t.b9"},
		}, 21, 2},
		{"from the middle", stream.BatchRequest{Seq: 10, NextFor: "t.a", Batch: 4}, [][]string{
			{"t.a5", "t.a6", "t.a7", "t.a8"}, {"t.a9"},
		}, 20, 2},
		{"pages cut short by bytes", stream.BatchRequest{Seq: 14, NextFor: "t.b", Batch: 5, MaxBytes: 1}, [][]string{
			{"t.b6"}, {"t.b7"}, {"t.b8"}, {"t.b9"},
		}, 21, 4},
		{"a subject with none", stream.BatchRequest{Seq: 1, NextFor: "t.c", Batch: 5}, nil, 1, 1},
		{"past the end", stream.BatchRequest{Seq: 21, NextFor: "t.a", Batch: 5}, nil, 21, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pages [][]string
			next, err := stream.GetPages(ctx, js, "T", tt.give, func(page []*jetstream.RawStreamMsg) error {
				var data []string
				for _, m := range page {
					data = append(data, string(m.Data))
				}
				pages = append(pages, data)
				return nil
			})
			if err != nil {
				t.Fatalf("GetPages(%+v) = %v", tt.give, err)
			}
			if diff := cmp.Diff(tt.wantPages, pages); diff != "" {
				t.Errorf("GetPages(%+v) pages (-want +got):\n%s", tt.give, diff)
			}
			if next != tt.wantNext {
				t.Errorf("GetPages(%+v) = next %d, want %d", tt.give, next, tt.wantNext)
			}
			if n := asksSince(t, nc, asks); n != tt.wantAsks {
				t.Errorf("GetPages(%+v) asked %d times, want %d", tt.give, n, tt.wantAsks)
			}
		})
	}
	t.Run("stops at the page's error", func(t *testing.T) {
		stop := errors.New("stop")
		pages := 0
		next, err := stream.GetPages(ctx, js, "T", stream.BatchRequest{Seq: 1, NextFor: "t.a", Batch: 3}, func([]*jetstream.RawStreamMsg) error {
			pages++
			return stop
		})
		if !errors.Is(err, stop) || pages != 1 || next != 6 {
			t.Errorf("GetPages(page failing) = next %d, %v after %d pages, want next 6, the page's error after 1", next, err, pages)
		}
		if n := asksSince(t, nc, asks); n != 1 {
			t.Errorf("GetPages(page failing) asked %d times, want 1", n)
		}
	})
}

// asksSince returns how many messages sub received since the last call and
// drops them: all the connection published before is in by its flush.
func asksSince(t *testing.T, nc *nats.Conn, sub *nats.Subscription) int {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	n, _, err := sub.Pending()
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := sub.NextMsg(time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// twoSubjects returns a connection to a server whose stream T holds t.a0
// to t.a9 on t.a at the odd sequences 1 to 19 and t.b0 to t.b9 on t.b at
// the even ones.
func twoSubjects(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := natstest.Connect(t, natstest.Start(t, ""))
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		for _, s := range []string{"t.a", "t.b"} {
			if _, err := js.Publish(ctx, s, fmt.Appendf(nil, "%s%d", s, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return nc, js
}
