package jetstream_test

import (
	"testing"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/stream"

	"github.com/parley-chat/parley/services/privacy/internal/app"
	"github.com/parley-chat/parley/services/privacy/internal/jetstream"
	"github.com/parley-chat/parley/services/privacy/internal/keystoretest"
)

func TestKeyStore(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T, kekID string) app.KeyStore {
		_, js := natstest.Connect(t, natstest.Start(t, ""))
		if err := stream.Ensure(t.Context(), js, stream.Options{}, stream.Keys); err != nil {
			t.Fatal(err)
		}
		ks, err := jetstream.NewKeyStore(t.Context(), js, kekID)
		if err != nil {
			t.Fatal(err)
		}
		return ks
	})
}
