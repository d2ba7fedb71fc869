package main

import (
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-chat/parley/pkg/buspolicy"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// Split mode over mutual TLS, as the production overlay runs it: a NATS
// server that takes clients over TLS only and verifies their certificates;
// `parley streams apply` and every service connect as their bus users,
// each presenting a certificate of its own and verifying the server's
// against the CA, which comes from the environment; a conversation goes
// through the gateway. A client without a valid certificate is refused.
func TestServicesOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	pki := natstest.NewPKI(t, "parley-nats-ca")
	bus := startSplitBusTLS(t, dir, pki.ServerTLS(pki.Issue("nats")))
	t.Setenv("PARLEY_NATS_CA_FILE", pki.CAFile)
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	as := func(user string) []string {
		c := pki.Issue(user)
		return append(bus.as(user), "--nats-cert-file", c.CertFile, "--nats-key-file", c.KeyFile)
	}
	if err := run(t.Context(), append([]string{"streams", "apply", "--replicas", "1"}, as(buspolicy.Admin)...), io.Discard, &logs); err != nil {
		t.Fatalf("parley streams apply: %v", err)
	}
	keyFile, auditKeyFile := splitKeys(t, dir)
	t.Setenv("PARLEY_KEK", strings.Repeat("ab", 32))
	httpAddr := freeAddr(t)
	startSplit(t, &logs, slices.Concat([]string{"privacy", "--replicas", "1", "--audit-key-file", auditKeyFile, "--health-addr", "127.0.0.1:0"}, as(buspolicy.Privacy))...)
	startSplit(t, &logs, slices.Concat([]string{"chat", "--replicas", "1", "--health-addr", "127.0.0.1:0"}, as(buspolicy.Chat))...)
	startSplit(t, &logs, slices.Concat([]string{"analytics", "--health-addr", "127.0.0.1:0"}, as(buspolicy.Analytics))...)
	startSplit(t, &logs, slices.Concat([]string{"gateway", "--replicas", "1", "--http-addr", httpAddr, "--signing-key-file", keyFile, "--default-tenant", "demo"}, as(buspolicy.Gateway))...)
	base := "http://" + httpAddr
	// The gateway is ready once chat and privacy answer it over the bus.
	waitStatus(t, base+"/readyz", http.StatusOK)
	converse(t, base, keyFile)
	checkTLSRefusals(t, bus.srv.ClientURL(), pki, bus.passwords[buspolicy.Admin])
}

// `parley all` with TLS flags: its embedded NATS takes its own services
// over mutual TLS, and refuses a client without a valid certificate.
func TestAllOverMutualTLS(t *testing.T) {
	pki := natstest.NewPKI(t, "parley-nats-ca")
	srv, svc := pki.Issue("nats"), pki.Issue("parley")
	dir := t.TempDir()
	a, _ := testAllWith(t, dir, func(cfg *allConfig) {
		cfg.NATSTLS = tlsFiles{cert: srv.CertFile, key: srv.KeyFile, ca: pki.CAFile}
		cfg.NATSClientTLS = tlsFiles{cert: svc.CertFile, key: svc.KeyFile}
	})
	_, visitor := newVisitor(t, a.URL(), "demo")
	mustCall(t, a.URL(), "POST", "/v1/conversations", visitor, map[string]any{"text": "hello over TLS"}, http.StatusCreated)
	password, err := readSecret("admin password", filepath.Join(dir, natsAdminPasswordFile), "")
	if err != nil {
		t.Fatal(err)
	}
	checkTLSRefusals(t, a.NATSURL(), pki, password)
}

// Without TLS flags `parley all` stays a plain-text try-out on loopback,
// and half of the TLS flags is refused rather than run without TLS.
func TestAllNATSTLSFlags(t *testing.T) {
	pki := natstest.NewPKI(t, "parley-nats-ca")
	srv := pki.Issue("nats")
	tests := []struct {
		name string
		give []string
	}{
		{name: "server certificate without the services'", give: []string{"--nats-tls-cert-file", srv.CertFile, "--nats-tls-key-file", srv.KeyFile, "--nats-tls-ca-file", pki.CAFile}},
		{name: "no CA", give: []string{"--nats-tls-cert-file", srv.CertFile, "--nats-tls-key-file", srv.KeyFile, "--nats-cert-file", srv.CertFile, "--nats-key-file", srv.KeyFile}},
		{name: "services' certificate only", give: []string{"--nats-cert-file", srv.CertFile, "--nats-key-file", srv.KeyFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"all", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--clickhouse", "off"}, tt.give...)
			err := run(t.Context(), args, io.Discard, io.Discard)
			if !errors.As(err, new(usageError)) {
				t.Errorf("parley %v = %v, want a usage error", args, err)
			}
		})
	}
}

// checkTLSRefusals checks that the NATS server at url takes the admin,
// with password, presenting a certificate of pki's CA, and refuses the
// admin with the same password in plain text, without a certificate, or
// with another CA's.
func checkTLSRefusals(t *testing.T, url string, pki *natstest.PKI, password string) {
	t.Helper()
	valid, other := pki.Issue("admin"), natstest.NewPKI(t, "another-ca").Issue("admin")
	tests := []struct {
		name string
		give []nats.Option
		want bool // connected
	}{
		{name: "the CA's certificate", give: []nats.Option{nats.RootCAs(pki.CAFile), nats.ClientCert(valid.CertFile, valid.KeyFile)}, want: true},
		{name: "plain text", give: nil},
		{name: "no certificate", give: []nats.Option{nats.RootCAs(pki.CAFile)}},
		{name: "another CA's certificate", give: []nats.Option{nats.RootCAs(pki.CAFile), nats.ClientCert(other.CertFile, other.KeyFile)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]nats.Option{nats.UserInfo(buspolicy.Admin, password), nats.Timeout(10 * time.Second)}, tt.give...)
			nc, err := nats.Connect(url, opts...)
			if err == nil {
				defer nc.Close()
				err = nc.Flush()
			}
			if got := err == nil; got != tt.want {
				t.Errorf("connect with %s: %v, want connected %v", tt.name, err, tt.want)
			}
		})
	}
}
