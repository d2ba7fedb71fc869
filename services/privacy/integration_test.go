package privacy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/parley-chat/parley/pkg/natsembed/natstest"
	"github.com/parley-chat/parley/pkg/privacyapi"
	"github.com/parley-chat/parley/pkg/rpc"

	"github.com/parley-chat/parley/services/privacy"
	"github.com/parley-chat/parley/services/privacy/internal/keyring"
)

// TestRotateKEKResealsSecrets registers a bot and an integration, rotates
// the KEK, and checks that their secrets are sealed under the new KEK only
// (the old one no longer opens them), the same secrets as given, that a
// rotation run again finds nothing left, and that the service under the
// new KEK keeps serving them.
func TestRotateKEKResealsSecrets(t *testing.T) {
	s := natstest.Start(t, "")
	nc, js := natstest.Connect(t, s)
	oldK, newK := newKEK(t), newKEK(t)

	svc := start(t, s, oldK)
	secrets := map[string][]byte{}
	for _, kind := range []string{privacyapi.KindBot, privacyapi.KindIntegration} {
		res, err := call[privacyapi.PutIntegrationResult](t, nc, privacyapi.PutIntegrationSubject, admin, privacyapi.PutIntegrationArgs{
			IntegrationArgs: privacyapi.IntegrationArgs{Tenant: tenant, Kind: kind, ID: kind + "-1"},
			Name:            "the " + kind, WebhookURL: "https://hooks.example/" + kind,
		})
		if err != nil || !res.Created {
			t.Fatalf("put %s = %+v, %v", kind, res, err)
		}
		secrets[kind+"-1"] = []byte(res.Secret)
	}
	svc.stop()

	rep, err := privacy.RotateKEK(t.Context(), js, oldK, newK, nil)
	if err != nil || rep.ResealedSecrets != 2 || rep.AlreadyResealed != 0 {
		t.Fatalf("RotateKEK() = %+v, %v; want 2 secrets resealed", rep, err)
	}
	kv, err := js.KeyValue(t.Context(), privacyapi.IntegrationsBucket)
	if err != nil {
		t.Fatal(err)
	}
	for id, secret := range secrets {
		e, err := kv.Get(t.Context(), privacyapi.IntegrationKey(tenant, id))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(e.Value(), secret) {
			t.Errorf("%s: the stored record holds its secret in clear", id)
		}
		var rec privacyapi.Integration
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			t.Fatal(err)
		}
		if got, err := keyring.New(newK).OpenSecret(tenant, id, rec.KEKID, rec.SealedSecret); err != nil || !bytes.Equal(got, secret) {
			t.Errorf("%s: the new KEK opens %x, %v; want the secret given at registration", id, got, err)
		}
		if _, err := keyring.New(oldK).OpenSecret(tenant, id, privacy.KEKID(oldK), rec.SealedSecret); err == nil {
			t.Errorf("%s: the old KEK still opens the secret", id)
		}
	}
	again, err := privacy.RotateKEK(t.Context(), js, oldK, newK, nil)
	if err != nil || again.ResealedSecrets != 0 || again.AlreadyResealed != 2 {
		t.Errorf("RotateKEK() run again = %+v, %v; want nothing resealed, 2 already", again, err)
	}

	// The service under the new KEK serves them, and keeps their secrets
	// through an update.
	start(t, s, newK)
	res, err := call[privacyapi.PutIntegrationResult](t, nc, privacyapi.PutIntegrationSubject, admin, privacyapi.PutIntegrationArgs{
		IntegrationArgs: privacyapi.IntegrationArgs{Tenant: tenant, Kind: privacyapi.KindBot, ID: "bot-1"},
		Name:            "renamed", NATSSubject: "parley.bots." + tenant + ".bot-1",
	})
	if err != nil || res.Created || res.Secret != "" {
		t.Errorf("update under the new KEK = %+v, %v; want updated, no secret", res, err)
	}
	if _, err := call[privacyapi.IntegrationView](t, nc, privacyapi.GetIntegrationSubject, admin, privacyapi.IntegrationArgs{Tenant: tenant, Kind: privacyapi.KindBot, ID: "nobody"}); rpc.CodeOf(err) != rpc.CodeNotFound {
		t.Errorf("get an unknown bot = %v, want CodeNotFound", err)
	}
	if _, err := call[privacyapi.IntegrationView](t, nc, privacyapi.GetIntegrationSubject, agent, privacyapi.IntegrationArgs{Tenant: tenant, Kind: privacyapi.KindBot, ID: "bot-1"}); rpc.CodeOf(err) != rpc.CodeForbidden {
		t.Errorf("get by an agent = %v, want CodeForbidden", err)
	}
	var verr *rpc.Error
	if _, err := call[privacyapi.PutIntegrationResult](t, nc, privacyapi.PutIntegrationSubject, admin, privacyapi.PutIntegrationArgs{
		IntegrationArgs: privacyapi.IntegrationArgs{Tenant: tenant, Kind: privacyapi.KindIntegration, ID: "bot-1"},
		Name:            "crm", WebhookURL: "https://crm.example/",
	}); !errors.As(err, &verr) || verr.Code != rpc.CodeConflict {
		t.Errorf("put an integration with a bot's id = %v, want CodeConflict", err)
	}
}
