package audit_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/audit"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestCheckpointSignature(t *testing.T) {
	key, other := newKey(t), newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	cp := audit.Checkpoint{Tenant: "demo", Count: 3, Head: chain(t, 3)[2].Hash,
		At: time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC)}.Sign(key)
	// What an auditor saves is JSON: the signature must survive it.
	data, err := json.Marshal(cp)
	if err != nil {
		t.Fatal(err)
	}
	var saved audit.Checkpoint
	if err := json.Unmarshal(data, &saved); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    func(audit.Checkpoint) audit.Checkpoint
		pub     ed25519.PublicKey
		wantErr error
	}{
		{"as signed", func(c audit.Checkpoint) audit.Checkpoint { return c }, pub, nil},
		{"count lowered", func(c audit.Checkpoint) audit.Checkpoint { c.Count = 2; return c }, pub, audit.ErrBadSignature},
		{"head changed", func(c audit.Checkpoint) audit.Checkpoint { c.Head = chain(t, 2)[1].Hash; return c }, pub, audit.ErrBadSignature},
		{"other tenant", func(c audit.Checkpoint) audit.Checkpoint { c.Tenant = "acme"; return c }, pub, audit.ErrBadSignature},
		{"time changed", func(c audit.Checkpoint) audit.Checkpoint { c.At = c.At.Add(time.Nanosecond); return c }, pub, audit.ErrBadSignature},
		{"signed by another key", func(c audit.Checkpoint) audit.Checkpoint { return c.Sign(other) }, pub, audit.ErrBadSignature},
		{"no signature", func(c audit.Checkpoint) audit.Checkpoint { c.Signature = nil; return c }, pub, audit.ErrBadSignature},
		{"short key", func(c audit.Checkpoint) audit.Checkpoint { return c }, pub[:16], audit.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give(saved).Verify(tt.pub); !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestCheckCheckpoint(t *testing.T) {
	entries := chain(t, 4)
	at := entries[3].At
	cp := func(count int, head string) audit.Checkpoint {
		return audit.Checkpoint{Tenant: "demo", Count: count, Head: head, At: at}
	}
	tests := []struct {
		name    string
		entries []audit.Entry
		give    audit.Checkpoint
		wantErr bool
	}{
		{"at the head", entries, cp(4, entries[3].Hash), false},
		{"behind the head", entries, cp(2, entries[1].Hash), false},
		{"empty checkpoint, empty trail", nil, cp(0, ""), false},
		{"trail deleted", nil, cp(4, entries[3].Hash), true},
		{"newest entries cut off", entries[:3], cp(4, entries[3].Hash), true},
		{"rewritten", chain(t, 4)[:2], cp(2, "0000"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := audit.CheckCheckpoint(tt.entries, tt.give)
			var cerr *audit.CheckpointError
			if got := errors.As(err, &cerr) && errors.Is(err, audit.ErrBroken); got != tt.wantErr {
				t.Errorf("CheckCheckpoint(%d entries, count %d) = %v, want error %v", len(tt.entries), tt.give.Count, err, tt.wantErr)
			}
		})
	}
}
