package deploy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/parley-chat/parley/pkg/buspolicy"
	"github.com/parley-chat/parley/pkg/natsembed"
	"github.com/parley-chat/parley/pkg/natsembed/natstest"
)

// services are the parley targets deployed one per Deployment.
var services = []string{"gateway", "chat", "privacy", "analytics"}

// serviceFlags mirrors the flags `parley <service>` defines
// (cmd/parley/service.go), and streamsApplyFlags those of `parley streams
// apply` (cmd/parley/streams.go, store.go): a flag the binary does not know
// stops it at start, which nothing else would notice before a real rollout.
// TestFlagsExist checks each against the sources.
var (
	serviceFlags = map[string][]string{
		"":          {"--nats-url", "--nats-creds", "--nats-user", "--nats-password-file", "--nats-ca-file", "--nats-cert-file", "--nats-key-file", "--replicas", "--log-format", "--log-level", "--memory-limit"},
		"gateway":   {"--http-addr", "--signing-key-file", "--default-tenant", "--max-conns-per-addr", "--client-addr-header"},
		"chat":      {"--health-addr"},
		"privacy":   {"--health-addr", "--kek-file", "--kek-command", "--audit-key-file"},
		"analytics": {"--health-addr", "--clickhouse", "--clickhouse-password-file"},
	}
	streamsApplyFlags = []string{"--nats-url", "--nats-creds", "--nats-user", "--nats-password-file", "--nats-ca-file", "--nats-cert-file", "--nats-key-file", "--data-dir", "--replicas"}
)

// natsUsers are the users of the shipped auth.conf: every service, and
// admin for `parley streams apply`.
var natsUsers = append(slices.Clone(services), buspolicy.Admin)

// authConf is the shipped authorization block, generated from pkg/buspolicy.
const authConf = "k8s/base/nats/auth.conf"

// externalSecrets are the Secrets an operator creates (README.md); only the
// dev overlay generates them.
var externalSecrets = []string{"parley-kek", "parley-signing-key", "parley-audit-key", "parley-nats-passwords", "parley-clickhouse", "parley-tls",
	"parley-nats-tls", "parley-nats-client-gateway", "parley-nats-client-chat", "parley-nats-client-privacy", "parley-nats-client-analytics", "parley-nats-client-admin"}

// manifests is one built overlay, every object decoded into its type.
type manifests struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap // by name without the hash suffix
	secrets      map[string]*corev1.Secret    // likewise
	pdbs         map[string]*policyv1.PodDisruptionBudget
	ingresses    map[string]*networkingv1.Ingress
	policies     map[string]*networkingv1.NetworkPolicy
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	jobs         map[string]*batchv1.Job
	// names are the generated names of ConfigMaps and Secrets, as referenced.
	names map[string]bool
}

// build runs kustomize on dir in-process and decodes every object strictly:
// an unknown or misspelt field, or a kind without a Go type, fails.
func build(t *testing.T, dir string) manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	m := manifests{
		deployments:  map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{},
		services:     map[string]*corev1.Service{},
		configMaps:   map[string]*corev1.ConfigMap{},
		secrets:      map[string]*corev1.Secret{},
		pdbs:         map[string]*policyv1.PodDisruptionBudget{},
		ingresses:    map[string]*networkingv1.Ingress{},
		policies:     map[string]*networkingv1.NetworkPolicy{},
		hpas:         map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		jobs:         map[string]*batchv1.Job{},
		names:        map[string]bool{},
	}
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		obj, _, err := decoder.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("decode %s: %v", r.CurId(), err)
			continue
		}
		// Generated ConfigMaps and Secrets carry a content hash suffix.
		original := hashSuffix.ReplaceAllString(r.GetName(), "")
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments[o.Name] = o
		case *appsv1.StatefulSet:
			m.statefulSets[o.Name] = o
		case *corev1.Service:
			m.services[o.Name] = o
		case *corev1.ConfigMap:
			m.configMaps[original] = o
			m.names[o.Name] = true
		case *corev1.Secret:
			m.secrets[original] = o
			m.names[o.Name] = true
		case *policyv1.PodDisruptionBudget:
			m.pdbs[o.Name] = o
		case *networkingv1.Ingress:
			m.ingresses[o.Name] = o
		case *networkingv1.NetworkPolicy:
			m.policies[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			m.hpas[o.Name] = o
		case *batchv1.Job:
			m.jobs[o.Name] = o
		case *corev1.Namespace:
		default:
			t.Errorf("%s: no checks for %T; add them", r.CurId(), obj)
		}
		if _, cluster := obj.(*corev1.Namespace); !cluster && r.GetNamespace() != "parley" {
			t.Errorf("%s: namespace %q, want parley", r.CurId(), r.GetNamespace())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

// workload is a Deployment or StatefulSet reduced to what the checks need.
type workload struct {
	kind, name string
	replicas   int32
	pod        corev1.PodTemplateSpec
}

func (m manifests) workloads() []workload {
	var ws []workload
	for _, d := range m.deployments {
		ws = append(ws, workload{"Deployment", d.Name, m.replicas(d), d.Spec.Template})
	}
	for _, s := range m.statefulSets {
		ws = append(ws, workload{"StatefulSet", s.Name, *s.Spec.Replicas, s.Spec.Template})
	}
	for _, j := range m.jobs {
		ws = append(ws, workload{"Job", j.Name, 1, j.Spec.Template})
	}
	return ws
}

var overlays = []string{"dev", "production"}

// hashSuffix is what Kustomize appends to a generated object's name.
var hashSuffix = regexp.MustCompile(`-[bcdfghkmt2-9]{10}$`)

func TestOverlays(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, "k8s/overlays/"+overlay)
			checkWorkloads(t, m)
			checkReferences(t, m)
			checkServices(t, m)
			checkNATSConfig(t, m)
			checkStreamsApply(t, m)
			checkMemoryLimits(t, m)
			checkProbes(t, m)
			checkNoSecretsInArgs(t, m)
			for _, svc := range services {
				checkParleyService(t, m, svc)
			}
		})
	}
}

