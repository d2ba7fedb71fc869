package stream_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/stream"
)

// TestSettingsBucketName keeps the two names of the SETTINGS bucket, the
// contract's and the definition's, one.
func TestSettingsBucketName(t *testing.T) {
	if stream.SettingsBucket != privacyapi.SettingsBucket {
		t.Errorf("stream.SettingsBucket = %q, privacyapi.SettingsBucket = %q, want them equal", stream.SettingsBucket, privacyapi.SettingsBucket)
	}
}

func TestCreate(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	ctx := t.Context()

	if err := stream.Create(ctx, js, stream.Options{}, stream.Names()...); err != nil {
		t.Fatalf("Create() on an empty server = %v, want nil", err)
	}
	if err := stream.CreateBuckets(ctx, js, stream.Options{}, stream.Buckets()...); err != nil {
		t.Fatalf("CreateBuckets() on an empty server = %v, want nil", err)
	}
	// The definitions, as the server stored them, are what a second start
	// finds: no drift.
	if err := stream.Create(ctx, js, stream.Options{}, stream.Names()...); err != nil {
		t.Errorf("Create() again = %v, want nil", err)
	}
	if err := stream.CreateBuckets(ctx, js, stream.Options{}, stream.Buckets()...); err != nil {
		t.Errorf("CreateBuckets() again = %v, want nil", err)
	}

	// Another definition of CHAT and of TENANTS: reported, not applied.
	other := stream.Options{ChatMaxAge: time.Hour}
	err := stream.Create(ctx, js, other, stream.Keys, stream.Chat)
	if !errors.Is(err, stream.ErrDrift) {
		t.Fatalf("Create() with another CHAT definition = %v, want ErrDrift", err)
	}
	s, err := js.Stream(ctx, stream.Chat)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxAge; got == time.Hour {
		t.Errorf("CHAT max age after Create() with drift = %v, want it left as it was", got)
	}
	cfg, _ := stream.BucketConfig(stream.TenantsBucket, stream.Options{})
	cfg.History = 5
	if _, err := js.UpdateKeyValue(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := stream.CreateBuckets(ctx, js, stream.Options{}, stream.Buckets()...); !errors.Is(err, stream.ErrDrift) {
		t.Errorf("CreateBuckets() with another TENANTS definition = %v, want ErrDrift", err)
	}
}

// TestCreateRefusesCopies covers a stream that somebody reconfigured (or
// created before the service) to source another: the service must not run
// on it as if it merely had an old configuration.
func TestCreateRefusesCopies(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	ctx := t.Context()
	if err := stream.Create(ctx, js, stream.Options{}, stream.Keys); err != nil {
		t.Fatal(err)
	}
	kv, err := stream.BucketConfig(stream.TenantsBucket, stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kv.Sources = []*jetstream.StreamSource{{Name: stream.Keys}}
	if _, err := js.CreateKeyValue(ctx, kv); err != nil {
		t.Fatal(err)
	}
	chat, err := stream.Config(stream.Chat, stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	chat.Mirror, chat.Subjects = &jetstream.StreamSource{Name: stream.Keys}, nil
	if _, err := js.CreateStream(ctx, chat); err != nil {
		t.Fatal(err)
	}

	err = stream.Create(ctx, js, stream.Options{}, stream.Chat)
	if !errors.Is(err, stream.ErrCopies) || errors.Is(err, stream.ErrDrift) {
		t.Errorf("Create() of a mirror = %v, want ErrCopies and not ErrDrift", err)
	}
	err = stream.CreateBuckets(ctx, js, stream.Options{}, stream.TenantsBucket)
	if !errors.Is(err, stream.ErrCopies) || errors.Is(err, stream.ErrDrift) {
		t.Errorf("CreateBuckets() of a bucket sourcing KEYS = %v, want ErrCopies and not ErrDrift", err)
	}
}

func TestApply(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	ctx := t.Context()
	all := func(a stream.Action) []stream.Applied {
		var want []stream.Applied
		for _, n := range stream.Names() {
			want = append(want, stream.Applied{Name: n, Action: a})
		}
		for _, b := range stream.Buckets() {
			want = append(want, stream.Applied{Name: b, Bucket: true, Action: a})
		}
		return want
	}

	// An old data dir: CHAT with an older definition, and TENANTS with one
	// that sources KEYS.
	old := stream.Options{ChatMaxAge: time.Hour}
	if err := stream.Create(ctx, js, old, stream.Chat, stream.Keys); err != nil {
		t.Fatal(err)
	}
	kv, _ := stream.BucketConfig(stream.TenantsBucket, stream.Options{})
	kv.Sources = []*jetstream.StreamSource{{Name: stream.Keys}}
	if _, err := js.CreateKeyValue(ctx, kv); err != nil {
		t.Fatal(err)
	}

	got, err := stream.Apply(ctx, js, stream.Options{})
	if err != nil {
		t.Fatalf("Apply() error = %v", err)
	}
	want := all(stream.Created)
	for i, a := range want {
		switch a.Name {
		case stream.Chat, stream.TenantsBucket:
			want[i].Action = stream.Updated
		case stream.Keys:
			want[i].Action = stream.Unchanged
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Apply() (-want +got):\n%s", diff)
	}
	if err := stream.Create(ctx, js, stream.Options{}, stream.Names()...); err != nil {
		t.Errorf("Create() after Apply() = %v, want nil: every stream as defined", err)
	}
	if err := stream.CreateBuckets(ctx, js, stream.Options{}, stream.Buckets()...); err != nil {
		t.Errorf("CreateBuckets() after Apply() = %v, want nil: no source left", err)
	}

	got, err = stream.Apply(ctx, js, stream.Options{})
	if err != nil {
		t.Fatalf("Apply() again: %v", err)
	}
	if diff := cmp.Diff(all(stream.Unchanged), got); diff != "" {
		t.Errorf("Apply() again (-want +got):\n%s", diff)
	}
}

// TestApplyShortensDuplicateWindows takes over CHAT and ANALYTICS as
// earlier versions defined them, with two-minute duplicate windows: Apply
// gives the running streams this version's shorter ones, which the server
// then holds the ids of.
func TestApplyShortensDuplicateWindows(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	ctx := t.Context()
	for _, name := range []string{stream.Chat, stream.Analytics} {
		cfg, err := stream.Config(name, stream.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Duplicates >= 2*time.Minute {
			t.Errorf("Config(%s).Duplicates = %v, want less than the 2m0s of earlier versions", name, cfg.Duplicates)
		}
		cfg.Duplicates = 2 * time.Minute
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.Apply(ctx, js, stream.Options{}); err != nil {
		t.Fatalf("Apply() error = %v", err)
	}
	for _, name := range []string{stream.Chat, stream.Analytics} {
		want, _ := stream.Config(name, stream.Options{})
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.Duplicates; got != want.Duplicates {
			t.Errorf("%s's duplicate window after Apply() = %v, want %v", name, got, want.Duplicates)
		}
	}
}

// TestOpen shows what a service starting finds: a missing stream created,
// one of another definition used as it is with a warning naming it, and
// one that copies another refused.
func TestOpen(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t, ""))
	ctx := t.Context()
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))

	st, err := stream.Open(ctx, js, stream.Options{}, log, stream.Chat)
	if err != nil || st.CachedInfo().Config.Name != stream.Chat {
		t.Fatalf("Open(CHAT) on an empty server = %v, %v; want CHAT", st, err)
	}
	if logs.Len() > 0 {
		t.Errorf("Open(CHAT) on an empty server logged %q, want nothing", logs.String())
	}
	st, err = stream.Open(ctx, js, stream.Options{ChatMaxAge: time.Hour}, log, stream.Chat)
	if err != nil {
		t.Fatalf("Open(CHAT) of another definition = %v, want the stream as it is", err)
	}
	if got := st.CachedInfo().Config.MaxAge; got == time.Hour {
		t.Errorf("CHAT max age after Open() with drift = %v, want it left as it was", got)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "stream "+stream.Chat) {
		t.Errorf("Open(CHAT) of another definition logged %q, want a warning naming CHAT", logs.String())
	}
	if err := stream.CreateMissing(ctx, js, stream.Options{ChatMaxAge: time.Hour}, log, stream.Chat, stream.Keys); err != nil {
		t.Errorf("CreateMissing(CHAT of another definition, KEYS) = %v, want nil", err)
	}
	if _, err := js.Stream(ctx, stream.Keys); err != nil {
		t.Errorf("KEYS after CreateMissing: %v", err)
	}

	profiles, err := stream.Config(stream.Profiles, stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	profiles.Mirror, profiles.Subjects = &jetstream.StreamSource{Name: stream.Keys}, nil
	if _, err := js.CreateStream(ctx, profiles); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Open(ctx, js, stream.Options{}, log, stream.Profiles); !errors.Is(err, stream.ErrCopies) {
		t.Errorf("Open() of a mirror = %v, want ErrCopies", err)
	}
}
