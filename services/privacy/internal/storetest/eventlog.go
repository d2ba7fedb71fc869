package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// OpenEventLog returns an empty event log of its own.
type OpenEventLog func(t *testing.T) app.EventLog

// EventLog runs the event log's suite against the logs open makes.
func EventLog(t *testing.T, open OpenEventLog) {
	tests := []struct {
		name string
		run  func(t *testing.T, l app.EventLog)
	}{
		{"AppendNumbersInOrder", appendNumbers},
		{"AppendTwiceStoresOnce", appendTwice},
		{"AppendExpectFencesEachAggregate", appendExpect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, open(t)) })
	}
}

func consentEvent(t *testing.T, person string) event.Envelope {
	t.Helper()
	e, err := event.NewClear(event.ConsentRecorded, "demo", person, person, time.Unix(1_700_000_000, 0), event.Consent{NoticeVersion: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustAppend(t *testing.T, l app.EventLog, e event.Envelope) uint64 {
	t.Helper()
	seq, err := l.Append(t.Context(), e)
	if err != nil {
		t.Fatalf("Append() = %v", err)
	}
	return seq
}

func wantLast(t *testing.T, l app.EventLog, want uint64) {
	t.Helper()
	if last, err := l.LastSeq(t.Context()); err != nil || last != want {
		t.Errorf("LastSeq() = %d, %v; want %d", last, err, want)
	}
}

func appendNumbers(t *testing.T, l app.EventLog) {
	wantLast(t, l, 0)
	a := mustAppend(t, l, consentEvent(t, "v1"))
	b := mustAppend(t, l, consentEvent(t, "v2"))
	if a == 0 || b <= a {
		t.Errorf("Append() sequences = %d then %d, want rising from 1", a, b)
	}
	wantLast(t, l, b)
}

func appendTwice(t *testing.T, l app.EventLog) {
	e := consentEvent(t, "v1")
	first := mustAppend(t, l, e)
	if again := mustAppend(t, l, e); again != first {
		t.Errorf("Append() of the same event again = %d, want %d", again, first)
	}
	wantLast(t, l, first)
}

func appendExpect(t *testing.T, l app.EventLog) {
	ctx := t.Context()
	first, err := l.AppendExpect(ctx, consentEvent(t, "v1"), 0)
	if err != nil {
		t.Fatalf("AppendExpect(0) on a new aggregate = %v", err)
	}
	// Another aggregate's events do not move v1's expectation.
	other := mustAppend(t, l, consentEvent(t, "v2"))
	if _, err := l.AppendExpect(ctx, consentEvent(t, "v1"), 0); !errors.Is(err, app.ErrConflict) {
		t.Errorf("AppendExpect(0) behind an event = %v, want ErrConflict", err)
	}
	second, err := l.AppendExpect(ctx, consentEvent(t, "v1"), first)
	if err != nil {
		t.Fatalf("AppendExpect(last) = %v", err)
	}
	if second <= other {
		t.Errorf("AppendExpect() = %d, want after %d", second, other)
	}
	wantLast(t, l, second)
}
