package deploy

import (
	"net/url"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// keysRotateFlags are the flags of `parley keys rotate` (cmd/parley/keys.go)
// the KEK rotation Job passes besides the bus's (streamsApplyFlags).
var keysRotateFlags = []string{"--new-kek-file"}

// The optional KEK rotation Job (k8s/ops/kek-rotation) reaches NATS as the
// production overlay requires it: at a name the servers' certificate holds,
// with the admin's client certificate and password from their Secrets,
// through the NetworkPolicies of the services; the old KEK and the new one
// from Secrets, none of it in its arguments; on production's image.
func TestKEKRotationJob(t *testing.T) {
	m := build(t, "k8s/ops/kek-rotation")
	job, ok := m.jobs["kek-rotation"]
	if !ok || len(m.jobs) != 1 {
		t.Fatalf("jobs %v, want kek-rotation alone", m.jobs)
	}
	checkNoSecretsInArgs(t, m)
	spec := job.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if len(c.Args) < 2 || c.Args[0] != "keys" || c.Args[1] != "rotate" {
		t.Fatalf("args %q, want keys rotate ...", c.Args)
	}
	flags := flagValues(c.Args[2:])
	for name := range flags {
		if !slices.Contains(streamsApplyFlags, name) && !slices.Contains(keysRotateFlags, name) {
			t.Errorf("flag %s: not one of `parley keys rotate`", name)
		}
	}
	// `nats` is a name of the servers' certificate
	// (overlays/production/cert-manager/certificates.yaml); 127.0.0.1 is not.
	if u, err := url.Parse(flags["--nats-url"]); err != nil || u.Hostname() != "nats" {
		t.Errorf("--nats-url %q, want the Service nats, a name the servers' certificate holds", flags["--nats-url"])
	}
	files := []struct{ flag, secret, key string }{
		{"--nats-password-file", "parley-nats-passwords", "admin"},
		{"--nats-ca-file", "parley-nats-client-admin", "ca.crt"},
		{"--nats-cert-file", "parley-nats-client-admin", "tls.crt"},
		{"--nats-key-file", "parley-nats-client-admin", "tls.key"},
		{"--new-kek-file", "parley-kek-next", "kek"},
	}
	for _, f := range files {
		if secret, key := m.secretFile(spec, c, flags[f.flag]); secret != f.secret || key != f.key {
			t.Errorf("%s %q: file of %s/%s, want %s/%s", f.flag, flags[f.flag], secret, key, f.secret, f.key)
		}
	}
	var kek string
	for _, e := range c.Env {
		if e.Name == "PARLEY_KEK" {
			kek = secretRef(e)
		}
	}
	if kek != "parley-kek/kek" {
		t.Errorf("PARLEY_KEK from %q, want Secret parley-kek, key kek", kek)
	}

	prod := build(t, "k8s/overlays/production")
	if want := prod.deployments["privacy"].Spec.Template.Spec.Containers[0].Image; c.Image != want {
		t.Errorf("image %s, want production's %s", c.Image, want)
	}
	// Out to NATS and in at NATS, by the production policies.
	pod := labels.Set(job.Spec.Template.Labels)
	egress, ingress := false, false
	for _, p := range prod.policies {
		if selects(&p.Spec.PodSelector, pod) {
			for _, r := range p.Spec.Egress {
				for _, to := range r.To {
					if to.PodSelector != nil && selects(to.PodSelector, labels.Set{"app.kubernetes.io/name": "nats"}) && hasNATSPort(r.Ports) {
						egress = true
					}
				}
			}
		}
		if selects(&p.Spec.PodSelector, labels.Set{"app.kubernetes.io/name": "nats"}) {
			for _, r := range p.Spec.Ingress {
				for _, from := range r.From {
					if from.PodSelector != nil && from.NamespaceSelector == nil && selects(from.PodSelector, pod) && hasNATSPort(r.Ports) {
						ingress = true
					}
				}
			}
		}
	}
	if !egress || !ingress {
		t.Errorf("the Job's pod (labels %v) may reach NATS's port 4222: egress %v, NATS's ingress %v; want both", pod, egress, ingress)
	}
}

func hasNATSPort(ports []networkingv1.NetworkPolicyPort) bool {
	for _, p := range ports {
		if p.Port != nil && p.Port.IntValue() == 4222 {
			return true
		}
	}
	return len(ports) == 0
}
