package app_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/event"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

// countingLog counts the reads of one subject's events, and the scans; when
// gate is set,
// each read takes its events, says so on taken, then answers once gate is
// closed.
type countingLog struct {
	app.EventLog
	reads, scans atomic.Int64
	taken        chan struct{}
	gate         chan struct{}
}

func (l *countingLog) Follow(from uint64, apply func(seq uint64, e event.Envelope)) {
	l.EventLog.(follower).Follow(from, apply)
}

func (l *countingLog) Scan(ctx context.Context, tenant string, after uint64, each func(app.StoredEvent) (bool, error)) error {
	l.scans.Add(1)
	return l.EventLog.Scan(ctx, tenant, after, each)
}

func (l *countingLog) Of(ctx context.Context, tenant, person string) ([]app.StoredEvent, error) {
	l.reads.Add(1)
	out, err := l.EventLog.Of(ctx, tenant, person)
	if l.gate != nil {
		l.taken <- struct{}{}
		<-l.gate
	}
	return out, err
}

// newIndexApp returns an App holding at most size subjects, on a log that
// counts its reads, and the log under it.
func newIndexApp(t *testing.T, size int, gated bool) (*app.App, *countingLog) {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	var log *countingLog
	a := newMemoryAppWith(t, c, new(memory.Bus), func(s *app.Stores) {
		log = &countingLog{EventLog: s.Events}
		if gated {
			log.taken, log.gate = make(chan struct{}), make(chan struct{})
		}
		s.Events, s.KeyCacheSize = log, size
	})
	return a, log
}

func appendConsent(t *testing.T, l app.EventLog, person string, c event.Consent) {
	t.Helper()
	e, err := event.NewClear(event.ConsentRecorded, "demo", person, person, time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC), c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), e); err != nil {
		t.Fatal(err)
	}
}

func wantAnalytics(t *testing.T, a *app.App, person string, want bool) {
	t.Helper()
	got, err := a.GetConsent(t.Context(), "demo", person)
	if err != nil || got.Consent.Analytics != want {
		t.Errorf("GetConsent(%s) = %+v, %v; want analytics %v", person, got, err, want)
	}
}

// TestIndexHoldsAtMostItsSize: the index keeps the subjects last asked
// about, no more than its size, reads a subject it does not hold from the
// store once, and answers one it let go as before.
func TestIndexHoldsAtMostItsSize(t *testing.T) {
	a, log := newIndexApp(t, 2, false)
	for _, v := range []string{"v1", "v2", "v3"} {
		appendConsent(t, log, v, event.Consent{Analytics: v != "v2", NoticeVersion: "n1"})
	}
	if n := app.IndexLen(a); n != 0 {
		t.Errorf("the index holds %d subjects before any is asked about, want 0: a start reads none", n)
	}
	for _, v := range []string{"v1", "v2", "v3", "v3"} {
		wantAnalytics(t, a, v, v != "v2")
	}
	if n := app.IndexLen(a); n != 2 {
		t.Errorf("the index holds %d subjects, want its size, 2", n)
	}
	if n := log.reads.Load(); n != 3 {
		t.Errorf("%d reads of a subject's events for three subjects, one asked twice; want 3", n)
	}
	// v1 was let go; what is stored since is read with the rest.
	appendConsent(t, log, "v1", event.Consent{NoticeVersion: "n2"})
	wantAnalytics(t, a, "v1", false)
	// v3 is held, and follows the stream.
	appendConsent(t, log, "v3", event.Consent{NoticeVersion: "n2"})
	wantAnalytics(t, a, "v3", false)
	if n := log.reads.Load(); n != 4 {
		t.Errorf("%d reads of a subject's events, want 4: a held subject follows the stream unread", n)
	}
}

// TestIndexReadMissesNoEventAppliedMeanwhile: an event stored and applied
// while a subject's events are read, after the read took them, is in what
// the index then holds.
func TestIndexReadMissesNoEventAppliedMeanwhile(t *testing.T) {
	a, log := newIndexApp(t, 10, true)
	appendConsent(t, log, "v1", event.Consent{Analytics: false, NoticeVersion: "n1"})
	done := make(chan error, 1)
	go func() {
		_, err := a.GetConsent(context.WithoutCancel(t.Context()), "demo", "v1")
		done <- err
	}()
	<-log.taken
	appendConsent(t, log, "v1", event.Consent{Analytics: true, NoticeVersion: "n2"})
	close(log.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantAnalytics(t, a, "v1", true)
	if n := log.reads.Load(); n != 1 {
		t.Errorf("%d reads of v1's events, want 1", n)
	}
}
