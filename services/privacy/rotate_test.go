package privacy_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/event"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"
	"github.com/parley-chat/parley/pkg/seal"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy"
	pjs "github.com/parley-chat/parley/services/privacy/internal/jetstream"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
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
	// v1's record, v2's tombstone, and the KEK state naming the new KEK.
	if info.Config.MaxMsgsPerSubject != 1 || info.State.Msgs != 3 {
		t.Errorf("KEYS after rotation: per-subject limit %d, %d messages; want 1 and 3", info.Config.MaxMsgsPerSubject, info.State.Msgs)
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

	// Neither an instance holding the old KEK, nor one holding a third,
	// starts; nor does a rotation from a KEK not in force.
	for _, kek := range []seal.Key{oldK, newKEK(t)} {
		if err := runOnce(t, s, kek); err == nil || !strings.Contains(err.Error(), "not the one in force") {
			t.Errorf("Run() with a KEK not in force = %v, want it refused", err)
		}
	}
	before := info.State.LastSeq
	if _, err := privacy.RotateKEK(t.Context(), js, newKEK(t), newKEK(t), nil); !errors.Is(err, privacy.ErrForeignKEK) {
		t.Errorf("RotateKEK() from a KEK not in force: error = %v, want ErrForeignKEK", err)
	}
	if info, err = keys.Info(t.Context()); err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != before || info.Config.MaxMsgsPerSubject != 1 {
		t.Errorf("KEYS after the refused rotation: last seq %d, limit %d; want %d and 1", info.State.LastSeq, info.Config.MaxMsgsPerSubject, before)
	}
}

