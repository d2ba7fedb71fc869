package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// OpenChatLog returns an empty CHAT of its own, and how the test stores an
// event on its conversation's subject, answering its sequence.
type OpenChatLog func(t *testing.T) (app.ChatLog, func(event.Envelope) uint64)

// ChatLog runs the CHAT reader's suite against the logs open makes.
func ChatLog(t *testing.T, open OpenChatLog) {
	tests := []struct {
		name string
		run  func(t *testing.T, l app.ChatLog, add func(event.Envelope) uint64)
	}{
		{"ReadsTheFilterInOrderAfterASequence", readsFilter},
		{"ReadsPastManyBatches", readsBatches},
		{"StopsWhenTheReaderDoes", readStops},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, add := open(t)
			tt.run(t, l, add)
		})
	}
}

func chatEvent(t *testing.T, tenant, conv string) event.Envelope {
	t.Helper()
	e, err := event.NewClear(event.MessagePosted, tenant, "v1", conv, time.Unix(1_700_000_000, 0), event.Posted{Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// read returns the sequences and event ids Read gives.
func read(t *testing.T, l app.ChatLog, filter string, after uint64) (seqs []uint64, ids []string) {
	t.Helper()
	err := l.Read(t.Context(), filter, after, func(seq uint64, e event.Envelope) (bool, error) {
		seqs, ids = append(seqs, seq), append(ids, e.ID)
		return true, nil
	})
	if err != nil {
		t.Fatalf("Read(%s, %d) = %v", filter, after, err)
	}
	return seqs, ids
}

func readsFilter(t *testing.T, l app.ChatLog, add func(event.Envelope) uint64) {
	if last, err := l.LastSeq(t.Context()); err != nil || last != 0 {
		t.Errorf("LastSeq() of an empty CHAT = %d, %v; want 0", last, err)
	}
	a, b, c := chatEvent(t, "demo", "c1"), chatEvent(t, "other", "c2"), chatEvent(t, "demo", "c3")
	sa, _, sc := add(a), add(b), add(c)
	if last, err := l.LastSeq(t.Context()); err != nil || last != sc {
		t.Errorf("LastSeq() = %d, %v; want %d", last, err, sc)
	}
	tests := []struct {
		filter   string
		after    uint64
		wantSeqs []uint64
		wantIDs  []string
	}{
		{"chat.demo.*", 0, []uint64{sa, sc}, []string{a.ID, c.ID}},
		{"chat.demo.*", sa, []uint64{sc}, []string{c.ID}},
		{"chat.demo.c1", 0, []uint64{sa}, []string{a.ID}},
		{"chat.demo.*", sc, nil, nil},
	}
	for _, tt := range tests {
		seqs, ids := read(t, l, tt.filter, tt.after)
		if !slices.Equal(seqs, tt.wantSeqs) || !slices.Equal(ids, tt.wantIDs) {
			t.Errorf("Read(%s, %d) = %v %v, want %v %v", tt.filter, tt.after, seqs, ids, tt.wantSeqs, tt.wantIDs)
		}
	}
}

func readsBatches(t *testing.T, l app.ChatLog, add func(event.Envelope) uint64) {
	var want []uint64
	for range 700 {
		want = append(want, add(chatEvent(t, "demo", "c1")))
	}
	if seqs, _ := read(t, l, "chat.demo.*", 0); !slices.Equal(seqs, want) {
		t.Errorf("Read() gave %d events, want the %d stored, in order", len(seqs), len(want))
	}
}

func readStops(t *testing.T, l app.ChatLog, add func(event.Envelope) uint64) {
	for range 3 {
		add(chatEvent(t, "demo", "c1"))
	}
	calls := 0
	err := l.Read(t.Context(), "chat.demo.*", 0, func(uint64, event.Envelope) (bool, error) {
		calls++
		return false, nil
	})
	if err != nil || calls != 1 {
		t.Errorf("Read() stopped after the first = %d calls, %v; want 1, nil", calls, err)
	}
	errBoom := errors.New("boom")
	err = l.Read(t.Context(), "chat.demo.*", 0, func(uint64, event.Envelope) (bool, error) { return true, errBoom })
	if !errors.Is(err, errBoom) {
		t.Errorf("Read() with a failing reader = %v, want its error", err)
	}
}
