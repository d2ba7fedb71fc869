package privacy_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy"
)

// TestRotateKEK rotates a store twice over (the second run finds nothing
// left to do, as a resumed rotation would), checks the service then serves
// the same keys under the new KEK only, and that a record under a third KEK
// stops a rotation without moving anything.
func TestRotateKEK(t *testing.T) {
	s := natstest.Start(t, "")
	nc, js := natstest.Connect(t, s)
	oldK, newK := newKEK(t), newKEK(t)

	svc := start(t, s, oldK)
	want, err := getKeys(t.Context(), nc, "v1", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := getKeys(t.Context(), nc, "v2", true); err != nil {
		t.Fatal(err)
	}
	if _, err := erase(t, nc, visitorOf("v2"), "v2"); err != nil {
		t.Fatal(err)
	}
	svc.stop()

	var calls [][2]int
	got, err := privacy.RotateKEK(t.Context(), js, oldK, newK, func(done, total int) { calls = append(calls, [2]int{done, total}) })
	if err != nil {
		t.Fatalf("RotateKEK() error = %v", err)
	}
	wantRep := privacy.RotationReport{OldKEKID: privacy.KEKID(oldK), NewKEKID: privacy.KEKID(newK), Rewrapped: 1, Tombstones: 1}
	if diff := cmp.Diff(wantRep, got); diff != "" {
		t.Errorf("RotateKEK() report mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][2]int{{1, 2}, {2, 2}}, calls); diff != "" {
		t.Errorf("RotateKEK() progress mismatch (-want +got):\n%s", diff)
	}
	again, err := privacy.RotateKEK(t.Context(), js, oldK, newK, nil)
	if err != nil || again.Rewrapped != 0 || again.AlreadyRewrapped != 1 {
		t.Errorf("RotateKEK() run again = %+v, %v; want nothing re-wrapped, 1 already", again, err)
	}
	keys, err := js.Stream(t.Context(), stream.Keys)
	if err != nil {
		t.Fatal(err)
	}
	info, err := keys.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxMsgsPerSubject != 1 || info.State.Msgs != 2 {
		t.Errorf("KEYS after rotation: per-subject limit %d, %d messages; want 1 and 2", info.Config.MaxMsgsPerSubject, info.State.Msgs)
	}

	// The service under the new KEK serves the keys v1 had.
	rotated := start(t, s, newK)
	k1, err := getKeys(t.Context(), nc, "v1", false)
	if err != nil {
		t.Fatalf("Get(v1) under the new KEK: %v", err)
	}
	if k1 != want {
		t.Error("Get(v1) after rotation returned other keys than before")
	}
	rotated.stop()

	// A record under a third KEK is neither old nor new: nothing moves.
	foreign := start(t, s, newKEK(t))
	if _, err := getKeys(t.Context(), nc, "v3", true); err != nil {
		t.Fatal(err)
	}
	foreign.stop()
	before := info.State.LastSeq
	if _, err := privacy.RotateKEK(t.Context(), js, oldK, newK, nil); !errors.Is(err, privacy.ErrForeignKEK) {
		t.Errorf("RotateKEK() over a foreign record error = %v, want ErrForeignKEK", err)
	}
	if info, err = keys.Info(t.Context()); err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != before+1 || info.Config.MaxMsgsPerSubject != 1 {
		t.Errorf("KEYS after the refused rotation: last seq %d, limit %d; want %d (only v3 added) and 1", info.State.LastSeq, info.Config.MaxMsgsPerSubject, before+1)
	}
}
