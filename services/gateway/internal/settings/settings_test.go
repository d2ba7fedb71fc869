package settings_test

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/services/gateway/internal/settings"
)

func TestReader(t *testing.T) {
	s := natstest.Start(t, "")
	_, js := natstest.Connect(t, s)
	r := settings.NewReader(js)
	collect := func(tenant string) bool {
		t.Helper()
		s, err := r.Of(t.Context(), tenant)
		if err != nil {
			t.Fatalf("Of(%s) error = %v", tenant, err)
		}
		return s.CollectNetworkData
	}
	if collect("demo") {
		t.Error("Of() without a SETTINGS bucket = true, want false")
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
	if collect("on") {
		t.Error("Of() after the setting was turned off = true, want false")
	}
}
