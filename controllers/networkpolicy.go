package controllers

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// DefaultBlockedCIDRs are the addresses a sandbox's internet egress leaves
// out: private ranges (where Pods, Services and nodes usually live), shared
// address space (some clouds' metadata and Pod networks), loopback,
// link-local (the cloud metadata endpoint, 169.254.169.254, and IPv6's
// fd00:ec2::254 under fc00::/7), and reserved and multicast ranges. A
// cluster whose Pods or nodes use public addresses adds them (manager flag
// --sandbox-blocked-cidrs).
var DefaultBlockedCIDRs = []string{
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
	"192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
	"::/128", "::1/128", "64:ff9b::/96", "fc00::/7", "fe80::/10", "ff00::/8",
}

// Where the cluster's DNS runs: CoreDNS and kube-dns both carry this label
// in kube-system on kubeadm, kind, GKE, EKS and AKS clusters. A cluster whose
// DNS runs elsewhere opens it with a spec.network.egress rule.
const (
	dnsNamespace = "kube-system"
	dnsLabel     = "k8s-app"
	dnsLabelApp  = "kube-dns"
)

// networkPolicyName names a pool's NetworkPolicy.
func networkPolicyName(sandboxSet string) string { return sandboxSet + "-sandboxes" }

// networkInputs is what a pool's NetworkPolicy depends on besides its
// SandboxSet.
type networkInputs struct {
	// apiServer holds the API server's own addresses: the endpoints of the
	// default/kubernetes Service. Where they are public, the internet rule
	// leaves them out too.
	apiServer []netip.Addr
	// services holds the Services the pool names that exist.
	services map[agentsv1alpha1.ServiceReference]*corev1.Service
	// blocked are the prefixes the internet rule leaves out.
	blocked []netip.Prefix
}

// buildNetworkPolicy is the NetworkPolicy a SandboxSet's pool gets: it
// selects every Pod of the pool and admits only what the pool's spec opens.
// unresolved lists, as sentences, the named Services it could not follow.
func buildNetworkPolicy(sbs *agentsv1alpha1.SandboxSet, in networkInputs) (np *networkingv1.NetworkPolicy, unresolved []string) {
	network := &sbs.Spec.Network
	egress := []networkingv1.NetworkPolicyEgressRule{dnsRule()}
	if network.InternetAllowed() {
		egress = append(egress, internetRule(in.blocked, in.apiServer))
	}
	for _, ref := range network.EgressToServices {
		rule, problem := serviceRule(ref, in.services[ref])
		if problem != "" {
			unresolved = append(unresolved, problem)
			continue
		}
		egress = append(egress, rule)
	}
	egress = append(egress, deepCopyEgress(network.Egress)...)

	np = &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       sbs.Namespace,
			Name:            networkPolicyName(sbs.Name),
			Labels:          map[string]string{agentsv1alpha1.LabelSandboxSet: sbs.Name},
			OwnerReferences: []metav1.OwnerReference{*ownerReference(sbs)},
		},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{agentsv1alpha1.LabelSandboxSet: sbs.Name}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			// Nil for none, as the stored object reads back: with
			// policyTypes Ingress, no rules means no ingress.
			Ingress: deepCopyIngress(network.Ingress),
			Egress:  egress,
		},
	}
	return np, unresolved
}

// dnsRule lets sandboxes resolve names through the cluster's DNS.
func dnsRule() networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{
		To: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: dnsNamespace}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{dnsLabel: dnsLabelApp}},
		}},
		Ports: []networkingv1.NetworkPolicyPort{
			{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(53))},
			{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(53))},
		},
	}
}

// internetRule lets sandboxes reach every address but the blocked ones and
// the API server's, for IPv4 and IPv6 alike.
func internetRule(blocked []netip.Prefix, apiServer []netip.Addr) networkingv1.NetworkPolicyEgressRule {
	except := slices.Clone(blocked)
	for _, addr := range apiServer {
		if !slices.ContainsFunc(blocked, func(p netip.Prefix) bool { return p.Contains(addr) }) {
			except = append(except, netip.PrefixFrom(addr, addr.BitLen()))
		}
	}
	var peers []networkingv1.NetworkPolicyPeer
	for _, all := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		block := &networkingv1.IPBlock{CIDR: all.String()}
		for _, p := range except {
			if p.Addr().Is4() == all.Addr().Is4() {
				block.Except = append(block.Except, p.String())
			}
		}
		peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: block})
	}
	return networkingv1.NetworkPolicyEgressRule{To: peers}
}

// serviceRule lets sandboxes reach a Service's Pods on its target ports,
// or says why it cannot.
func serviceRule(ref agentsv1alpha1.ServiceReference, svc *corev1.Service) (networkingv1.NetworkPolicyEgressRule, string) {
	switch {
	case svc == nil:
		return networkingv1.NetworkPolicyEgressRule{}, fmt.Sprintf("Service %s/%s does not exist", ref.Namespace, ref.Name)
	case len(svc.Spec.Selector) == 0:
		return networkingv1.NetworkPolicyEgressRule{}, fmt.Sprintf("Service %s/%s has no selector, so no Pods to name", ref.Namespace, ref.Name)
	}
	rule := networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ref.Namespace}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: maps.Clone(svc.Spec.Selector)},
	}}}
	for _, port := range svc.Spec.Ports {
		// A NetworkPolicy judges the Pod's port, after the Service's
		// address translation: the target port, which defaults to the port.
		target := port.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 || target.Type == intstr.String && target.StrVal == "" {
			target = intstr.FromInt32(port.Port)
		}
		protocol := port.Protocol
		if protocol == "" {
			protocol = corev1.ProtocolTCP
		}
		rule.Ports = append(rule.Ports, networkingv1.NetworkPolicyPort{Protocol: ptr.To(protocol), Port: ptr.To(target)})
	}
	return rule, ""
}

func deepCopyIngress(rules []networkingv1.NetworkPolicyIngressRule) []networkingv1.NetworkPolicyIngressRule {
	if len(rules) == 0 {
		return nil
	}
	out := make([]networkingv1.NetworkPolicyIngressRule, 0, len(rules))
	for i := range rules {
		rule := rules[i].DeepCopy()
		defaultProtocols(rule.Ports)
		out = append(out, *rule)
	}
	return out
}

func deepCopyEgress(rules []networkingv1.NetworkPolicyEgressRule) []networkingv1.NetworkPolicyEgressRule {
	if len(rules) == 0 {
		return nil
	}
	out := make([]networkingv1.NetworkPolicyEgressRule, 0, len(rules))
	for i := range rules {
		rule := rules[i].DeepCopy()
		defaultProtocols(rule.Ports)
		out = append(out, *rule)
	}
	return out
}

// defaultProtocols sets TCP where a port names no protocol, as the API
// server does when it stores the policy: the policy is then written once,
// not again on every pass for a difference that is only a default.
func defaultProtocols(ports []networkingv1.NetworkPolicyPort) {
	for i := range ports {
		if ports[i].Protocol == nil {
			ports[i].Protocol = ptr.To(corev1.ProtocolTCP)
		}
	}
}

// ParseCIDRs parses the prefixes a flag lists.
func ParseCIDRs(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8: %w", s, err)
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%q is an IPv4-mapped IPv6 range, which a NetworkPolicy may not name; give the IPv4 range", s)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
		}
		out = append(out, p)
	}
	return out, nil
}
