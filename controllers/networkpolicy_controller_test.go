package controllers

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// The pool's NetworkPolicy through the real API server: the API server
// accepts what buildNetworkPolicy makes, and the policy follows the
// SandboxSet, the Services it names, and its own deletion. envtest has no
// garbage collector: the owner reference is what deletes the policy with
// the pool (test/e2e checks the deletion itself).
var _ = Describe("The pool's NetworkPolicy", func() {
	var (
		ns  string
		sbs *agentsv1alpha1.SandboxSet
	)
	policyKey := func() types.NamespacedName {
		return types.NamespacedName{Namespace: ns, Name: sbs.Name + "-sandboxes"}
	}
	stored := func(ctx context.Context, g Gomega) *networkingv1.NetworkPolicy {
		np := &networkingv1.NetworkPolicy{}
		g.Expect(k8sClient.Get(ctx, policyKey(), np)).To(Succeed())
		return np
	}
	// expectPolicy waits until the stored policy is what the SandboxSet, as
	// stored, and the cluster as it is now ask for.
	expectPolicy := func(ctx context.Context) *networkingv1.NetworkPolicy {
		GinkgoHelper()
		var np *networkingv1.NetworkPolicy
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
			want, _ := buildNetworkPolicy(sbs, liveInputs(ctx, g, sbs))
			np = stored(ctx, g)
			g.Expect(np.Spec).To(Equal(want.Spec))
			g.Expect(np.Labels).To(Equal(want.Labels))
			g.Expect(metav1.IsControlledBy(np, sbs)).To(BeTrue(), "owned by the SandboxSet, so deleted with it")
		}, timeout, interval).Should(Succeed())
		return np
	}
	update := func(ctx context.Context, change func(*agentsv1alpha1.SandboxSet)) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
			change(sbs)
			g.Expect(k8sClient.Update(ctx, sbs)).To(Succeed())
		}, timeout, interval).Should(Succeed())
	}

	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		sbs = newSandboxSet(ns, "isolated", 1)
	})

	It("isolates a new pool by default: no ingress; DNS and the internet out, less the blocked ranges", func(ctx SpecContext) {
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		np := expectPolicy(ctx)
		Expect(np.Spec.PodSelector.MatchLabels).To(Equal(map[string]string{agentsv1alpha1.LabelSandboxSet: "isolated"}))
		Expect(np.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
		Expect(np.Spec.Ingress).To(BeEmpty())
		Expect(np.Spec.Egress).To(HaveLen(2))
		Expect(np.Spec.Egress[1].To[0].IPBlock.Except).To(ContainElements("10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8"))
		Expect(sbs.Spec.Network.Policy).To(Equal(agentsv1alpha1.NetworkPolicyManaged), "the schema defaults it, so kubectl get shows it")
		Expect(sbs.Spec.Network.Internet).To(Equal(ptr.To(true)))
		Consistently(func(g Gomega) {
			g.Expect(stored(ctx, g).ResourceVersion).To(Equal(np.ResourceVersion))
		}, holdFor, interval).Should(Succeed(), "written once, not again on every pass")
		expectEvent(ctx, sbs, "NetworkPolicyCreated",
			"Created NetworkPolicy isolated-sandboxes: sandboxes admit no traffic and reach cluster DNS, the internet (not private, link-local or metadata addresses, nor the API server)")
	})

	It("follows the spec, puts itself back when deleted, and goes when turned off", func(ctx SpecContext) {
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPolicy(ctx)

		By("opening ingress from a gateway and closing the internet")
		update(ctx, func(sbs *agentsv1alpha1.SandboxSet) {
			sbs.Spec.Network.Ingress = []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "gateway"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(8080))}},
			}}
			sbs.Spec.Network.Internet = ptr.To(false)
		})
		np := expectPolicy(ctx)
		Expect(np.Spec.Ingress).To(HaveLen(1))
		Expect(np.Spec.Egress).To(HaveLen(1), "DNS only")
		Consistently(func(g Gomega) {
			g.Expect(stored(ctx, g).ResourceVersion).To(Equal(np.ResourceVersion))
		}, holdFor, interval).Should(Succeed(), "a port without a protocol is not rewritten on every pass")

		By("putting back a policy someone deleted")
		Expect(k8sClient.Delete(ctx, np)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(stored(ctx, g).UID).NotTo(Equal(np.UID))
		}, timeout, interval).Should(Succeed())
		expectPolicy(ctx)

		By("putting back a policy someone widened")
		Eventually(func(g Gomega) {
			np := stored(ctx, g)
			np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
			g.Expect(k8sClient.Update(ctx, np)).To(Succeed())
		}, timeout, interval).Should(Succeed())
		expectPolicy(ctx)

		By("turning it off")
		update(ctx, func(sbs *agentsv1alpha1.SandboxSet) { sbs.Spec.Network.Policy = agentsv1alpha1.NetworkPolicyNone })
		Eventually(func(g Gomega) {
			g.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, policyKey(), &networkingv1.NetworkPolicy{}))).To(BeTrue())
		}, timeout, interval).Should(Succeed())
		expectEvent(ctx, sbs, "NetworkPolicyDeleted",
			"Deleted NetworkPolicy isolated-sandboxes: spec.network.policy is None, so nothing the operator makes limits the sandboxes' network")

		By("turning it on again")
		update(ctx, func(sbs *agentsv1alpha1.SandboxSet) { sbs.Spec.Network.Policy = agentsv1alpha1.NetworkPolicyManaged })
		expectPolicy(ctx)
	})

	It("follows a named Service: absent, created, and its selector changed", func(ctx SpecContext) {
		sbs.Spec.Network.EgressToServices = []agentsv1alpha1.ServiceReference{{Namespace: ns, Name: "db"}}
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		np := expectPolicy(ctx)
		Expect(np.Spec.Egress).To(HaveLen(2), "DNS and the internet: the Service does not exist yet")
		expectEvent(ctx, sbs, "EgressServiceUnresolved",
			"Sandboxes cannot reach what these name until they can be followed: Service "+ns+"/db does not exist")

		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{
				{Port: 5432, TargetPort: intstr.FromString("postgres")},
			}},
		}
		Expect(k8sClient.Create(ctx, svc)).To(Succeed())
		np = expectPolicy(ctx)
		Expect(np.Spec.Egress).To(HaveLen(3))
		Expect(np.Spec.Egress[2].To[0].PodSelector.MatchLabels).To(Equal(map[string]string{"app": "db"}))
		Expect(np.Spec.Egress[2].Ports[0].Port).To(Equal(ptr.To(intstr.FromString("postgres"))))

		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(svc), svc)).To(Succeed())
			svc.Spec.Selector = map[string]string{"app": "db", "tier": "primary"}
			g.Expect(k8sClient.Update(ctx, svc)).To(Succeed())
		}, timeout, interval).Should(Succeed())
		np = expectPolicy(ctx)
		Expect(np.Spec.Egress[2].To[0].PodSelector.MatchLabels).To(HaveKeyWithValue("tier", "primary"))
	})

	It("leaves a NetworkPolicy of the same name that is not the pool's alone, and says so", func(ctx SpecContext) {
		theirs := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "isolated-sandboxes", Labels: map[string]string{agentsv1alpha1.LabelSandboxSet: "isolated"}},
			Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "theirs"}}},
		}
		Expect(k8sClient.Create(ctx, theirs)).To(Succeed())
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectEvent(ctx, sbs, "NetworkPolicyConflict",
			"NetworkPolicy isolated-sandboxes exists and is not this SandboxSet's; the pool's sandboxes are not isolated until it is deleted or renamed")
		Consistently(func(g Gomega) {
			g.Expect(stored(ctx, g).ResourceVersion).To(Equal(theirs.ResourceVersion))
		}, holdFor, interval).Should(Succeed())
	})

	// The manager's cache holds only labelled NetworkPolicies, so an
	// unlabelled one made first under the pool's policy name (edit may) is
	// seen only by the API server's AlreadyExists.
	It("says so when an unlabelled NetworkPolicy took the name first, without a retry loop, and isolates the pool once it is gone", func(ctx SpecContext) {
		theirs := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "isolated-sandboxes"},
			Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "theirs"}}},
		}
		Expect(k8sClient.Create(ctx, theirs)).To(Succeed())
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectEvent(ctx, sbs, "NetworkPolicyConflict",
			"NetworkPolicy isolated-sandboxes exists and is not this SandboxSet's; the pool's sandboxes are not isolated until it is deleted or renamed")

		By("reporting it, not retrying it as an error with backoff")
		reconcileErrors := func() float64 {
			return counterValue("controller_runtime_reconcile_errors_total", map[string]string{"controller": "networkpolicy"})
		}
		before := reconcileErrors()
		Consistently(func(g Gomega) {
			g.Expect(reconcileErrors()).To(Equal(before), "reconcile errors")
			g.Expect(stored(ctx, g).ResourceVersion).To(Equal(theirs.ResourceVersion), "theirs is left alone")
		}, holdFor, interval).Should(Succeed())

		By("making the pool's own once an admin deletes theirs, though no watch sees it go")
		Expect(k8sClient.Delete(ctx, theirs)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(metav1.IsControlledBy(stored(ctx, g), sbs)).To(BeTrue())
		}, conflictRecheck+timeout, interval).Should(Succeed())
		expectPolicy(ctx)
	})
})

// liveInputs reads what the policy depends on from the API server, as the
// controller reads it from its cache.
func liveInputs(ctx context.Context, g Gomega, sbs *agentsv1alpha1.SandboxSet) networkInputs {
	blocked, err := ParseCIDRs(DefaultBlockedCIDRs)
	g.Expect(err).NotTo(HaveOccurred())
	r := &NetworkPolicyReconciler{Client: k8sClient, BlockedCIDRs: blocked}
	in, err := r.inputs(ctx, sbs)
	g.Expect(err).NotTo(HaveOccurred())
	slices := &discoveryv1.EndpointSliceList{}
	g.Expect(k8sClient.List(ctx, slices, client.InNamespace("default"), apiServerSliceLabels)).To(Succeed())
	g.Expect(slices.Items).NotTo(BeEmpty(), "the API server publishes its own addresses")
	return in
}
