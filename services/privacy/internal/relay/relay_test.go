package relay

import (
	"testing"

	"github.com/parley-chat/parley/pkg/stream"
)

// TestAnalyticsWindowOutlastsRedelivery holds ANALYTICS's duplicate window
// to what the relay's facts need: an event redelivered after ackWait
// yields facts the stream still drops as duplicates.
func TestAnalyticsWindowOutlastsRedelivery(t *testing.T) {
	cfg, err := stream.Config(stream.Analytics, stream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Duplicates < 2*ackWait {
		t.Errorf("ANALYTICS's duplicate window = %v, want at least twice the relay's AckWait (%v)", cfg.Duplicates, ackWait)
	}
}
