package deploy

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// peer is one end of a connection: a pod of a workload, a pod in another
// namespace, or an address outside the cluster.
type peer struct {
	name      string
	namespace string // "" outside the cluster
	labels    map[string]string
	ip        netip.Addr
	ports     []corev1.ContainerPort // what it listens on
}

func (p peer) inCluster() bool { return p.namespace != "" }

// outsiders are the peers the policies name outside Parley's namespace, and
// some they must not let in or out: a pod of another namespace, an address
// on the internet and one on the private network.
func outsiders() []peer {
	tcp := func(ports ...int32) []corev1.ContainerPort {
		var out []corev1.ContainerPort
		for _, p := range ports {
			out = append(out, corev1.ContainerPort{ContainerPort: p, Protocol: corev1.ProtocolTCP})
		}
		return out
	}
	return []peer{
		{name: "ingress-controller", namespace: "ingress-nginx", labels: map[string]string{"app.kubernetes.io/name": "ingress-nginx"}, ip: netip.MustParseAddr("10.244.9.1"), ports: tcp(80, 443)},
		{name: "ingress-nginx-other-pod", namespace: "ingress-nginx", labels: map[string]string{"app": "webhook"}, ip: netip.MustParseAddr("10.244.9.2"), ports: tcp(8443)},
		{name: "monitoring", namespace: "monitoring", labels: map[string]string{"app": "prometheus"}, ip: netip.MustParseAddr("10.244.9.3"), ports: tcp(9090)},
		{name: "analysts", namespace: "parley-analysts", labels: map[string]string{"app": "grafana"}, ip: netip.MustParseAddr("10.244.9.4"), ports: tcp(3000)},
		{name: "kube-dns", namespace: "kube-system", labels: map[string]string{"k8s-app": "kube-dns"}, ip: netip.MustParseAddr("10.244.9.5"),
			ports: []corev1.ContainerPort{{ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {ContainerPort: 53, Protocol: corev1.ProtocolTCP}}},
		{name: "other-namespace", namespace: "default", labels: map[string]string{"app.kubernetes.io/component": "service", "app.kubernetes.io/name": "gateway"}, ip: netip.MustParseAddr("10.244.9.6"), ports: tcp(80, 4222, 8080)},
		{name: "internet", ip: netip.MustParseAddr("203.0.113.7"), ports: tcp(80, 443)},
		{name: "internet-v6", ip: netip.MustParseAddr("2001:db8::7"), ports: tcp(443)},
		{name: "private-network", ip: netip.MustParseAddr("10.20.0.5"), ports: tcp(443, 5432)},
	}
}

// parleyPeers are the pods of the built workloads, one each.
func parleyPeers(m manifests) []peer {
	var out []peer
	for i, w := range m.workloads() {
		var ports []corev1.ContainerPort
		for _, c := range w.pod.Spec.Containers {
			for _, p := range c.Ports {
				if p.Protocol == "" {
					p.Protocol = corev1.ProtocolTCP
				}
				ports = append(ports, p)
			}
		}
		out = append(out, peer{name: w.name, namespace: "parley", labels: w.pod.Labels, ip: netip.AddrFrom4([4]byte{10, 244, 1, byte(i + 1)}), ports: ports})
	}
	return out
}

// wantFlow is the network this project means to allow: every connection
// from src to port of dst that the policies must let through, and none
// else.
func wantFlow(src, dst peer, port corev1.ContainerPort) bool {
	tcp := port.Protocol == corev1.ProtocolTCP
	srcApp, dstApp := src.labels["app.kubernetes.io/name"], dst.labels["app.kubernetes.io/name"]
	parley := func(p peer) bool { return p.namespace == "parley" }
	service := func(p peer) bool { return parley(p) && slices.Contains(services, p.labels["app.kubernetes.io/name"]) }
	switch {
	case dst.name == "kube-dns":
		return parley(src) && port.ContainerPort == 53
	case dst.name == "internet" || dst.name == "internet-v6":
		// the tenants' identity providers, for staff sign-in; the webhooks
		// of their bots and integrations
		return parley(src) && (srcApp == "gateway" || srcApp == "privacy") && tcp && port.ContainerPort == 443
	case !parley(dst):
		return false
	case dstApp == "nats":
		return service(src) && port.ContainerPort == 4222 ||
			parley(src) && srcApp == "nats" && port.ContainerPort == 6222 ||
			src.name == "monitoring" && port.ContainerPort == 8222
	case dstApp == "clickhouse":
		return parley(src) && srcApp == "analytics" && port.ContainerPort == 9000 ||
			src.name == "analysts" && (port.ContainerPort == 9000 || port.ContainerPort == 8123)
	case service(dst):
		return src.name == "monitoring" ||
			dstApp == "gateway" && src.name == "ingress-controller" && port.Name == "http"
	}
	return false
}

// TestNetworkPolicies evaluates the built NetworkPolicies as Kubernetes
// does on every connection between the workloads' pods and the peers
// around them, and compares what they let through with wantFlow: default
// deny in both directions, only what the design needs.
func TestNetworkPolicies(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			m := build(t, "k8s/overlays/"+overlay)
			pods := parleyPeers(m)
			for _, p := range pods {
				for _, dir := range []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress} {
					if len(selecting(m, p, dir)) == 0 {
						t.Errorf("%s: no %s NetworkPolicy selects its pod", p.name, dir)
					}
				}
			}
			all := slices.Concat(pods, outsiders())
			var got, want []string
			for _, src := range all {
				for _, dst := range all {
					// What neither end in Parley's namespace does is not
					// the policies' business.
					if src.namespace != "parley" && dst.namespace != "parley" {
						continue
					}
					for _, port := range dst.ports {
						flow := fmt.Sprintf("%s -> %s:%d/%s", src.name, dst.name, port.ContainerPort, port.Protocol)
						if allowed(m, src, dst, port) {
							got = append(got, flow)
						}
						if wantFlow(src, dst, port) {
							want = append(want, flow)
						}
					}
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("connections the NetworkPolicies allow (-want +got):\n%s", diff)
			}
		})
	}
}

