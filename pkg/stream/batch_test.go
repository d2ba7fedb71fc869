package stream_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestGetBatch reads pages of one subject among others, the last of
// several subjects and nothing, each answer whole and in order, with the
// server's count of what is left.
func TestGetBatch(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
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
