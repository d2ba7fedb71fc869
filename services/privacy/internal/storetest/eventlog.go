package storetest

import (
	"errors"
	"slices"
	"strconv"
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
		{"OfReadsOneSubjectInOrder", readOf},
		{"ScanReadsOneTenantAfter", scan},
		{"SeqAtFindsTheFirstStoredSince", seqAt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, open(t)) })
	}
}

func consentEvent(t *testing.T, person string) event.Envelope {
	t.Helper()
	return tenantConsent(t, "demo", person)
}

func tenantConsent(t *testing.T, tenant, person string) event.Envelope {
	t.Helper()
	e, err := event.NewClear(event.ConsentRecorded, tenant, person, person, time.Unix(1_700_000_000, 0), event.Consent{NoticeVersion: "n1"})
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

// seqs returns the sequences of events.
func seqs(events []app.StoredEvent) []uint64 {
	out := make([]uint64, len(events))
	for i, se := range events {
		out[i] = se.Seq
	}
	return out
}

func readOf(t *testing.T, l app.EventLog) {
	ctx := t.Context()
	if got, err := l.Of(ctx, "demo", "v1"); err != nil || len(got) != 0 {
		t.Fatalf("Of() of a subject without events = %v, %v; want none", got, err)
	}
	var want []uint64
	for i := range 300 {
		// More than one batched read, interleaved with other subjects'
		// events and another tenant's of the same id.
		want = append(want, mustAppend(t, l, consentEvent(t, "v1")))
		if i%3 == 0 {
			mustAppend(t, l, consentEvent(t, "v2"))
			mustAppend(t, l, tenantConsent(t, "other", "v1"))
		}
	}
	got, err := l.Of(ctx, "demo", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs(got), want) {
		t.Errorf("Of() read sequences %v, want %v", seqs(got), want)
	}
	for _, se := range got {
		if se.Event.Tenant != "demo" || se.Event.Aggregate != "v1" || se.Event.Type != event.ConsentRecorded {
			t.Fatalf("Of() read %+v, not an event of demo/v1", se.Event)
		}
	}
}

func scan(t *testing.T, l app.EventLog) {
	var demo []uint64
	for i := range 10 {
		demo = append(demo, mustAppend(t, l, consentEvent(t, "v"+strconv.Itoa(i))))
		mustAppend(t, l, tenantConsent(t, "other", "v1"))
	}
	collect := func(after uint64, n int) []uint64 {
		var got []uint64
		err := l.Scan(t.Context(), "demo", after, func(se app.StoredEvent) (bool, error) {
			if se.Event.Tenant != "demo" {
				t.Errorf("Scan() of demo read an event of %q", se.Event.Tenant)
			}
			got = append(got, se.Seq)
			return len(got) < n, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := collect(0, 100); !slices.Equal(got, demo) {
		t.Errorf("Scan(0) = %v, want %v", got, demo)
	}
	if got := collect(demo[3], 2); !slices.Equal(got, demo[4:6]) {
		t.Errorf("Scan(%d) stopped after 2 = %v, want %v", demo[3], got, demo[4:6])
	}
	all := 0
	if err := l.Scan(t.Context(), "*", 0, func(app.StoredEvent) (bool, error) { all++; return true, nil }); err != nil || all != 20 {
		t.Errorf("Scan() of every tenant read %d events, %v; want 20", all, err)
	}
	stop := errors.New("stop")
	err := l.Scan(t.Context(), "demo", 0, func(app.StoredEvent) (bool, error) { return true, stop })
	if !errors.Is(err, stop) {
		t.Errorf("Scan() whose each failed = %v, want its error", err)
	}
}

func seqAt(t *testing.T, l app.EventLog) {
	ctx := t.Context()
	at := func(when time.Time, want uint64) {
		t.Helper()
		if got, err := l.SeqAt(ctx, when); err != nil || got != want {
			t.Errorf("SeqAt(%v) = %d, %v; want %d", when, got, err, want)
		}
	}
	at(time.Now(), 1)
	// Stamped as they are stored, as the stream stamps them.
	stamped := func() uint64 {
		e := consentEvent(t, "v1")
		e.At = time.Now()
		return mustAppend(t, l, e)
	}
	first := stamped()
	between := time.Now()
	second := stamped()
	at(between.Add(-time.Hour), first)
	at(between, second)
	at(time.Now().Add(time.Hour), second+1)
}
