package controllers

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mattfenwick/cyclonus/pkg/matcher"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

func testPoolFor(ns, name string, network agentsv1alpha1.SandboxNetwork) *agentsv1alpha1.SandboxSet {
	sbs := newSandboxSet(ns, name, 3)
	sbs.UID = types.UID(name + "-uid")
	sbs.Spec.Network = network
	return sbs
}

func mustPrefixes(t *testing.T, cidrs []string) []netip.Prefix {
	t.Helper()
	prefixes, err := ParseCIDRs(cidrs)
	if err != nil {
		t.Fatal(err)
	}
	return prefixes
}

func TestBuildNetworkPolicy(t *testing.T) {
	blocked := mustPrefixes(t, []string{"10.0.0.0/8", "169.254.0.0/16", "fc00::/7"})
	dns := networkingv1.NetworkPolicyEgressRule{
		To: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
		}},
		Ports: []networkingv1.NetworkPolicyPort{
			{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(53))},
			{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(53))},
		},
	}
	internet := func(extraV4 ...string) networkingv1.NetworkPolicyEgressRule {
		return networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{
			{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: append([]string{"10.0.0.0/8", "169.254.0.0/16"}, extraV4...)}},
			{IPBlock: &networkingv1.IPBlock{CIDR: "::/0", Except: []string{"fc00::/7"}}},
		}}
	}
	gateway := networkingv1.NetworkPolicyIngressRule{
		From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "gateway"}}}},
		Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(8080))}},
	}
	database := networkingv1.NetworkPolicyEgressRule{
		To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.9.0.0/16"}}},
		Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(5432))}},
	}
	// As the API server stores them: a port with no protocol is TCP.
	gatewayStored, databaseStored := *gateway.DeepCopy(), *database.DeepCopy()
	gatewayStored.Ports[0].Protocol = ptr.To(corev1.ProtocolTCP)
	databaseStored.Ports[0].Protocol = ptr.To(corev1.ProtocolTCP)
	dbService := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "data", Name: "db"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{
			{Port: 5432, TargetPort: intstr.FromString("postgres"), Protocol: corev1.ProtocolTCP},
			{Port: 9187},
		}},
	}
	dbRef := agentsv1alpha1.ServiceReference{Namespace: "data", Name: "db"}
	toDB := networkingv1.NetworkPolicyEgressRule{
		To: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "data"}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
		}},
		Ports: []networkingv1.NetworkPolicyPort{
			{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromString("postgres"))},
			{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(9187))},
		},
	}

	tests := []struct {
		name           string
		network        agentsv1alpha1.SandboxNetwork
		in             networkInputs
		wantIngress    []networkingv1.NetworkPolicyIngressRule
		wantEgress     []networkingv1.NetworkPolicyEgressRule
		wantUnresolved []string
	}{{
		name:       "the default: no ingress; DNS and the internet",
		in:         networkInputs{blocked: blocked},
		wantEgress: []networkingv1.NetworkPolicyEgressRule{dns, internet()},
	}, {
		name:       "a public API server address is left out of the internet; a private one is already",
		in:         networkInputs{blocked: blocked, apiServer: []netip.Addr{netip.MustParseAddr("203.0.113.10"), netip.MustParseAddr("10.0.0.1")}},
		wantEgress: []networkingv1.NetworkPolicyEgressRule{dns, internet("203.0.113.10/32")},
	}, {
		name:       "no internet: DNS only",
		network:    agentsv1alpha1.SandboxNetwork{Internet: ptr.To(false)},
		in:         networkInputs{blocked: blocked},
		wantEgress: []networkingv1.NetworkPolicyEgressRule{dns},
	}, {
		name: "what the spec opens comes after the defaults, named Services first, with protocols defaulted",
		network: agentsv1alpha1.SandboxNetwork{
			Ingress:          []networkingv1.NetworkPolicyIngressRule{gateway},
			Egress:           []networkingv1.NetworkPolicyEgressRule{database},
			EgressToServices: []agentsv1alpha1.ServiceReference{dbRef},
		},
		in:          networkInputs{blocked: blocked, services: map[agentsv1alpha1.ServiceReference]*corev1.Service{dbRef: dbService}},
		wantIngress: []networkingv1.NetworkPolicyIngressRule{gatewayStored},
		wantEgress:  []networkingv1.NetworkPolicyEgressRule{dns, internet(), toDB, databaseStored},
	}, {
		name: "a Service that does not exist, or has no selector, opens nothing and is reported",
		network: agentsv1alpha1.SandboxNetwork{EgressToServices: []agentsv1alpha1.ServiceReference{
			{Namespace: "data", Name: "gone"}, {Namespace: "data", Name: "external"},
		}},
		in: networkInputs{blocked: blocked, services: map[agentsv1alpha1.ServiceReference]*corev1.Service{
			{Namespace: "data", Name: "external"}: {Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}},
		}},
		wantEgress:     []networkingv1.NetworkPolicyEgressRule{dns, internet()},
		wantUnresolved: []string{"Service data/gone does not exist", "Service data/external has no selector, so no Pods to name"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sbs := testPoolFor("team-a", "demo", tt.network)
			got, unresolved := buildNetworkPolicy(sbs, tt.in)
			want := &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: "team-a", Name: "demo-sandboxes",
					Labels: map[string]string{agentsv1alpha1.LabelSandboxSet: "demo"},
					OwnerReferences: []metav1.OwnerReference{{
						APIVersion: "agents.kruise.io/v1alpha1", Kind: "SandboxSet", Name: "demo", UID: "demo-uid",
						Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
					}},
				},
				Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{agentsv1alpha1.LabelSandboxSet: "demo"}},
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
					Ingress:     tt.wantIngress,
					Egress:      tt.wantEgress,
				},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("NetworkPolicy (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantUnresolved, unresolved); diff != "" {
				t.Errorf("unresolved (-want +got):\n%s", diff)
			}
		})
	}
}

