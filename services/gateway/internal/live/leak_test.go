package live

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests when a goroutine outlives them: a closed hub
// holds no subscription, pipeline or session.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