// checkWorkloads holds every container to the security and sizing baseline.
func checkWorkloads(t *testing.T, m manifests) {
	t.Helper()
	for _, w := range m.workloads() {
		spec := w.pod.Spec
		if !selectorMatches(w, m) {
			t.Errorf("%s %s: selector does not match its pod labels", w.kind, w.name)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s %s: mounts a service account token it does not use", w.kind, w.name)
		}
		psc := spec.SecurityContext
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s %s: pod seccomp profile is not RuntimeDefault", w.kind, w.name)
		}
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			where := fmt.Sprintf("%s %s container %s", w.kind, w.name, c.Name)
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, hasReq := c.Resources.Requests[res]
				lim, hasLim := c.Resources.Limits[res]
				if !hasReq || !hasLim {
					t.Errorf("%s: %s request and limit must both be set", where, res)
					continue
				}
				if req.Cmp(lim) > 0 {
					t.Errorf("%s: %s request %s above limit %s", where, res, req.String(), lim.String())
				}
			}
			runAsNonRoot := psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
			if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil {
				runAsNonRoot = *c.SecurityContext.RunAsNonRoot
			}
			if !runAsNonRoot {
				t.Errorf("%s: runAsNonRoot is not true", where)
			}
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: root filesystem is writable", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allows privilege escalation", where)
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities must drop ALL and add none", where)
			}
			checkExpansions(t, where, c)
		}
	}
}

// unprobed are the containers that keep running but serve nothing a probe
// could ask: NATS's config reloader (production) only watches files and
// signals the server; the kubelet restarts it if it exits.
var unprobed = []string{"reloader"}

// checkProbes requires startup, readiness and liveness probes of every
// container that keeps running but those unprobed, each on a port the container declares, and
// NATS's as the upstream chart has them: started only once the full
// /healthz passes (every stream and consumer of the server current), so
// that a rolling restart waits for a server to catch up.
func checkProbes(t *testing.T, m manifests) {
	t.Helper()
	for _, w := range m.workloads() {
		for _, c := range w.pod.Spec.Containers {
			where := fmt.Sprintf("%s %s container %s", w.kind, w.name, c.Name)
			if slices.Contains(unprobed, c.Name) {
				if len(c.Ports) > 0 {
					t.Errorf("%s: declares ports, so it must be probed", where)
				}
				continue
			}
			for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				switch {
				case p == nil:
					t.Errorf("%s: no %s probe", where, name)
				case p.HTTPGet == nil:
					t.Errorf("%s: %s probe is not an HTTP GET", where, name)
				case !hasContainerPort(c, p.HTTPGet.Port.String()):
					t.Errorf("%s: %s probe on port %s, which the container does not declare", where, name, p.HTTPGet.Port.String())
				}
			}
		}
	}
	nats := m.statefulSets["nats"].Spec.Template.Spec.Containers[0]
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"startup", nats.StartupProbe, "/healthz"},
		{"readiness", nats.ReadinessProbe, "/healthz?js-server-only=true"},
		{"liveness", nats.LivenessProbe, "/healthz?js-enabled-only=true"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path {
			t.Errorf("nats: want a %s probe of %s, as the upstream chart", p.name, p.path)
		}
	}
	if p := nats.StartupProbe; p != nil && p.PeriodSeconds*p.FailureThreshold < 15*60 {
		t.Errorf("nats: the startup probe allows %ds to catch up, want at least 15 minutes", p.PeriodSeconds*p.FailureThreshold)
	}
}

func hasContainerPort(c corev1.Container, port string) bool {
	return hasPort(corev1.PodSpec{Containers: []corev1.Container{c}}, port)
}

// secretFlag is a flag whose name says its value is a secret: one ending
// in -file or -command names where the secret is instead.
var secretFlag = regexp.MustCompile(`(?i)^--?[a-z-]*(password|passwd|secret|kek|dsn|credential)[a-z-]*$`)

// checkNoSecretsInArgs holds every container's command and arguments to
// hold no secret: a process's arguments are readable by every user of the
// node (/proc/PID/cmdline). Secrets come from files or the environment.
// Caught: a flag named as a secret, a URL with a password (also once
// $(VAR) is expanded), a $(VAR) of a variable filled from a Secret, and
// any value of a Secret the overlay generates.
func checkNoSecretsInArgs(t *testing.T, m manifests) {
	t.Helper()
	var values []string
	for _, s := range m.secrets {
		for _, v := range s.Data {
			if v := strings.TrimSpace(string(v)); len(v) >= 8 {
				values = append(values, v)
			}
		}
	}
	for _, w := range m.workloads() {
		for _, c := range slices.Concat(w.pod.Spec.InitContainers, w.pod.Spec.Containers) {
			where := fmt.Sprintf("%s %s container %s", w.kind, w.name, c.Name)
			// What $(VAR) becomes; a variable from a Secret becomes a marker.
			const fromSecret = "\x00secret\x00"
			env := map[string]string{}
			for _, e := range c.Env {
				v := e.Value
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					v = fromSecret
				}
				env[e.Name] = expansion.ReplaceAllStringFunc(v, func(ref string) string { return env[ref[2:len(ref)-1]] })
			}
			for _, arg := range slices.Concat(c.Command, c.Args) {
				name, _, _ := strings.Cut(arg, "=")
				if secretFlag.MatchString(name) && !strings.HasSuffix(name, "-file") && !strings.HasSuffix(name, "-command") {
					t.Errorf("%s: flag %s takes a secret in the process's arguments; give a file instead", where, name)
				}
				expanded := expansion.ReplaceAllStringFunc(arg, func(ref string) string { return env[ref[2:len(ref)-1]] })
				if strings.Contains(expanded, fromSecret) {
					t.Errorf("%s: argument %q expands a Secret into the process's arguments", where, arg)
				}
				if u, err := url.Parse(expanded); err == nil && u.User != nil {
					if _, ok := u.User.Password(); ok {
						t.Errorf("%s: argument %q is a URL with a password", where, arg)
					}
				}
				for _, v := range values {
					if strings.Contains(expanded, v) {
						t.Errorf("%s: argument %q holds a Secret's value", where, arg)
					}
				}
			}
		}
	}
}

