package settings_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/kvmirror"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/services/gateway/internal/settings"
)

func TestReader(t *testing.T) {
	s := natstest.Start(t, "")
	_, js := natstest.Connect(t, s)
	r, err := settings.Open(t.Context(), js, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	collect := func(tenant string) bool {
		t.Helper()
		s, err := r.Of(t.Context(), tenant)
		if err != nil {
			t.Fatalf("Of(%s) error = %v", tenant, err)
		}
		return s.CollectNetworkData
	}
	// Not read yet: no bucket is no settings known, not the defaults.
	if _, err := r.Of(t.Context(), "demo"); !errors.Is(err, kvmirror.ErrNotReady) {
		t.Errorf("Of() without a SETTINGS bucket: error %v, want kvmirror.ErrNotReady", err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: privacyapi.SettingsBucket})
	if err != nil {
		t.Fatal(err)
	}
	put := func(tenant string, s privacyapi.Settings) {
		t.Helper()
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), tenant, b); err != nil {
			t.Fatal(err)
		}
	}
	put("on", privacyapi.Settings{RetentionDays: 30, CollectNetworkData: true})
	put("off", privacyapi.Settings{RetentionDays: 30})
	// The mirror finds the bucket on its next try, within pkg/retry's
	// longest wait.
	natstest.Until(t, 10*time.Second, "the reader mirrors the new bucket", func() bool {
		s, err := r.Of(t.Context(), "on")
		return err == nil && s.CollectNetworkData
	})
	tests := []struct {
		tenant string
		want   bool
	}{
		{"on", true},
		{"off", false},
		{"never-set", false},
	}
	for _, tt := range tests {
		if got := collect(tt.tenant); got != tt.want {
			t.Errorf("Of(%s).CollectNetworkData = %t, want %t", tt.tenant, got, tt.want)
		}
	}
	put("on", privacyapi.Settings{RetentionDays: 30})
	natstest.Until(t, 10*time.Second, "the setting is turned off", func() bool { return !collect("on") })
}