// allowed reports whether a connection from src to port of dst passes
// src's egress policies and dst's ingress policies; a side in no namespace
// of ours is not governed by them.
func allowed(m manifests, src, dst peer, port corev1.ContainerPort) bool {
	if src.namespace == "parley" && !admits(m, src, networkingv1.PolicyTypeEgress, dst, src, dst, port) {
		return false
	}
	return dst.namespace != "parley" || admits(m, dst, networkingv1.PolicyTypeIngress, src, src, dst, port)
}

// admits reports whether the policies of direction dir that select pod let
// through a connection with other, from src to port of dst: true when none
// selects it, as Kubernetes has it.
func admits(m manifests, pod peer, dir networkingv1.PolicyType, other, src, dst peer, port corev1.ContainerPort) bool {
	policies := selecting(m, pod, dir)
	if len(policies) == 0 {
		return true
	}
	for _, np := range policies {
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range np.Spec.Ingress {
				if peersMatch(r.From, other) && portsMatch(r.Ports, dst, port) {
					return true
				}
			}
			continue
		}
		for _, r := range np.Spec.Egress {
			if peersMatch(r.To, other) && portsMatch(r.Ports, dst, port) {
				return true
			}
		}
	}
	return false
}

// selecting returns the policies of direction dir whose podSelector
// selects p (all in Parley's namespace, as build checks).
func selecting(m manifests, p peer, dir networkingv1.PolicyType) []*networkingv1.NetworkPolicy {
	if p.namespace != "parley" {
		return nil
	}
	var out []*networkingv1.NetworkPolicy
	for _, np := range m.policies {
		types := np.Spec.PolicyTypes
		if len(types) == 0 { // Kubernetes's default
			types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(np.Spec.Egress) > 0 {
				types = append(types, networkingv1.PolicyTypeEgress)
			}
		}
		if slices.Contains(types, dir) && selects(&np.Spec.PodSelector, p.labels) {
			out = append(out, np)
		}
	}
	return out
}

func selects(s *metav1.LabelSelector, l map[string]string) bool {
	sel, err := metav1.LabelSelectorAsSelector(s)
	return err == nil && sel.Matches(labels.Set(l))
}

// peersMatch reports whether p is one of peers; no peers is everyone.
func peersMatch(peers []networkingv1.NetworkPolicyPeer, p peer) bool {
	if len(peers) == 0 {
		return true
	}
	for _, np := range peers {
		switch {
		case np.IPBlock != nil:
			if inBlock(np.IPBlock, p.ip) {
				return true
			}
		case !p.inCluster():
		case np.NamespaceSelector == nil:
			// a pod selector alone: pods of the policy's own namespace
			if p.namespace == "parley" && selects(np.PodSelector, p.labels) {
				return true
			}
		default:
			ns := map[string]string{"kubernetes.io/metadata.name": p.namespace}
			if selects(np.NamespaceSelector, ns) && (np.PodSelector == nil || selects(np.PodSelector, p.labels)) {
				return true
			}
		}
	}
	return false
}

func inBlock(b *networkingv1.IPBlock, ip netip.Addr) bool {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !cidr.Contains(ip) {
		return false
	}
	for _, e := range b.Except {
		if ex, err := netip.ParsePrefix(e); err == nil && ex.Contains(ip) {
			return false
		}
	}
	return true
}

// portsMatch reports whether port of dst is one of ports; no ports is
// every port. A named port is looked up among dst's container ports.
func portsMatch(ports []networkingv1.NetworkPolicyPort, dst peer, port corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if proto != port.Protocol {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.StrVal != "":
			if p.Port.StrVal == port.Name {
				return true
			}
		default:
			end := p.Port.IntVal
			if p.EndPort != nil {
				end = *p.EndPort
			}
			if port.ContainerPort >= p.Port.IntVal && port.ContainerPort <= end {
				return true
			}
		}
	}
	return false
}