// checkMemoryLimits holds every Go container that keeps running (all but
// ClickHouse's) to a soft memory limit below its memory limit: Parley's
// are given their limit (PARLEY_MEMORY_LIMIT from the pod spec) and take
// 90% of it; nats-server reads only GOMEMLIMIT, written out, at most 90%.
func checkMemoryLimits(t *testing.T, m manifests) {
	t.Helper()
	for _, w := range m.workloads() {
		if w.name == "clickhouse" {
			continue
		}
		for _, c := range w.pod.Spec.Containers {
			where := fmt.Sprintf("%s %s container %s", w.kind, w.name, c.Name)
			limit := c.Resources.Limits[corev1.ResourceMemory]
			env := map[string]corev1.EnvVar{}
			for _, e := range c.Env {
				env[e.Name] = e
			}
			if e, ok := env["GOMEMLIMIT"]; ok {
				soft, err := resource.ParseQuantity(strings.TrimSuffix(e.Value, "B"))
				if err != nil {
					t.Errorf("%s: GOMEMLIMIT %q: %v", where, e.Value, err)
					continue
				}
				if soft.Value() > limit.Value()*9/10 {
					t.Errorf("%s: GOMEMLIMIT %s above 90%% of the memory limit %s", where, e.Value, limit.String())
				}
				continue
			}
			ref := env["PARLEY_MEMORY_LIMIT"].ValueFrom
			if ref == nil || ref.ResourceFieldRef == nil || ref.ResourceFieldRef.Resource != "limits.memory" ||
				ref.ResourceFieldRef.ContainerName != "" && ref.ResourceFieldRef.ContainerName != c.Name {
				t.Errorf("%s: neither GOMEMLIMIT nor PARLEY_MEMORY_LIMIT from its limits.memory", where)
			}
		}
	}
}

func selectorMatches(w workload, m manifests) bool {
	var sel map[string]string
	switch w.kind {
	case "Deployment":
		sel = m.deployments[w.name].Spec.Selector.MatchLabels
	default:
		sel = m.statefulSets[w.name].Spec.Selector.MatchLabels
	}
	return len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.pod.Labels))
}

var expansion = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkExpansions catches $(VAR) references to variables the container does
// not define before them: Kubernetes passes those on literally, so a typo
// would reach the process as "$(PARLEY_NATS_ULR)".
func checkExpansions(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	defined := map[string]bool{}
	for _, e := range c.Env {
		for _, ref := range expansion.FindAllStringSubmatch(e.Value, -1) {
			if !defined[ref[1]] {
				t.Errorf("%s: env %s uses $(%s) before it is defined", where, e.Name, ref[1])
			}
		}
		defined[e.Name] = true
	}
	for _, s := range slices.Concat(c.Command, c.Args) {
		for _, ref := range expansion.FindAllStringSubmatch(s, -1) {
			if !defined[ref[1]] {
				t.Errorf("%s: argument %q uses undefined $(%s)", where, s, ref[1])
			}
		}
	}
}

// checkReferences makes sure every ConfigMap and Secret a pod uses exists,
// under the name Kustomize gave it, or is one the operator creates.
func checkReferences(t *testing.T, m manifests) {
	t.Helper()
	for _, w := range m.workloads() {
		var cms, secrets []string
		for _, v := range w.pod.Spec.Volumes {
			if v.ConfigMap != nil {
				cms = append(cms, v.ConfigMap.Name)
			}
			if v.Secret != nil {
				secrets = append(secrets, v.Secret.SecretName)
			}
		}
		for _, c := range slices.Concat(w.pod.Spec.InitContainers, w.pod.Spec.Containers) {
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
					cms = append(cms, r.Name)
					if !m.hasKey(r.Name, r.Key) {
						t.Errorf("%s %s: env %s: ConfigMap %s has no key %s", w.kind, w.name, e.Name, r.Name, r.Key)
					}
				}
				if r := e.ValueFrom.SecretKeyRef; r != nil {
					secrets = append(secrets, r.Name)
					if !m.hasKey(r.Name, r.Key) {
						t.Errorf("%s %s: env %s: Secret %s has no key %s", w.kind, w.name, e.Name, r.Name, r.Key)
					}
				}
			}
		}
		for _, name := range cms {
			if !m.names[name] {
				t.Errorf("%s %s: ConfigMap %s is not in the build", w.kind, w.name, name)
			}
		}
		for _, name := range secrets {
			if !m.names[name] && !slices.Contains(externalSecrets, name) {
				t.Errorf("%s %s: Secret %s is neither in the build nor documented", w.kind, w.name, name)
			}
		}
	}
}

// hasKey reports whether the generated object called name has key; Secrets
// the operator creates are taken to have the keys README.md lists.
func (m manifests) hasKey(name, key string) bool {
	for _, cm := range m.configMaps {
		if cm.Name == name {
			_, ok := cm.Data[key]
			return ok
		}
	}
	for _, s := range m.secrets {
		if s.Name == name {
			_, ok := s.Data[key]
			return ok
		}
	}
	return slices.Contains(externalSecrets, name)
}

// checkServices makes sure every Service selects pods and targets ports
// they have.
func checkServices(t *testing.T, m manifests) {
	t.Helper()
	for _, s := range m.services {
		var pods []corev1.PodTemplateSpec
		for _, w := range m.workloads() {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.pod.Labels)) {
				pods = append(pods, w.pod)
			}
		}
		if len(s.Spec.Selector) == 0 || len(pods) == 0 {
			t.Errorf("Service %s selects no pods", s.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			if !hasPort(pods[0].Spec, p.TargetPort.String()) {
				t.Errorf("Service %s: target port %s is not a container port", s.Name, p.TargetPort.String())
			}
		}
	}
}

func hasPort(spec corev1.PodSpec, port string) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Name == port || strconv.Itoa(int(p.ContainerPort)) == port {
				return true
			}
		}
	}
	return false
}

