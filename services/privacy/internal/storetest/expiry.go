package storetest

import (
	"testing"
	"time"

	"github.com/parley-chat/parley/services/privacy/internal/app"
)

// OpenExpiries returns empty expiry schedules of their own, and a reader
// of when a visitor's expiry fires (false: none stored).
type OpenExpiries func(t *testing.T) (app.ExpiryScheduler, func(tenant, visitor string) (time.Time, bool))

// Expiries runs the expiry schedules' suite against the schedules open
// makes: an expiry fires the retention and its grace (1%) after it was
// stored, to the second; the newer of a visitor's replaces the older,
// even an earlier one; visitors' expiries are apart; malformed ids are
// refused.
func Expiries(t *testing.T, open OpenExpiries) {
	s, at := open(t)
	ctx := t.Context()
	if _, ok := at("t1", "v1"); ok {
		t.Fatal("an expiry before any was stored")
	}
	schedule := func(visitor string, retention time.Duration) {
		t.Helper()
		before := time.Now()
		if err := s.ScheduleExpiry(ctx, "t1", visitor, retention); err != nil {
			t.Fatalf("ScheduleExpiry(%s, %v) = %v", visitor, retention, err)
		}
		after := time.Now()
		got, ok := at("t1", visitor)
		lo := before.Add(retention + retention/100).Truncate(time.Second)
		hi := after.Add(retention + retention/100 + time.Second)
		if !ok || got.Before(lo) || got.After(hi) {
			t.Errorf("expiry of %s with retention %v at %v (stored %t), want between %v and %v", visitor, retention, got, ok, lo, hi)
		}
	}
	schedule("v1", 2*time.Hour)
	schedule("v2", 3*time.Hour)
	schedule("v1", time.Hour)
	v2, _ := at("t1", "v2")
	if hi := time.Now().Add(3 * time.Hour); v2.Before(hi) {
		t.Errorf("v2's expiry moved to %v with v1's", v2)
	}
	for _, ids := range [][2]string{{"t1", "a.b"}, {"*", "v1"}, {"t1", ""}} {
		if err := s.ScheduleExpiry(ctx, ids[0], ids[1], time.Hour); err == nil {
			t.Errorf("ScheduleExpiry(%q, %q) = nil, want an error", ids[0], ids[1])
		}
	}
}
