package deploy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/parley-chat/parley/pkg/buspolicy"
)

// natsTLSSecret holds the NATS servers' certificate; natsClientSecret(user)
// the client certificate of a bus user. Both in cert-manager's layout.
const natsTLSSecret = "parley-nats-tls"

func natsClientSecret(user string) string { return "parley-nats-client-" + user }

// tlsFile matches a file a TLS block of nats.conf names.
var tlsFile = regexp.MustCompile(`(?m)^\s*(cert_file|key_file|ca_file):\s*(\S+)\s*$`)

// In production the bus is mutual TLS: nats-server, loading the built
// configuration, requires TLS and a verified client certificate on the
// client port, and TLS verified both ways on the routes; the files it
// names are the keys of the Secret its container mounts; every service,
// and `parley streams apply`, is given the CA and a client certificate of
// its own; and the optional cert-manager resources make exactly those
// Secrets, with names the clients and the routes dial.
func TestBusTLS(t *testing.T) {
	m := build(t, "k8s/overlays/production")
	opts := loadNATSConfig(t, m)
	if c := opts.TLSConfig; c == nil || c.ClientAuth != tls.RequireAndVerifyClientCert || c.ClientCAs == nil {
		t.Error("nats: the client port must require TLS and a client certificate the CA verifies (tls.conf: a tls block with ca_file and verify: true)")
	}
	if c := opts.Cluster.TLSConfig; c == nil || c.ClientAuth != tls.RequireAndVerifyClientCert || c.RootCAs == nil || c.InsecureSkipVerify {
		t.Error("nats: routes must be TLS verified both ways (topology.conf: a tls block with ca_file and verify: true in cluster)")
	}

	nats := m.statefulSets["nats"].Spec.Template.Spec
	conf := m.configMaps["nats-config"].Data
	for _, name := range []string{"tls.conf", "topology.conf"} {
		files := tlsFile.FindAllStringSubmatch(conf[name], -1)
		if len(files) != 3 {
			t.Errorf("%s: %d TLS files, want cert_file, key_file and ca_file", name, len(files))
		}
		for _, f := range files {
			if secret, key := m.secretFile(nats, nats.Containers[0], f[2]); secret != natsTLSSecret || key != path.Base(f[2]) {
				t.Errorf("%s: %s %s is %s/%s, want the key %s of Secret %s", name, f[1], f[2], secret, key, path.Base(f[2]), natsTLSSecret)
			}
		}
	}

	for _, svc := range services {
		d := m.deployments[svc]
		if d == nil {
			continue // checkParleyService reports it
		}
		checkBusTLS(t, m, d.Spec.Template.Spec, d.Spec.Template.Spec.Containers[0], svc, svc)
		if svc != "privacy" {
			continue
		}
		for _, c := range d.Spec.Template.Spec.InitContainers {
			if c.Name == "streams" {
				checkBusTLS(t, m, d.Spec.Template.Spec, c, "privacy: streams apply", buspolicy.Admin)
			}
		}
	}
	checkCertManager(t, m)
}

// checkBusTLS checks that container c verifies the NATS server against
// the CA and presents the client certificate of user, each the file of
// its key in Secret natsClientSecret(user), given by flag or by the
// environment variable parseFlags reads it from.
func checkBusTLS(t *testing.T, m manifests, spec corev1.PodSpec, c corev1.Container, where, user string) {
	t.Helper()
	first := slices.IndexFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "-") })
	args := flagValues(c.Args[max(first, 0):])
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for flag, key := range map[string]string{"--nats-ca-file": "ca.crt", "--nats-cert-file": "tls.crt", "--nats-key-file": "tls.key"} {
		file, ok := args[flag]
		if !ok {
			file = env["PARLEY_"+strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(flag, "--"), "-", "_"))]
		}
		if secret, k := m.secretFile(spec, c, file); secret != natsClientSecret(user) || k != key {
			t.Errorf("%s: %s %q is %s/%s, want the key %s of Secret %s", where, flag, file, secret, k, key, natsClientSecret(user))
		}
	}
}