// checkParleyService checks one service's Deployment: its flags exist, it
// connects to NATS as its own user with its own password, and the gateway's
// probes hit its real endpoints.
func checkParleyService(t *testing.T, m manifests, svc string) {
	t.Helper()
	d, ok := m.deployments[svc]
	if !ok {
		t.Errorf("no Deployment %s", svc)
		return
	}
	c := d.Spec.Template.Spec.Containers[0]
	if !strings.HasPrefix(c.Image, "ghcr.io/parley-chat/parley:") {
		t.Errorf("%s: image %s, want ghcr.io/parley-chat/parley:<tag>", svc, c.Image)
	}
	if len(c.Command) != 0 || len(c.Args) == 0 || c.Args[0] != svc {
		t.Errorf("%s: args %q must start with the target %q (the image's entrypoint is parley)", svc, c.Args, svc)
		return
	}
	args := flagValues(c.Args[1:])
	for flag := range args {
		if !slices.Contains(serviceFlags[""], flag) && !slices.Contains(serviceFlags[svc], flag) {
			t.Errorf("%s: parley %s has no flag %s", svc, svc, flag)
		}
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	checkParleyEnv(t, svc, c)
	checkBusUser(t, m, d.Spec.Template.Spec, c, svc, svc)
	if args["--log-format"] != "json" {
		t.Errorf("%s: --log-format %q, want json", svc, args["--log-format"])
	}
	if _, ok := args["--replicas"]; !ok {
		t.Errorf("%s: no --replicas: the binary's default (3) would not fit every overlay", svc)
	}
	// The address the probes reach: the gateway's API, the other services'
	// health port.
	addrFlag := "--health-addr"
	switch svc {
	case "gateway":
		addrFlag = "--http-addr"
		if args["--http-addr"] != "0.0.0.0:8080" {
			t.Errorf("gateway: --http-addr %q, want 0.0.0.0:8080", args["--http-addr"])
		}
		if !m.mountsFileOf(d.Spec.Template.Spec, c, args["--signing-key-file"], "parley-signing-key") {
			t.Errorf("gateway: --signing-key-file %q is not in a volume of Secret parley-signing-key", args["--signing-key-file"])
		}
	case "privacy":
		if !m.mountsFileOf(d.Spec.Template.Spec, c, args["--kek-file"], "parley-kek") {
			t.Errorf("privacy: --kek-file %q is not in a volume of Secret parley-kek", args["--kek-file"])
		}
		if !m.mountsFileOf(d.Spec.Template.Spec, c, args["--audit-key-file"], "parley-audit-key") {
			t.Errorf("privacy: --audit-key-file %q is not in a volume of Secret parley-audit-key", args["--audit-key-file"])
		}
	case "analytics":
		want := "clickhouse://analytics@clickhouse:9000/default"
		if args["--clickhouse"] != "$(PARLEY_CLICKHOUSE_DSN)" || env["PARLEY_CLICKHOUSE_DSN"].Value != want {
			t.Errorf("analytics: ClickHouse DSN %q / %q, want $(PARLEY_CLICKHOUSE_DSN) = %q", args["--clickhouse"], env["PARLEY_CLICKHOUSE_DSN"].Value, want)
		}
		if secret, key := m.secretFile(d.Spec.Template.Spec, c, args["--clickhouse-password-file"]); secret != "parley-clickhouse" || key != "analytics-password" {
			t.Errorf("analytics: --clickhouse-password-file %q is %s/%s, want the analytics-password key of Secret parley-clickhouse", args["--clickhouse-password-file"], secret, key)
		}
		if _, ok := m.services["clickhouse"]; !ok {
			t.Errorf("analytics: no Service clickhouse for its DSN")
		}
	}
	_, port, err := net.SplitHostPort(args[addrFlag])
	if err != nil || !hasPort(d.Spec.Template.Spec, port) {
		t.Errorf("%s: %s %q: want host:port on a declared container port", svc, addrFlag, args[addrFlag])
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		paths []string
	}{
		{"startup", c.StartupProbe, []string{"/healthz", "/readyz"}},
		{"liveness", c.LivenessProbe, []string{"/healthz"}},
		{"readiness", c.ReadinessProbe, []string{"/readyz"}},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil || !slices.Contains(p.paths, p.probe.HTTPGet.Path) || containerPort(c, p.probe.HTTPGet.Port.String()) != port {
			t.Errorf("%s: want a %s probe of %s on port %s (%s)", svc, p.name, strings.Join(p.paths, " or "), port, addrFlag)
		}
	}
	// Chat and privacy start by catching up: they are started only once
	// ready, however long that takes.
	if svc == "chat" || svc == "privacy" {
		if p := c.StartupProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.PeriodSeconds*p.FailureThreshold < 15*60 {
			t.Errorf("%s: want a startup probe of /readyz allowing at least 15 minutes to catch up", svc)
		}
	}
	// A rollout never replaces a pod before its replacement is ready;
	// analytics, one reader at a time, stops the old pod first.
	switch st := d.Spec.Strategy; {
	case svc == "analytics":
		if st.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("analytics: strategy %s, want Recreate (one reader of ANALYTICS)", st.Type)
		}
	case st.Type != appsv1.RollingUpdateDeploymentStrategyType || st.RollingUpdate == nil || st.RollingUpdate.MaxUnavailable == nil ||
		st.RollingUpdate.MaxUnavailable.IntValue() != 0 || st.RollingUpdate.MaxUnavailable.String() != "0":
		t.Errorf("%s: want a RollingUpdate with maxUnavailable 0", svc)
	}
}