// runOnce runs a privacy service with kek on s and returns what Run
// returned, stopping it at once if it started.
func runOnce(t *testing.T, s *natsembed.Server, kek seal.Key) error {
	t.Helper()
	nc, _ := natstest.Connect(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	return privacy.Run(ctx, privacy.Deps{NC: nc, Log: slog.New(slog.DiscardHandler), KEK: kek, AuditKey: auditKey})
}

// TestRotateKEKRefusedWhileServing: a rotation finds the privacy service
// serving on the bus and changes nothing; the service keeps registering
// visitors under its KEK.
func TestRotateKEKRefusedWhileServing(t *testing.T) {
	s := natstest.Start(t, "")
	nc, js := natstest.Connect(t, s)
	oldK := newKEK(t)
	start(t, s, oldK)
	if _, err := register(t.Context(), nc, visitorArgs()); err != nil {
		t.Fatal(err)
	}
	before := streamState(t, js, stream.Keys)
	if _, err := privacy.RotateKEK(t.Context(), js, oldK, newKEK(t), nil); !errors.Is(err, privacy.ErrServing) {
		t.Fatalf("RotateKEK() while serving: error = %v, want ErrServing", err)
	}
	if after := streamState(t, js, stream.Keys); after.LastSeq != before.LastSeq {
		t.Errorf("KEYS last sequence %d after the refused rotation, want %d: nothing stored", after.LastSeq, before.LastSeq)
	}
	if _, err := register(t.Context(), nc, visitorArgs()); err != nil {
		t.Errorf("register after the refused rotation: %v", err)
	}
}

func visitorArgs() privacyapi.RegisterVisitorArgs {
	return privacyapi.RegisterVisitorArgs{Tenant: tenant, Consent: event.Consent{Analytics: true, NoticeVersion: "2026-01"}}
}

// TestRotationRacingRegistrations registers visitors on a privacy service
// holding the old KEK without pause, before, during and after a rotation
// that is not told the service is serving (as if the check on the bus had
// missed it), so that the KEK state on the bus alone must keep the
// invariant: no key is ever wrapped under a KEK the service cannot unwrap.
// Every registration answered success must then have keys a service with
// the new KEK reads; every other must have been refused as unavailable.
// An instance starting mid-rotation is refused, whatever its KEK.
func TestRotationRacingRegistrations(t *testing.T) {
	s := natstest.Start(t, "")
	nc, js := natstest.Connect(t, s)
	oldK, newK := newKEK(t), newKEK(t)
	old := start(t, s, oldK)
	for range 50 {
		if _, err := register(t.Context(), nc, visitorArgs()); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu      sync.Mutex
		ok      []string
		refused int
		wrong   []error
	)
	attempts := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ok) + refused + len(wrong)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				id, err := register(t.Context(), nc, visitorArgs())
				mu.Lock()
				switch {
				case err == nil:
					ok = append(ok, id)
				case rpc.CodeOf(err) == rpc.CodeUnavailable:
					refused++
				default:
					wrong = append(wrong, err)
				}
				mu.Unlock()
			}
		})
	}
	natstest.Until(t, 30*time.Second, "registrations before the rotation", func() bool { return attempts() >= 20 })

	var midStart []error
	idle := func(context.Context) error {
		// Called before the rotation marker is stored, then after: the
		// second time, instances must be refused, whatever their KEK.
		if st, _, _ := readKEKState(t, js); st.RotatingTo != "" {
			midStart = append(midStart, runOnce(t, s, oldK), runOnce(t, s, newK))
		}
		return nil
	}
	rep, err := pjs.Rotate(t.Context(), js, keyring.New(oldK), keyring.New(newK), idle, nil)
	if err != nil {
		t.Fatalf("Rotate() error = %v", err)
	}
	// Past the end of the rotation: the old instance must refuse too.
	afterRotation := attempts()
	natstest.Until(t, 30*time.Second, "registrations after the rotation", func() bool { return attempts() >= afterRotation+20 })
	cancel()
	wg.Wait()
	old.stop()

	t.Logf("rotation re-wrapped %d records; registrations: %d answered success, %d refused", rep.Rewrapped, len(ok), refused)
	if len(wrong) > 0 {
		t.Errorf("registrations neither stored nor refused as unavailable: %v", wrong)
	}
	if refused == 0 {
		t.Error("no registration was refused: the race was not run")
	}
	if len(midStart) != 2 {
		t.Fatalf("instances started mid-rotation: %d tried, want 2", len(midStart))
	}
	for _, err := range midStart {
		if err == nil || !strings.Contains(err.Error(), "rotation is under way") {
			t.Errorf("Run() mid-rotation = %v, want it refused as a rotation under way", err)
		}
	}

	// Every key record in the store is under the new KEK.
	keysStream, err := js.Stream(t.Context(), stream.Keys)
	if err != nil {
		t.Fatal(err)
	}
	newID := privacy.KEKID(newK)
	for seq := uint64(1); ; {
		m, err := keysStream.GetMsg(t.Context(), seq, jetstream.WithGetMsgSubject("keys.*.*"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seq = m.Sequence + 1
		var rec keyring.Record
		if strings.HasPrefix(m.Subject, "keys._kek.") || json.Unmarshal(m.Data, &rec) != nil {
			continue
		}
		if rec.KEKID != newID {
			t.Errorf("%s is wrapped under %s after the rotation, want %s", m.Subject, rec.KEKID, newID)
		}
	}
	// And every visitor answered success has keys the service reads.
	start(t, s, newK)
	for _, id := range ok {
		if _, err := getKeys(t.Context(), nc, id, false); err != nil {
			t.Errorf("keys of visitor %s registered meanwhile: %v", id, err)
		}
	}
}

// readKEKState reads the KEK state as the last message on its subjects says.
func readKEKState(t *testing.T, js jetstream.JetStream) (pjs.KEKState, uint64, error) {
	t.Helper()
	s, err := js.Stream(t.Context(), stream.Keys)
	if err != nil {
		return pjs.KEKState{}, 0, err
	}
	m, err := s.GetLastMsgForSubject(t.Context(), stream.KEKStateSubjects)
	if err != nil {
		return pjs.KEKState{}, 0, err
	}
	var st pjs.KEKState
	return st, m.Sequence, json.Unmarshal(m.Data, &st)
}