// checkCertManager renders the optional cert-manager resources, which the
// overlay leaves out so that it applies without cert-manager's CRDs, and
// checks their Certificates make the Secrets the overlay mounts: the
// servers' valid for the host name clients dial and for every route's, for
// both ends of a route; each bus user's a client certificate named after
// the user.
func checkCertManager(t *testing.T, m manifests) {
	t.Helper()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "k8s/overlays/production/cert-manager")
	if err != nil {
		t.Fatalf("kustomize build of the cert-manager resources: %v", err)
	}
	type certificate struct {
		CommonName string   `json:"commonName"`
		SecretName string   `json:"secretName"`
		DNSNames   []string `json:"dnsNames"`
		Usages     []string `json:"usages"`
		IssuerRef  struct{ Name, Kind string }
	}
	certs := map[string]certificate{}
	issuers := map[string]bool{}
	for _, r := range rm.Resources() {
		if r.GetNamespace() != "parley" {
			t.Errorf("%s: namespace %q, want parley", r.CurId(), r.GetNamespace())
		}
		switch r.GetKind() {
		case "Issuer":
			issuers[r.GetName()] = true
		case "Certificate":
			var c struct{ Spec certificate }
			y, err := r.AsYAML()
			if err == nil {
				err = yaml.Unmarshal(y, &c)
			}
			if err != nil {
				t.Fatalf("%s: %v", r.CurId(), err)
			}
			certs[c.Spec.SecretName] = c.Spec
		}
	}
	for secret, c := range certs {
		if !issuers[c.IssuerRef.Name] || c.IssuerRef.Kind != "Issuer" {
			t.Errorf("Certificate of %s: issuer %s %s is not among the resources", secret, c.IssuerRef.Kind, c.IssuerRef.Name)
		}
	}

	server, ok := certs[natsTLSSecret]
	if !ok {
		t.Fatalf("no Certificate makes Secret %s", natsTLSSecret)
	}
	// The client URL the services dial, and each server's route URL.
	hosts := []string{}
	if u, err := url.Parse(envValue(m.deployments["chat"].Spec.Template.Spec.Containers[0], "PARLEY_NATS_URL")); err == nil {
		hosts = append(hosts, u.Hostname())
	}
	nats := m.statefulSets["nats"]
	for i := range int(*nats.Spec.Replicas) {
		route := strings.NewReplacer("$(NATS_ROUTE_PASSWORD)", "x").Replace(envValue(nats.Spec.Template.Spec.Containers[0], fmt.Sprintf("NATS_ROUTE_%d", i)))
		u, err := url.Parse(route)
		if err != nil || u.Hostname() == "" {
			t.Errorf("nats: route %d %q: no host name", i, route)
			continue
		}
		hosts = append(hosts, u.Hostname())
	}
	for _, h := range hosts {
		if err := (&x509.Certificate{DNSNames: server.DNSNames}).VerifyHostname(h); err != nil {
			t.Errorf("Certificate of %s: not valid for %s, which is dialled: %v", natsTLSSecret, h, err)
		}
	}
	for _, usage := range []string{"server auth", "client auth"} {
		if !slices.Contains(server.Usages, usage) {
			t.Errorf("Certificate of %s: no usage %q (a server dials its routes too)", natsTLSSecret, usage)
		}
	}
	for _, user := range natsUsers {
		c, ok := certs[natsClientSecret(user)]
		switch {
		case !ok:
			t.Errorf("no Certificate makes Secret %s", natsClientSecret(user))
		case c.CommonName != user || !slices.Contains(c.Usages, "client auth") || slices.Contains(c.Usages, "server auth"):
			t.Errorf("Certificate of %s: common name %q, usages %v; want %q, a client's only", natsClientSecret(user), c.CommonName, c.Usages, user)
		}
	}
}

// envValue returns the literal value of c's environment variable name.
func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}