// checkBusUser checks that container c connects to NATS as user, without a
// password in its URL, the password in a file of the key user of Secret
// parley-nats-passwords.
func checkBusUser(t *testing.T, m manifests, spec corev1.PodSpec, c corev1.Container, where, user string) {
	t.Helper()
	// After the command and subcommand.
	first := slices.IndexFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "-") })
	args := flagValues(c.Args[max(first, 0):])
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if args["--nats-url"] != "$(PARLEY_NATS_URL)" || env["PARLEY_NATS_URL"].Value != "nats://nats:4222" {
		t.Errorf("%s: --nats-url %q = %q, want $(PARLEY_NATS_URL) = nats://nats:4222", where, args["--nats-url"], env["PARLEY_NATS_URL"].Value)
	}
	if args["--nats-user"] != user {
		t.Errorf("%s: --nats-user %q, want %q", where, args["--nats-user"], user)
	}
	if secret, key := m.secretFile(spec, c, args["--nats-password-file"]); secret != "parley-nats-passwords" || key != user {
		t.Errorf("%s: --nats-password-file %q is %s/%s, want the %q key of Secret parley-nats-passwords", where, args["--nats-password-file"], secret, key, user)
	}
}

// containerPort returns the number of c's port called port, or port when
// it is a number already.
func containerPort(c corev1.Container, port string) string {
	for _, p := range c.Ports {
		if p.Name == port {
			return strconv.Itoa(int(p.ContainerPort))
		}
	}
	return port
}

// flagValues maps each --flag to the argument after it (or after "=").
func flagValues(args []string) map[string]string {
	v := map[string]string{}
	for i := 0; i < len(args); i++ {
		name, value, ok := strings.Cut(args[i], "=")
		if !ok && i+1 < len(args) {
			value = args[i+1]
			i++
		}
		v[name] = value
	}
	return v
}

func secretRef(e corev1.EnvVar) string {
	if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		return ""
	}
	return e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
}

// isGenerated reports whether ref names key of the generated Secret that
// Kustomize built from the one called original.
func (m manifests) isGenerated(original, ref, key string) bool {
	s, ok := m.secrets[original]
	return ok && ref == s.Name+"/"+key
}

// mountsFileOf reports whether path is a file of a volume of the Secret
// called secret (or generated from it) that c mounts; when the Secret is in
// the build, the file must be one of its keys.
func (m manifests) mountsFileOf(spec corev1.PodSpec, c corev1.Container, path, secret string) bool {
	name, key := m.secretFile(spec, c, path)
	if name != secret {
		return false
	}
	if s, ok := m.secrets[secret]; ok {
		_, ok := s.Data[key]
		return ok
	}
	return true
}

// secretFile returns the Secret (by its name before Kustomize's suffix)
// and key whose file is at path in c, or "" when path is no file of a
// Secret volume c mounts.
func (m manifests) secretFile(spec corev1.PodSpec, c corev1.Container, path string) (secret, key string) {
	for _, vm := range c.VolumeMounts {
		file, ok := strings.CutPrefix(path, vm.MountPath+"/")
		if !ok || file == "" || strings.Contains(file, "/") {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			key = file
			if len(v.Secret.Items) > 0 {
				key = ""
				for _, it := range v.Secret.Items {
					if it.Path == file {
						key = it.Key
					}
				}
			}
			return hashSuffix.ReplaceAllString(v.Secret.SecretName, ""), key
		}
	}
	return "", ""
}

// natsBlock returns the text of the block that follows "name = {" in conf,
// up to its matching brace.
func natsBlock(t *testing.T, conf, name string) string {
	t.Helper()
	start := strings.Index(conf, name+" = {")
	if start < 0 {
		t.Fatalf("auth.conf: no block %s", name)
	}
	depth := 0
	for i := start; i < len(conf); i++ {
		switch conf[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return conf[start : i+1]
			}
		}
	}
	t.Fatalf("auth.conf: block %s is not closed", name)
	return ""
}

// list returns the quoted subjects of the first "key = [ ... ]" in block.
func list(block, key string) []string {
	start := strings.Index(block, key+" = [")
	if start < 0 {
		return nil
	}
	end := strings.Index(block[start:], "]")
	var subjects []string
	for _, line := range strings.Split(block[start:start+end], "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, `"`) {
			subjects = append(subjects, strings.Trim(line, `"`))
		}
	}
	return subjects
}

