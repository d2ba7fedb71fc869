package chat_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the tests when a goroutine outlives them: every Run must
// stop all it started before it returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
