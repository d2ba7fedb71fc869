package stream_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestLastSeq checks LastSeq against the stream's own description, empty
// and after appends, and an unknown stream's error.
func TestLastSeq(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	ctx := t.Context()
	if err := stream.Create(ctx, js, stream.Options{}, stream.Privacy); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		got, err := stream.LastSeq(ctx, js, stream.Privacy)
		if err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(ctx, stream.Privacy)
		if err != nil {
			t.Fatal(err)
		}
		if want := st.CachedInfo().State.LastSeq; got != want || got != uint64(i) {
			t.Errorf("LastSeq() after %d appends = %d, want %d", i, got, want)
		}
		if _, err := js.Publish(ctx, stream.PrivacySubject("demo", "v1"), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.LastSeq(ctx, js, "NONE"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("LastSeq(unknown stream) = %v, want jetstream.ErrStreamNotFound", err)
	}
}