// generatedAuth is the authorization block pkg/buspolicy generates for the
// shipped users: what `make nats-config` writes to auth.conf.
func generatedAuth(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	if err := buspolicy.WriteAuthorization(&b, natsUsers, buspolicy.DefaultEnvPrefix); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestNATSAuthGenerated keeps the shipped users and permissions the ones
// pkg/buspolicy defines, which the embedded server of `parley all` and its
// attack tests use: a change there must reach the cluster.
func TestNATSAuthGenerated(t *testing.T) {
	got, err := os.ReadFile(authConf)
	if err != nil {
		t.Fatal(err)
	}
	if want := generatedAuth(t); string(got) != want {
		t.Errorf("%s is not what pkg/buspolicy generates (-want +got):\n%s\n"+
			"Regenerate it from the repository root with `make nats-config`, or\n"+
			"  go run ./cmd/parley nats-config --users %s --env-prefix %s > deploy/%s",
			authConf, cmp.Diff(want, string(got)), strings.Join(natsUsers, ","), buspolicy.DefaultEnvPrefix, authConf)
	}
}

// TestFlagsExist checks the mirrored flags against cmd/parley's sources,
// so that a renamed or removed flag fails here rather than at a rollout.
func TestFlagsExist(t *testing.T) {
	files, err := filepath.Glob("../cmd/parley/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("cmd/parley sources: %v (%d files)", err, len(files))
	}
	var src []byte
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	mirrored := slices.Concat(streamsApplyFlags, keysRotateFlags, serviceFlags[""], serviceFlags["gateway"], serviceFlags["chat"], serviceFlags["privacy"], serviceFlags["analytics"])
	for _, flag := range mirrored {
		defined := regexp.MustCompile(`\.(?:String|Int|Int64|Bool|Float64|Duration)(?:Var)?\((?:[^,()]+, )?"` + regexp.QuoteMeta(strings.TrimPrefix(flag, "--")) + `",`)
		if !defined.Match(src) {
			t.Errorf("cmd/parley defines no flag %s", flag)
		}
	}
}

// checkParleyEnv checks that each PARLEY_ variable of a service's
// container is the variable of one of its flags (cmd/parley reads
// PARLEY_<FLAG> for a flag not given) or is expanded into its args: parley
// ignores any other, so a misspelt one would leave its flag at the default
// without a word.
func checkParleyEnv(t *testing.T, svc string, c corev1.Container) {
	t.Helper()
	for _, e := range c.Env {
		name, ok := strings.CutPrefix(e.Name, "PARLEY_")
		if !ok {
			continue
		}
		flag := "--" + strings.ReplaceAll(strings.ToLower(name), "_", "-")
		if slices.Contains(serviceFlags[""], flag) || slices.Contains(serviceFlags[svc], flag) {
			continue
		}
		if slices.ContainsFunc(c.Args, func(a string) bool { return strings.Contains(a, "$("+e.Name+")") }) {
			continue
		}
		t.Errorf("%s: environment variable %s is neither the variable of a flag of parley %s nor used in its args", svc, e.Name, svc)
	}
}

// checkNATSServerLoads has nats-server's own parser load the built
// configuration and checks that it yields exactly pkg/buspolicy's users.
func checkNATSServerLoads(t *testing.T, m manifests) {
	t.Helper()
	opts := loadNATSConfig(t, m)
	checkNATSUsers(t, opts)
	checkNATSPings(t, opts)
}

// checkNATSPings checks that the server leaves a client, and a route,
// that stopped answering within seconds (docs/operations.md, "Failover"),
// with the values the embedded server uses.
func checkNATSPings(t *testing.T, opts *server.Options) {
	t.Helper()
	if opts.PingInterval != natsembed.ClientPingInterval || opts.MaxPingsOut != natsembed.ClientMaxPingsOut || opts.WriteDeadline != natsembed.ClientWriteDeadline {
		t.Errorf("nats.conf: clients' ping_interval %v, ping_max %d, write_deadline %v; want pkg/natsembed's %v, %d, %v",
			opts.PingInterval, opts.MaxPingsOut, opts.WriteDeadline,
			natsembed.ClientPingInterval, natsembed.ClientMaxPingsOut, natsembed.ClientWriteDeadline)
	}
	if opts.Cluster.Port == 0 {
		return // no routes
	}
	if opts.Cluster.PingInterval != natsembed.RoutePingInterval || opts.Cluster.MaxPingsOut != natsembed.RouteMaxPingsOut || opts.Cluster.WriteDeadline != natsembed.RouteWriteDeadline {
		t.Errorf("topology.conf: the cluster's ping_interval %v, ping_max %d, write_deadline %v; want pkg/natsembed's %v, %d, %v",
			opts.Cluster.PingInterval, opts.Cluster.MaxPingsOut, opts.Cluster.WriteDeadline,
			natsembed.RoutePingInterval, natsembed.RouteMaxPingsOut, natsembed.RouteWriteDeadline)
	}
}

// loadNATSConfig has nats-server's own parser load the built
// configuration, in the environment Kubernetes gives the NATS container,
// each Secret it mounts made of files in cert-manager's layout (tls.crt,
// tls.key, ca.crt) that a CA of the test issued: the parser reads the TLS
// files it names.
func loadNATSConfig(t *testing.T, m manifests) *server.Options {
	t.Helper()
	dir := t.TempDir()
	spec := m.statefulSets["nats"].Spec.Template.Spec
	nats := spec.Containers[0]
	var mounts []string
	for _, vm := range nats.VolumeMounts {
		if name, _ := m.secretFile(spec, nats, vm.MountPath+"/tls.crt"); name != "" {
			mounts = append(mounts, vm.MountPath, natstest.NewPKI(t, "parley-nats-ca").Issue(vm.Name).Dir)
		}
	}
	paths := strings.NewReplacer(mounts...)
	for name, data := range m.configMaps["nats-config"].Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(paths.Replace(data)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Each Secret key becomes "secret-<key>"; $(VAR) expands as Kubernetes
	// does.
	env := map[string]string{}
	for _, e := range nats.Env {
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			v = "secret-" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom != nil:
			v = "from-" + e.Name
		}
		env[e.Name] = expansion.ReplaceAllStringFunc(v, func(ref string) string { return env[ref[2:len(ref)-1]] })
		t.Setenv(e.Name, env[e.Name])
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatalf("nats-server cannot load the configuration: %v", err)
	}
	return opts
}

// checkNATSUsers checks that opts has exactly pkg/buspolicy's users.
func checkNATSUsers(t *testing.T, opts *server.Options) {
	t.Helper()
	passwords := map[string]string{}
	for _, u := range natsUsers {
		passwords[u] = "secret-" + u
	}
	want, err := buspolicy.Users(passwords)
	if err != nil {
		t.Fatal(err)
	}
	type user struct {
		Name, Password string
		Permissions    *server.Permissions
	}
	simplify := func(us []*server.User) []user {
		var out []user
		for _, u := range us {
			out = append(out, user{u.Username, u.Password, u.Permissions})
		}
		slices.SortFunc(out, func(a, b user) int { return strings.Compare(a.Name, b.Name) })
		return out
	}
	if diff := cmp.Diff(simplify(want), simplify(opts.Users)); diff != "" {
		t.Errorf("nats-server's users differ from pkg/buspolicy's (-want +got):\n%s", diff)
	}
}

// checkStreamsApply checks the init container of privacy that applies the
// stream definitions: `parley streams apply` as the NATS admin user, with
// the replicas the services use, before privacy starts.
func checkStreamsApply(t *testing.T, m manifests) {
	t.Helper()
	d, ok := m.deployments["privacy"]
	if !ok {
		return // checkParleyService reports it
	}
	var c *corev1.Container
	for i, ic := range d.Spec.Template.Spec.InitContainers {
		if len(ic.Args) >= 2 && ic.Args[0] == "streams" && ic.Args[1] == "apply" {
			c = &d.Spec.Template.Spec.InitContainers[i]
		}
	}
	if c == nil {
		t.Error("privacy: no init container running `parley streams apply`: changed stream definitions would never be applied")
		return
	}
	if c.Image != d.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("privacy: streams apply runs %s, the service %s: want one version", c.Image, d.Spec.Template.Spec.Containers[0].Image)
	}
	args := flagValues(c.Args[2:])
	for flag := range args {
		if !slices.Contains(streamsApplyFlags, flag) {
			t.Errorf("privacy: parley streams apply has no flag %s", flag)
		}
	}
	spec := d.Spec.Template.Spec
	checkBusUser(t, m, spec, *c, "privacy: streams apply", buspolicy.Admin)
	service := flagValues(spec.Containers[0].Args[1:])
	if args["--replicas"] == "" || args["--replicas"] != service["--replicas"] {
		t.Errorf("privacy: streams apply --replicas %q, the services' %q: a different count is a changed definition", args["--replicas"], service["--replicas"])
	}
	// The admin password is the init container's alone.
	for _, sc := range spec.Containers {
		for _, e := range sc.Env {
			if secretRef(e) == "parley-nats-passwords/admin" || m.isGenerated("parley-nats-passwords", secretRef(e), buspolicy.Admin) {
				t.Errorf("privacy: container %s gets the admin password (%s); only the init container may", sc.Name, e.Name)
			}
		}
		for _, vm := range sc.VolumeMounts {
			for _, v := range spec.Volumes {
				if v.Name == vm.Name && v.Secret != nil && hashSuffix.ReplaceAllString(v.Secret.SecretName, "") == "parley-nats-passwords" &&
					(len(v.Secret.Items) == 0 || slices.ContainsFunc(v.Secret.Items, func(it corev1.KeyToPath) bool { return it.Key == buspolicy.Admin })) {
					t.Errorf("privacy: container %s mounts the admin password (volume %s); only the init container may", sc.Name, v.Name)
				}
			}
		}
	}
}

