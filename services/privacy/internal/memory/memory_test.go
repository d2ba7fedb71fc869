package memory_test

import (
	"testing"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/keystoretest"
	"github.com/parley-chat/parley/services/privacy/internal/memory"
)

func TestKeyStore(t *testing.T) {
	keystoretest.Run(t, func(_ *testing.T, kekID string) app.KeyStore { return memory.NewKeyStore(kekID) })
}
