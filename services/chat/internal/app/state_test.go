package app

import (
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/event"
)

// clock is a time that tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func stateAt(c *clock) *state {
	st := newState(c.now)
	return &st
}

// TestErasedConversationStaysOut checks that a late event of an erased
// conversation (Project's getOrCreate) and a view entry restored after the
// erasure (track) do not bring it back within erasedFor.
func TestErasedConversationStaysOut(t *testing.T) {
	c := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := stateAt(c)
	if st.getOrCreate("acme", "c1") == nil {
		t.Fatal("getOrCreate(c1) = nil before erasure")
	}
	st.forget("acme", "c1")
	c.t = c.t.Add(erasedFor - time.Minute)
	if e := st.getOrCreate("acme", "c1"); e != nil {
		t.Errorf("getOrCreate(c1) %v after erasure = %p, want nil", erasedFor-time.Minute, e)
	}
	restored := &entry{}
	restored.conv.Apply(1, event.Envelope{Type: event.ConversationOpened, Tenant: "acme", Aggregate: "c1", Person: "v1"}, nil)
	st.track(restored)
	if e := st.get("acme", "c1"); e != nil {
		t.Errorf("get(c1) after track of an erased conversation = %p, want nil", e)
	}
	if !st.isErased("acme", "c1") {
		t.Error("isErased(c1) = false, want true")
	}
}

// TestErasedSetBound fills the erased set, then checks that erasures older
// than erasedFor leave it.
func TestErasedSetBound(t *testing.T) {
	c := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := stateAt(c)
	const n = 1000
	for i := range n {
		st.forget("acme", fmt.Sprintf("c%d", i))
	}
	if got := len(st.erased); got != n {
		t.Fatalf("erased holds %d ids, want %d", got, n)
	}
	c.t = c.t.Add(erasedFor)
	if st.isErased("acme", "c0") {
		t.Error("isErased(c0) after erasedFor = true, want false")
	}
	st.forget("acme", "late")
	if got := len(st.erased); got != 1 {
		t.Errorf("erased holds %d ids after erasedFor, want 1", got)
	}
}