// checkNATSConfig checks the permission sets of privacy guarantee 4 and
// that each service's NATS user gets its password from the same Secret key
// the service uses.
func checkNATSConfig(t *testing.T, m manifests) {
	t.Helper()
	cm, ok := m.configMaps["nats-config"]
	if !ok {
		t.Fatal("no ConfigMap nats-config")
	}
	if !strings.Contains(cm.Data["nats.conf"], "include ./topology.conf") || cm.Data["topology.conf"] == "" {
		t.Error("nats.conf must include a non-empty topology.conf")
	}
	if !strings.Contains(cm.Data["nats.conf"], "include ./auth.conf") {
		t.Error("nats.conf must include auth.conf")
	}
	if strings.Contains(cm.Data["nats.conf"], "authorization") || strings.Contains(cm.Data["topology.conf"], "users") {
		t.Error("users and permissions belong in auth.conf only, generated from pkg/buspolicy")
	}
	conf := cm.Data["auth.conf"]
	if want := generatedAuth(t); conf != want {
		t.Errorf("ConfigMap nats-config: auth.conf is not pkg/buspolicy's definition:\n%s\nRegenerate it with `make nats-config`.", cmp.Diff(want, conf))
	}
	checkNATSServerLoads(t, m)

	analytics := natsBlock(t, conf, "ANALYTICS")
	pub, sub := natsBlock(t, analytics, "publish"), natsBlock(t, analytics, "subscribe")
	for _, allowed := range slices.Concat(list(pub, "allow"), list(sub, "allow")) {
		if allowed == ">" || strings.HasPrefix(allowed, "chat.") || strings.HasPrefix(allowed, "live.chat.") || strings.HasPrefix(allowed, "keys.") ||
			strings.Contains(allowed, ".CHAT") || strings.Contains(allowed, ".KEYS") || strings.HasPrefix(allowed, "parley.keys") {
			t.Errorf("auth.conf: analytics may use %q (guarantee 4: no chat.>, no live.chat.>, no KEYS)", allowed)
		}
	}
	for _, denied := range []string{"chat.>", "live.chat.>", "keys.>"} {
		if !slices.Contains(list(sub, "deny"), denied) || !slices.Contains(list(pub, "deny"), denied) {
			t.Errorf("auth.conf: analytics must deny %q explicitly", denied)
		}
	}
	for _, user := range []string{"GATEWAY", "CHAT", "PRIVACY", "ANALYTICS"} {
		if strings.Contains(natsBlock(t, conf, user), "$JS.API.STREAM.UPDATE") {
			t.Errorf("auth.conf: %s may update a stream, and so make it source another (pkg/buspolicy)", user)
		}
	}
	for _, user := range []string{"GATEWAY", "ANALYTICS", "CHAT"} {
		block := natsBlock(t, conf, user)
		for _, allowed := range slices.Concat(list(natsBlock(t, block, "publish"), "allow"), list(natsBlock(t, block, "subscribe"), "allow")) {
			if strings.Contains(allowed, "KEYS") || strings.HasPrefix(allowed, "keys.") || allowed == ">" || allowed == "$JS.API.>" {
				t.Errorf("auth.conf: %s may use %q, which reads the KEYS stream", user, allowed)
			}
		}
	}

	nats := m.statefulSets["nats"].Spec.Template.Spec.Containers[0]
	for _, svc := range natsUsers {
		upper := strings.ToUpper(svc)
		user := fmt.Sprintf("{user: %s, password: $NATS_PASSWORD_%s, permissions: $%s}", svc, upper, upper)
		if svc == buspolicy.Admin {
			user = fmt.Sprintf("{user: %s, password: $NATS_PASSWORD_%s}", svc, upper)
		}
		if !strings.Contains(conf, user) {
			t.Errorf("auth.conf: want user entry %s", user)
		}
		var ref string
		for _, e := range nats.Env {
			if e.Name == "NATS_PASSWORD_"+upper {
				ref = secretRef(e)
			}
		}
		if ref != "parley-nats-passwords/"+svc && !m.isGenerated("parley-nats-passwords", ref, svc) {
			t.Errorf("nats: NATS_PASSWORD_%s comes from %q, want the %q key of parley-nats-passwords", upper, ref, svc)
		}
	}
}

