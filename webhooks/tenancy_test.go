package webhooks

import (
	"context"
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// The tenancy rules through the real admission chain: the pool-pods and
// pool-label policies (config/policies) and the webhooks. Agent a holds one
// sandbox of a pool of two; agent b holds none. Both hold the example agent
// Role, and b also a broader one (subresources, evictions, create), as a
// careless platform might grant; then, again, the built-in edit ClusterRole
// and every Pod subresource, so that RBAC refuses none of the attacks.
var _ = Describe("Tenancy", func() {
	for _, wide := range []bool{false, true} {
		Context(map[bool]string{false: "with the agent Role and a broader one", true: "with edit and every Pod subresource"}[wide], func() {
			tenancySpecs(wide)
		})
	}
})

func tenancySpecs(wide bool) {
	const (
		userA, userB = "agent-a", "agent-b"
		idA          = "agent-1"
	)
	var (
		ns                string
		a, b              client.Client
		warm, held, plain *corev1.Pod
	)

	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		a, b = agentClient(ctx, ns, userA), agentClient(ctx, ns, userB)
		Expect(adminClient.Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broad-agent"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods/status", "pods/ephemeralcontainers", "pods/resize"}, Verbs: []string{"patch", "update"}},
				{APIGroups: []string{""}, Resources: []string{"pods", "pods/eviction"}, Verbs: []string{"create"}},
			},
		})).To(Succeed())
		Expect(env.BindRole(ctx, ns, "broad-agent", userB)).To(Succeed())
		if wide {
			Expect(env.BindWideAgentRoles(ctx, ns, userA)).To(Succeed())
			Expect(env.BindWideAgentRoles(ctx, ns, userB)).To(Succeed())
		}

		pool := warmPool(ctx, ns, 2)
		warm, held = &pool[0], &pool[1]
		var err error
		held, err = claimAs(ctx, a, held, idA)
		Expect(err).NotTo(HaveOccurred())
		Expect(held.Annotations).To(HaveKeyWithValue(agentsv1alpha1.AnnotationClaimedByUser, userA), "the claim records who made it")

		plain = &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		Expect(adminClient.Create(ctx, plain)).To(Succeed())
	})

	// expectRefused checks that err is a refusal carrying want, and that
	// the Pod is as it was.
	expectRefused := func(ctx context.Context, err error, pod *corev1.Pod, want string) {
		GinkgoHelper()
		Expect(err).To(HaveOccurred())
		Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsConflict(err)).To(BeTrue(), "a refusal, got %v", err)
		Expect(err.Error()).To(ContainSubstring(want))
		stored := &corev1.Pod{}
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(pod), stored)).To(Succeed())
		Expect(stored.DeletionTimestamp).To(BeNil())
		Expect(stored.ResourceVersion).To(Equal(pod.ResourceVersion), "nothing was written")
	}
	// patch sends a strategic merge patch to the Pod, or to its subresource.
	patch := func(ctx context.Context, c client.Client, pod *corev1.Pod, body string, subresource ...string) error {
		p := client.RawPatch(types.StrategicMergePatchType, []byte(body))
		if len(subresource) > 0 {
			return c.SubResource(subresource[0]).Patch(ctx, pod.DeepCopy(), p)
		}
		return c.Patch(ctx, pod.DeepCopy(), p)
	}
	bigValue := strings.Repeat("x", 150*1024)

	DescribeTable("refuses every write that tampers with a sandbox, naming the rule",
		func(ctx SpecContext, write func(ctx context.Context) (*corev1.Pod, error), want string) {
			pod, err := write(ctx)
			expectRefused(ctx, err, pod, strings.ReplaceAll(want, "{pod}", pod.Name))
		},
		Entry("1: another image for a warm sandbox", func(ctx context.Context) (*corev1.Pod, error) {
			return warm, patch(ctx, b, warm, `{"spec":{"containers":[{"name":"sandbox","image":"evil.example/backdoor:1"}]}}`)
		}, "rule frozen-spec"),
		Entry("2: another image for a sandbox another agent holds", func(ctx context.Context) (*corev1.Pod, error) {
			return held, patch(ctx, b, held, `{"spec":{"containers":[{"name":"sandbox","image":"evil.example/backdoor:1"}]}}`)
		}, "rule holder-only: sandbox "),
		Entry("2b: another image for a sandbox, by its own holder", func(ctx context.Context) (*corev1.Pod, error) {
			return held, patch(ctx, a, held, `{"spec":{"containers":[{"name":"sandbox","image":"evil.example/backdoor:1"}]}}`)
		}, "rule frozen-spec"),
		Entry("3: a deadline that kills a warm sandbox", func(ctx context.Context) (*corev1.Pod, error) {
			return warm, patch(ctx, b, warm, `{"spec":{"activeDeadlineSeconds":1}}`)
		}, "rule frozen-spec"),
		Entry("4: owner references pointing elsewhere", func(ctx context.Context) (*corev1.Pod, error) {
			body := fmt.Sprintf(`[{"op":"replace","path":"/metadata/ownerReferences","value":[{"apiVersion":"v1","kind":"Pod","name":%q,"uid":%q}]}]`, warm.Name, warm.UID)
			return warm, b.Patch(ctx, warm.DeepCopy(), client.RawPatch(types.JSONPatchType, []byte(body)))
		}, "rule frozen-owners"),
		Entry("5: a finalizer on a warm sandbox", func(ctx context.Context) (*corev1.Pod, error) {
			return warm, patch(ctx, b, warm, `{"metadata":{"finalizers":["example.com/never"]}}`)
		}, "rule frozen-finalizers"),
		Entry("6: other persistent contents", func(ctx context.Context) (*corev1.Pod, error) {
			return warm, patch(ctx, b, warm, fmt.Sprintf(`{"metadata":{"annotations":{%q:"filesystem"}}}`, agentsv1alpha1.AnnotationPersistentContents))
		}, "rule operator-keys"),
		Entry("7: a 150 KB annotation on a warm sandbox", func(ctx context.Context) (*corev1.Pod, error) {
			return warm, patch(ctx, b, warm, fmt.Sprintf(`{"metadata":{"annotations":{"flood":%q}}}`, bigValue))
		}, "rule warm-metadata"),
		Entry("8: deleting a warm sandbox", func(ctx context.Context) (*corev1.Pod, error) {
			return warm, b.Delete(ctx, warm.DeepCopy())
		}, "rule warm-delete: {pod} is a warm sandbox of SandboxSet demo; only the SandboxSet controller deletes warm sandboxes"),
		Entry("9: deleting a sandbox another agent holds", func(ctx context.Context) (*corev1.Pod, error) {
			return held, b.Delete(ctx, held.DeepCopy())
		}, fmt.Sprintf("rule holder-only: sandbox {pod} is claimed by %s (%s); only that identity may change or delete it, not %s", idA, userA, userB)),
		Entry("9b: relabelling a sandbox another agent holds", func(ctx context.Context) (*corev1.Pod, error) {
			return held, patch(ctx, b, held, `{"metadata":{"labels":{"task":"mine"}}}`)
		}, "rule holder-only"),
		Entry("10: a repeat claim under the holder's id, by another identity", func(ctx context.Context) (*corev1.Pod, error) {
			_, err := claimAs(ctx, b, held, idA)
			return held, err
		}, fmt.Sprintf("is claimed by %s (%s)", idA, userA)),
		Entry("11: an empty pool label on an ordinary Pod", func(ctx context.Context) (*corev1.Pod, error) {
			return plain, patch(ctx, b, plain, fmt.Sprintf(`{"metadata":{"labels":{%q:""}}}`, agentsv1alpha1.LabelSandboxSet))
		}, "rule pool-label"),
		Entry("12: a cold claim with a privileged container of another image", func(ctx context.Context) (*corev1.Pod, error) {
			sbs := &agentsv1alpha1.SandboxSet{}
			Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "demo"}, sbs)).To(Succeed())
			forged := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo-cold1", Labels: map[string]string{
					agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelRevision: sbs.Spec.Revision(), agentsv1alpha1.LabelClaimedBy: "agent-2",
				}},
				Spec: *sbs.Spec.Template.Spec.DeepCopy(),
			}
			forged.Spec.Containers[0].Image = "evil.example/backdoor:1"
			forged.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
			err := b.Create(ctx, forged)
			Expect(apierrors.IsNotFound(adminClient.Get(ctx, client.ObjectKeyFromObject(forged), &corev1.Pod{}))).To(BeTrue(), "no Pod was created")
			return warm, err
		}, `spec.containers[0].image: Invalid value: "evil.example/backdoor:1": rule cold-claim-template: a sandbox created from SandboxSet demo must be its template at revision`),
		Entry("a forged status", func(ctx context.Context) (*corev1.Pod, error) {
			return warm, patch(ctx, b, warm, `{"status":{"phase":"Failed"}}`, "status")
		}, "rule frozen-status"),
		Entry("an ephemeral container in a warm sandbox", func(ctx context.Context) (*corev1.Pod, error) {
			return warm, patch(ctx, b, warm, `{"spec":{"ephemeralContainers":[{"name":"debug","image":"busybox"}]}}`, "ephemeralcontainers")
		}, "rule frozen-spec"),
		Entry("resizing a warm sandbox", func(ctx context.Context) (*corev1.Pod, error) {
			return warm, patch(ctx, b, warm, `{"spec":{"containers":[{"name":"sandbox","resources":{"requests":{"cpu":"20m"}}}]}}`, "resize")
		}, "rule frozen-spec"),
		Entry("evicting a warm sandbox", func(ctx context.Context) (*corev1.Pod, error) {
			return warm, b.SubResource("eviction").Create(ctx, warm.DeepCopy(), &policyv1.Eviction{})
		}, "rule warm-delete: "),
		Entry("evicting a sandbox another agent holds", func(ctx context.Context) (*corev1.Pod, error) {
			return held, b.SubResource("eviction").Create(ctx, held.DeepCopy(), &policyv1.Eviction{})
		}, "rule holder-only"),
		Entry("an operator annotation forged in a claim", func(ctx context.Context) (*corev1.Pod, error) {
			return warm, patch(ctx, b, warm, fmt.Sprintf(`{"metadata":{"labels":{%q:"agent-2"},"annotations":{%q:"someone-else"}}}`,
				agentsv1alpha1.LabelClaimedBy, agentsv1alpha1.AnnotationClaimedByUser))
		}, "rule claim-keys"),
	)

	if wide {
		// The agent Role grants no write to NetworkPolicies or Leases, so only
		// agents holding edit get as far as the policy.
		It("refuses writes to the pool's NetworkPolicy and claim ledgers, naming the rule", func(ctx SpecContext) {
			By("giving the pool a limit, so that a's next claim opens its ledger")
			sbs := &agentsv1alpha1.SandboxSet{}
			Eventually(func(g Gomega) {
				g.Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "demo"}, sbs)).To(Succeed())
				sbs.Spec.MaxHeldPerIdentity = ptr.To[int32](5)
				g.Expect(adminClient.Update(ctx, sbs)).To(Succeed())
			}, timeout, interval).Should(Succeed())
			// The webhook reads the pool from the manager's cache, which the
			// controller reads too: once it reports the new generation, a
			// claim sees the limit and opens the ledger.
			Eventually(func(g Gomega) {
				g.Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
				g.Expect(sbs.Status.ObservedGeneration).To(Equal(sbs.Generation))
			}, timeout, interval).Should(Succeed())
			Eventually(func() error { _, err := claimAs(ctx, a, warm, "agent-1b"); return err }, timeout, interval).Should(Succeed())
			ledger := &coordinationv1.Lease{}
			Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: ledgerName("demo", userA)}, ledger)).To(Succeed())
			np := &networkingv1.NetworkPolicy{}
			Eventually(func() error {
				return adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "demo-sandboxes"}, np)
			}, timeout, interval).Should(Succeed())

			npRule := "rule pool-objects: NetworkPolicy demo-sandboxes belongs to SandboxSet demo; only the SandboxSet operator writes it: open what the pool needs in its spec.network"
			ledgerRule := "rule pool-objects: claim ledger " + ledger.Name + " belongs to SandboxSet demo; only the SandboxSet operator writes it"
			open := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"ingress":[{}]}}`))
			unlabel := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"agents.kruise.io/sandboxset":null}}}`))
			Eventually(func() error { return b.Patch(ctx, np.DeepCopy(), open) }, timeout, interval).Should(MatchError(ContainSubstring(npRule)))
			for _, attempt := range []struct {
				name string
				err  error
				want string
			}{
				{"unlabelling the NetworkPolicy", b.Patch(ctx, np.DeepCopy(), unlabel), npRule},
				{"deleting the NetworkPolicy", b.Delete(ctx, np.DeepCopy()), npRule},
				{"a NetworkPolicy posing as the pool's", b.Create(ctx, &networkingv1.NetworkPolicy{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fake", Labels: map[string]string{agentsv1alpha1.LabelSandboxSet: "demo"}},
				}), "rule pool-objects: NetworkPolicy fake belongs to SandboxSet demo"},
				{"emptying a claim ledger", b.Patch(ctx, ledger.DeepCopy(), client.RawPatch(types.MergePatchType,
					[]byte(`{"metadata":{"annotations":{"`+agentsv1alpha1.AnnotationLedgerPending+`":"{}"}}}`))), ledgerRule},
				{"deleting a claim ledger", b.Delete(ctx, ledger.DeepCopy()), ledgerRule},
				{"its own identity deleting its ledger", a.Delete(ctx, ledger.DeepCopy()), ledgerRule},
			} {
				Expect(apierrors.IsForbidden(attempt.err)).To(BeTrue(), "%s: %v", attempt.name, attempt.err)
				Expect(attempt.err.Error()).To(ContainSubstring(attempt.want), attempt.name)
			}
			stored := &networkingv1.NetworkPolicy{}
			Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(np), stored)).To(Succeed())
			Expect(stored.ResourceVersion).To(Equal(np.ResourceVersion), "nothing was written")
		})
	}

	It("lets the holder label, annotate, retry its claim and release its own sandbox", func(ctx SpecContext) {
		Expect(patch(ctx, a, held, fmt.Sprintf(`{"metadata":{"labels":{"task":"build"},"annotations":{"note":%q}}}`, bigValue))).To(Succeed())
		_, err := claimAs(ctx, a, held, idA)
		Expect(err).NotTo(HaveOccurred(), "an idempotent retry by the holder")
		Expect(a.Delete(ctx, held.DeepCopy())).To(Succeed())
	})

	It("lets the holder evict its own sandbox, and cluster admins any", func(ctx SpecContext) {
		Expect(env.BindRole(ctx, ns, "broad-agent", userA)).To(Succeed())
		Expect(a.SubResource("eviction").Create(ctx, held.DeepCopy(), &policyv1.Eviction{DeleteOptions: &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}})).To(Succeed())
		Expect(adminClient.SubResource("eviction").Create(ctx, warm.DeepCopy(), &policyv1.Eviction{DeleteOptions: &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}})).To(Succeed())
	})

	It("refuses to claim a Pod its SandboxSet does not control", func(ctx SpecContext) {
		By("giving a warm Pod another controller, as only a trusted identity can")
		detached := warm.DeepCopy()
		body := fmt.Sprintf(`[{"op":"replace","path":"/metadata/ownerReferences","value":[{"apiVersion":"v1","kind":"Pod","name":%q,"uid":%q,"controller":true}]}]`, plain.Name, plain.UID)
		Expect(adminClient.Patch(ctx, detached, client.RawPatch(types.JSONPatchType, []byte(body)))).To(Succeed())
		_, err := claimAs(ctx, b, detached, "agent-2")
		Expect(err).To(MatchError(ContainSubstring("rule controlled-claim: it is not controlled by SandboxSet demo")))
	})
}
