package app

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/chatapi"
	"github.com/parley-chat/parley/pkg/event"
)

// TestPageJSONAsEncodingJSON checks that a page encoded as its messages
// are taken reads byte for byte as encoding/json writes the same
// chatapi.MessagesResult: what callers read did not change.
func TestPageJSONAsEncodingJSON(t *testing.T) {
	text := func(s string) *string { return &s }
	at := time.Date(2026, 12, 6, 18, 4, 5, 123456789, time.FixedZone("", 3600))
	tests := []struct {
		name string
		give []chatapi.Message
		next *uint64
	}{
		{name: "empty", give: nil},
		{name: "plain", give: []chatapi.Message{
			{ID: "m1", Seq: 1, Author: &event.Author{Role: "visitor", ID: "v1"}, Text: text("hello"), At: at},
			{ID: "m2", Seq: 7, Author: &event.Author{Role: "agent", ID: "a1"}, Text: text("hi"), At: at.UTC()},
		}, next: new(uint64(7))},
		{name: "escapes", give: []chatapi.Message{
			{ID: "m1", Seq: 1, Author: &event.Author{Role: "visitor", ID: "v1"}, Text: text("<b>&\"\\\n\t\u2028\u2029\x01é😀 \xff"), At: at},
		}},
		{name: "erased", give: []chatapi.Message{{ID: "m1", Seq: 3, At: time.Time{}, Erased: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pg := newPageJSON(0, "messages")
			for _, m := range tt.give {
				if ok, err := pg.take(&m); !ok || err != nil {
					t.Fatalf("take(%+v) = %v, %v; want true, nil", m, ok, err)
				}
			}
			got := pg.end(tt.next)
			want, err := json.Marshal(chatapi.MessagesResult{Messages: append([]chatapi.Message{}, tt.give...), Next: tt.next})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("page = %s\nwant   %s", got, want)
			}
		})
	}
}

// TestPageJSONBounded checks that a page of texts all escaped stops within
// chatapi.PageBytes, its first item always taken.
func TestPageJSONBounded(t *testing.T) {
	big := string(make([]byte, chatapi.MaxTextBytes)) // NUL: six bytes each in JSON
	pg := newPageJSON(0, "messages")
	taken := 0
	for i := range 100 {
		m := chatapi.Message{ID: "m", Seq: uint64(i), Text: &big}
		ok, err := pg.take(&m)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		taken++
	}
	if taken != 1 {
		t.Errorf("took %d messages of %d bytes escaped, want only the first", taken, 6*chatapi.MaxTextBytes)
	}
	small := "x"
	pg = newPageJSON(0, "messages")
	for taken = 0; ; taken++ {
		m := chatapi.Message{ID: "m", Seq: uint64(taken), Text: &small}
		if ok, err := pg.take(&m); err != nil || !ok {
			break
		}
	}
	if taken != chatapi.PageItems {
		t.Errorf("took %d small messages, want %d", taken, chatapi.PageItems)
	}
	if n := len(pg.end(nil)); n > chatapi.PageBytes+64 {
		t.Errorf("page of %d bytes, want at most about %d", n, chatapi.PageBytes)
	}
}