// The generated policies' meaning, judged by an independent matcher
// (cyclonus, which evaluates NetworkPolicies as the API defines them) over
// a small cluster: two pools in team-a, one in team-b, a gateway and an
// ordinary Pod beside them, cluster DNS, a database Service's Pod, the API
// server (at a private and at a public address), the cloud metadata
// endpoint and the internet. No local cluster here enforces NetworkPolicy,
// so this is where their semantics are proven.
func TestNetworkPolicyTruthTable(t *testing.T) {
	inNamespace := func(ns string, ip string, labels map[string]string) *matcher.TrafficPeer {
		return &matcher.TrafficPeer{IP: ip, Internal: &matcher.InternalPeer{
			Namespace: ns, NamespaceLabels: map[string]string{corev1.LabelMetadataName: ns}, PodLabels: labels,
		}}
	}
	external := func(ip string) *matcher.TrafficPeer { return &matcher.TrafficPeer{IP: ip} }
	poolLabels := func(pool, state string) map[string]string {
		return map[string]string{agentsv1alpha1.LabelSandboxSet: pool, agentsv1alpha1.LabelState: state, "app": "sandbox"}
	}
	var (
		warm        = inNamespace("team-a", "10.244.1.10", poolLabels("demo", "available"))
		claimed     = inNamespace("team-a", "10.244.1.11", map[string]string{agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelState: "claimed", agentsv1alpha1.LabelClaimedBy: "agent-1"})
		otherPool   = inNamespace("team-a", "10.244.2.10", poolLabels("other", "available"))
		otherNS     = inNamespace("team-b", "10.244.5.10", poolLabels("demo", "available"))
		gateway     = inNamespace("team-a", "10.244.3.10", map[string]string{"app": "gateway"})
		ordinary    = inNamespace("team-a", "10.244.3.11", map[string]string{"app": "web"})
		dns         = inNamespace("kube-system", "10.96.0.10", map[string]string{"k8s-app": "kube-dns"})
		db          = inNamespace("data", "10.244.4.10", map[string]string{"app": "db"})
		apiPrivate  = external("172.18.0.2")
		apiPublic   = external("203.0.113.10")
		metadata    = external("169.254.169.254")
		metadataV6  = external("fd00:ec2::254")
		node        = external("192.168.1.20")
		internet    = external("93.184.216.34")
		internetV6  = external("2606:4700::1111")
		partnerCIDR = external("10.9.1.1")
	)
	in := networkInputs{
		blocked:   mustPrefixes(t, DefaultBlockedCIDRs),
		apiServer: []netip.Addr{netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("203.0.113.10")},
		services: map[agentsv1alpha1.ServiceReference]*corev1.Service{{Namespace: "data", Name: "db"}: {
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{{Port: 5432}}},
		}},
	}
	opened := agentsv1alpha1.SandboxNetwork{
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "gateway"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(8080))}},
		}},
		EgressToServices: []agentsv1alpha1.ServiceReference{{Namespace: "data", Name: "db"}},
		Egress: []networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.9.0.0/16"}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(443))}},
		}},
	}

	type probe struct {
		name     string
		from, to *matcher.TrafficPeer
		port     int
		protocol corev1.Protocol
		allowed  bool
	}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	tests := []struct {
		name    string
		network agentsv1alpha1.SandboxNetwork
		probes  []probe
	}{{
		name: "the default",
		probes: []probe{
			{"sandbox to sandbox, same pool", warm, claimed, 8080, tcp, false},
			{"held sandbox to warm sandbox, same pool", claimed, warm, 8080, tcp, false},
			{"sandbox to sandbox, other pool", warm, otherPool, 8080, tcp, false},
			{"sandbox of the other pool to this one", otherPool, warm, 8080, tcp, false},
			{"sandbox to a pool of the same name in another namespace", warm, otherNS, 8080, tcp, false},
			{"sandbox to the API server, private address", warm, apiPrivate, 6443, tcp, false},
			{"sandbox to the API server, public address", warm, apiPublic, 443, tcp, false},
			{"sandbox to the metadata endpoint", warm, metadata, 80, tcp, false},
			{"sandbox to the IPv6 metadata endpoint", claimed, metadataV6, 80, tcp, false},
			{"sandbox to a node", warm, node, 10250, tcp, false},
			{"sandbox to DNS, UDP", warm, dns, 53, udp, true},
			{"sandbox to DNS, TCP", claimed, dns, 53, tcp, true},
			{"sandbox to the DNS Pod on another port", warm, dns, 8080, tcp, false},
			{"sandbox to the internet", warm, internet, 443, tcp, true},
			{"sandbox to the IPv6 internet", claimed, internetV6, 443, tcp, true},
			{"sandbox to an ordinary Pod", warm, ordinary, 80, tcp, false},
			{"sandbox to the database Service's Pod", warm, db, 5432, tcp, false},
			{"gateway to sandbox", gateway, warm, 8080, tcp, false},
			{"other Pod to sandbox", ordinary, claimed, 8080, tcp, false},
			{"the internet to sandbox", internet, warm, 8080, tcp, false},
			{"ordinary Pods are left alone", gateway, ordinary, 80, tcp, true},
		},
	}, {
		name:    "opened: a gateway in, a Service and a CIDR out",
		network: opened,
		probes: []probe{
			{"gateway to sandbox on its port", gateway, warm, 8080, tcp, true},
			{"gateway to held sandbox on its port", gateway, claimed, 8080, tcp, true},
			{"gateway to sandbox on another port", gateway, warm, 22, tcp, false},
			{"other Pod to sandbox", ordinary, warm, 8080, tcp, false},
			{"sandbox to sandbox, same pool, still", warm, claimed, 8080, tcp, false},
			{"sandbox to the database Service's Pod", warm, db, 5432, tcp, true},
			{"sandbox to the database Pod on another port", warm, db, 22, tcp, false},
			{"sandbox to the named CIDR", warm, partnerCIDR, 443, tcp, true},
			{"sandbox to the named CIDR on another port", warm, partnerCIDR, 22, tcp, false},
			{"sandbox to the metadata endpoint, still", warm, metadata, 80, tcp, false},
			{"sandbox to the API server, still", warm, apiPublic, 443, tcp, false},
		},
	}, {
		name:    "no internet",
		network: agentsv1alpha1.SandboxNetwork{Internet: ptr.To(false)},
		probes: []probe{
			{"sandbox to the internet", warm, internet, 443, tcp, false},
			{"sandbox to the IPv6 internet", warm, internetV6, 443, tcp, false},
			{"sandbox to DNS", warm, dns, 53, udp, true},
		},
	}, {
		name:    "turned off: nothing the operator makes limits the pool",
		network: agentsv1alpha1.SandboxNetwork{Policy: agentsv1alpha1.NetworkPolicyNone},
		probes: []probe{
			{"sandbox to sandbox, same pool", warm, claimed, 8080, tcp, true},
			{"sandbox to the metadata endpoint", warm, metadata, 80, tcp, true},
			{"other Pod to sandbox", ordinary, warm, 8080, tcp, true},
			// The other pool keeps its default policy.
			{"sandbox to the other pool", warm, otherPool, 8080, tcp, false},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var policies []*networkingv1.NetworkPolicy
			for _, sbs := range []*agentsv1alpha1.SandboxSet{
				testPoolFor("team-a", "demo", tt.network),
				testPoolFor("team-a", "other", agentsv1alpha1.SandboxNetwork{}),
				testPoolFor("team-b", "demo", agentsv1alpha1.SandboxNetwork{}),
			} {
				if !sbs.Spec.Network.NetworkPolicyEnabled() {
					continue
				}
				np, unresolved := buildNetworkPolicy(sbs, in)
				if len(unresolved) > 0 {
					t.Fatalf("unresolved: %v", unresolved)
				}
				policies = append(policies, np)
			}
			judge := matcher.BuildNetworkPolicies(true, policies)
			for _, p := range tt.probes {
				result := judge.IsTrafficAllowed(&matcher.Traffic{Source: p.from, Destination: p.to, ResolvedPort: p.port, Protocol: p.protocol})
				if got := result.IsAllowed(); got != p.allowed {
					t.Errorf("%s (%s -> %s:%d/%s): allowed = %v, want %v\n%s", p.name, p.from.IP, p.to.IP, p.port, p.protocol, got, p.allowed, result.Table())
				}
			}
		})
	}
}