func TestDev(t *testing.T) {
	m := build(t, "k8s/overlays/dev")
	for _, w := range m.workloads() {
		if w.replicas != 1 {
			t.Errorf("%s %s: %d replicas, want 1 in dev", w.kind, w.name, w.replicas)
		}
	}
	if got := m.configMaps["parley-config"].Data["stream-replicas"]; got != "1" {
		t.Errorf("stream-replicas %q, want 1 on a single NATS server", got)
	}
	if regexp.MustCompile(`(?m)^\s*cluster\s*\{`).MatchString(m.configMaps["nats-config"].Data["topology.conf"]) {
		t.Error("dev NATS is a single server, but topology.conf configures a cluster")
	}

	// The generated dev Secrets must be usable, or the dev overlay would not
	// start: a KEK of 32 bytes in hex, an Ed25519 PKCS#8 PEM key, and
	// passwords that go into URLs unescaped.
	kek := strings.TrimSpace(string(m.secrets["parley-kek"].Data["kek"]))
	if b, err := hex.DecodeString(kek); err != nil || len(b) != 32 {
		t.Errorf("dev kek: want 64 hex digits, got %d characters (%v)", len(kek), err)
	}
	block, _ := pem.Decode(m.secrets["parley-signing-key"].Data["signing-key.pem"])
	if block == nil {
		t.Fatal("dev signing key: no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if _, ok := key.(ed25519.PrivateKey); err != nil || !ok {
		t.Errorf("dev signing key: want an Ed25519 PKCS#8 key, got %T (%v)", key, err)
	}
	for _, name := range []string{"parley-nats-passwords", "parley-clickhouse"} {
		for k, v := range m.secrets[name].Data {
			if url.PathEscape(string(v)) != string(v) || strings.ContainsAny(string(v), ":@/") {
				t.Errorf("%s/%s: not URL-safe", name, k)
			}
			if !strings.HasPrefix(string(v), "dev-only-") {
				t.Errorf("%s/%s: dev passwords must say dev-only", name, k)
			}
		}
	}
}

func TestProduction(t *testing.T) {
	m := build(t, "k8s/overlays/production")
	if len(m.secrets) > 0 {
		t.Errorf("production must not generate Secrets, got %d", len(m.secrets))
	}
	for _, w := range m.workloads() {
		for _, c := range slices.Concat(w.pod.Spec.InitContainers, w.pod.Spec.Containers) {
			_, tag, ok := strings.Cut(c.Image[strings.LastIndex(c.Image, "/")+1:], ":")
			if !ok || tag == "" || tag == "latest" {
				t.Errorf("%s %s: image %s has no fixed version", w.kind, w.name, c.Image)
			}
		}
	}

	nats := m.statefulSets["nats"]
	if *nats.Spec.Replicas != 3 {
		t.Errorf("nats: %d replicas, want 3", *nats.Spec.Replicas)
	}
	if got := m.configMaps["parley-config"].Data["stream-replicas"]; got != "3" {
		t.Errorf("stream-replicas %q, want 3", got)
	}
	topology := m.configMaps["nats-config"].Data["topology.conf"]
	if !regexp.MustCompile(`(?m)^\s*sync_interval:\s*always\s*$`).MatchString(topology) {
		t.Error("production topology.conf: want sync_interval: always")
	}
	// The cluster's pings: checkNATSPings.
	env := map[string]corev1.EnvVar{}
	for _, e := range nats.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e
	}
	for i := range int(*nats.Spec.Replicas) {
		route := fmt.Sprintf("NATS_ROUTE_%d", i)
		if !strings.Contains(topology, "$"+route) {
			t.Errorf("topology.conf: no route %s", route)
		}
		want := fmt.Sprintf("nats://route:$(NATS_ROUTE_PASSWORD)@nats-%d.%s:6222", i, nats.Spec.ServiceName)
		if env[route].Value != want {
			t.Errorf("nats: %s = %q, want %q", route, env[route].Value, want)
		}
	}
	if secretRef(env["NATS_ROUTE_PASSWORD"]) != "parley-nats-passwords/route" {
		t.Errorf("nats: NATS_ROUTE_PASSWORD must come from parley-nats-passwords/route")
	}
	if !requiresAntiAffinity(nats.Spec.Template.Spec) {
		t.Error("nats: servers must be on distinct nodes (required anti-affinity)")
	}

	for _, name := range []string{"gateway", "chat"} {
		d := m.deployments[name]
		if m.replicas(d) < 2 {
			t.Errorf("%s: %d replicas, want at least 2", name, m.replicas(d))
		}
		if a := d.Spec.Template.Spec.Affinity; a == nil || a.PodAntiAffinity == nil {
			t.Errorf("%s: no pod anti-affinity", name)
		}
	}

	// A PodDisruptionBudget for every workload with more than one replica;
	// NATS's must keep a quorum.
	for _, w := range m.workloads() {
		if w.replicas < 2 {
			continue
		}
		var covered bool
		for _, pdb := range m.pdbs {
			if labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(labels.Set(w.pod.Labels)) {
				covered = true
				if w.name == "nats" && (pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1) {
					t.Errorf("PodDisruptionBudget %s: nats needs maxUnavailable 1", pdb.Name)
				}
			}
		}
		if !covered {
			t.Errorf("%s %s: %d replicas and no PodDisruptionBudget", w.kind, w.name, w.replicas)
		}
	}

	ing, ok := m.ingresses["gateway"]
	if !ok {
		t.Fatal("no Ingress gateway")
	}
	for _, rule := range ing.Spec.Rules {
		for _, p := range rule.HTTP.Paths {
			b := p.Backend.Service
			if b == nil || b.Name != "gateway" || b.Port.Name != "http" {
				t.Errorf("Ingress gateway: backend %v, want Service gateway port http", p.Backend)
			}
		}
	}
	if svc := m.services["gateway"]; svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("Service gateway: ports %v, want http 80 to the pod's http port", svc.Spec.Ports)
	}
}

func requiresAntiAffinity(spec corev1.PodSpec) bool {
	a := spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		return false
	}
	for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		if term.TopologyKey == "kubernetes.io/hostname" {
			return true
		}
	}
	return false
}
