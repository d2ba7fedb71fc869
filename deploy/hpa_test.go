package deploy

import (
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// replicas is what a Deployment runs at least: its HorizontalPodAutoscaler's
// minimum when one scales it, else its own count (1 when unset).
func (m manifests) replicas(d *appsv1.Deployment) int32 {
	if h := m.autoscaler(d.Name); h != nil && h.Spec.MinReplicas != nil {
		return *h.Spec.MinReplicas
	}
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// autoscaler returns the HorizontalPodAutoscaler of Deployment name, if any.
func (m manifests) autoscaler(name string) *autoscalingv2.HorizontalPodAutoscaler {
	for _, h := range m.hpas {
		if ref := h.Spec.ScaleTargetRef; ref.Kind == "Deployment" && ref.Name == name && ref.APIVersion == "apps/v1" {
			return h
		}
	}
	return nil
}

// TestGatewayAutoscaled checks the production gateway's autoscaler: on CPU
// against the pod's request, from at least two instances, scaling down
// slowly (each instance removed closes its WebSocket sessions, whose
// clients reconnect), and the Deployment leaving the count to it, as a
// replica count in the manifest would reset the scaled one at every apply.
func TestGatewayAutoscaled(t *testing.T) {
	m := build(t, "k8s/overlays/production")
	h := m.autoscaler("gateway")
	if h == nil {
		t.Fatal("no HorizontalPodAutoscaler for Deployment gateway")
	}
	d := m.deployments["gateway"]
	if d.Spec.Replicas != nil {
		t.Errorf("Deployment gateway sets replicas %d: every apply would reset what the autoscaler chose", *d.Spec.Replicas)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas <= *h.Spec.MinReplicas {
		t.Errorf("gateway autoscaler: min %v max %d, want at least 2 and more above", h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	var cpu bool
	for _, metric := range h.Spec.Metrics {
		r := metric.Resource
		if metric.Type == autoscalingv2.ResourceMetricSourceType && r != nil && r.Name == corev1.ResourceCPU &&
			r.Target.Type == autoscalingv2.UtilizationMetricType && r.Target.AverageUtilization != nil {
			cpu = true
			if _, ok := d.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; !ok {
				t.Error("gateway autoscaler: CPU utilization without a CPU request")
			}
		}
	}
	if !cpu {
		t.Error("gateway autoscaler: no CPU utilization target")
	}
	// Sessions are refused past three quarters (services/gateway,
	// sessionMemoryShare) of the soft memory limit, 90% of the container's
	// (cmd/parley, memoryLimitShare): the autoscaler must add pods before.
	const sessionsCapShare = 0.9 * 0.75
	limit, ok := d.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]
	if !ok {
		t.Fatal("gateway: no memory limit")
	}
	var memory bool
	for _, metric := range h.Spec.Metrics {
		r := metric.Resource
		if metric.Type != autoscalingv2.ResourceMetricSourceType || r == nil || r.Name != corev1.ResourceMemory {
			continue
		}
		if r.Target.Type != autoscalingv2.AverageValueMetricType || r.Target.AverageValue == nil {
			t.Errorf("gateway autoscaler: memory target %s, want an average value", r.Target.Type)
			continue
		}
		memory = true
		if v := r.Target.AverageValue.AsApproximateFloat64(); v >= sessionsCapShare*limit.AsApproximateFloat64() {
			t.Errorf("gateway autoscaler: memory target %s at or past the sessions' cap (%.3g of the limit %s): pods refuse sessions before more are added",
				r.Target.AverageValue, sessionsCapShare, &limit)
		}
	}
	if !memory {
		t.Error("gateway autoscaler: no memory target, which grows with the sessions held")
	}
	down := h.Spec.Behavior
	if down == nil || down.ScaleDown == nil || down.ScaleDown.StabilizationWindowSeconds == nil || *down.ScaleDown.StabilizationWindowSeconds < 300 {
		t.Error("gateway autoscaler: scale down after at least 5 minutes of lower load")
	}
}

// TestIngress checks the Ingress's class and the controller settings the
// gateway needs: WebSocket sessions held an hour without traffic, and no
// access log (docs/privacy.md, guarantee 5).
func TestIngress(t *testing.T) {
	m := build(t, "k8s/overlays/production")
	ing, ok := m.ingresses["gateway"]
	if !ok {
		t.Fatal("no Ingress gateway")
	}
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" {
		t.Errorf("Ingress gateway: class %v, want nginx (the controller the NetworkPolicy admits)", ing.Spec.IngressClassName)
	}
	for _, key := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
		v, err := strconv.Atoi(ing.Annotations["nginx.ingress.kubernetes.io/"+key])
		if err != nil || v < 3600 {
			t.Errorf("Ingress gateway: %s %q, want at least 3600 seconds for idle WebSocket sessions", key, ing.Annotations["nginx.ingress.kubernetes.io/"+key])
		}
	}
	if ing.Annotations["nginx.ingress.kubernetes.io/enable-access-log"] != "false" {
		t.Error("Ingress gateway: the controller's access log records client addresses; turn it off")
	}
	// What clients use is routed; the operations endpoints are not.
	routed := func(p string) bool {
		for _, r := range ing.Spec.Rules {
			if r.HTTP == nil {
				continue
			}
			for _, ip := range r.HTTP.Paths {
				switch {
				case ip.PathType != nil && *ip.PathType == networkingv1.PathTypeExact:
					if p == ip.Path {
						return true
					}
				case ip.Path == "/" || p == ip.Path || strings.HasPrefix(p, strings.TrimSuffix(ip.Path, "/")+"/"):
					return true
				}
			}
		}
		return false
	}
	for _, p := range []string{"/v1/conversations", "/v1/stream", "/v1/openapi.json", "/widget.js", "/widget-frame", "/assets/widget-0123456789ab.js", "/console", "/privacy", "/dashboard"} {
		if !routed(p) {
			t.Errorf("Ingress gateway: %s is not routed to the gateway", p)
		}
	}
	for _, p := range []string{"/metrics", "/readyz", "/healthz", "/demo", "/v10"} {
		if routed(p) {
			t.Errorf("Ingress gateway: %s is routed from outside the cluster", p)
		}
	}
}
