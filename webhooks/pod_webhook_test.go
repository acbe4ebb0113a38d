package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/envtestenv"
	"github.com/sandboxset/warmpool/test/kubelet"
)

var _ = Describe("Pool Pod admission", func() {
	var (
		ns    string
		agent client.Client
	)

	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		agent = agentClient(ctx, ns, "agent-user")
	})

	It("stamps new Pods with the pool's persistent contents and the creating state", func(ctx SpecContext) {
		for _, pod := range warmPool(ctx, ns, 2) {
			Expect(pod.Annotations).To(HaveKeyWithValue(agentsv1alpha1.AnnotationPersistentContents, "ip,memory"))
		}
	})

	It("completes a valid claim in the claim's own write", func(ctx SpecContext) {
		pod := warmPool(ctx, ns, 1)[0]
		before := time.Now().Add(-time.Second)
		claimed, err := claimAs(ctx, agent, &pod, "agent-1")
		Expect(err).NotTo(HaveOccurred())
		// The patch response is the stored Pod: no later write was needed.
		Expect(claimed.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)))
		Expect(claimed.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, "agent-1"))
		Expect(claimed.OwnerReferences).To(BeEmpty(), "released from the SandboxSet in the same write")
		at, err := time.Parse(time.RFC3339Nano, claimed.Annotations[agentsv1alpha1.AnnotationClaimedAt])
		Expect(err).NotTo(HaveOccurred())
		Expect(at).To(BeTemporally(">", before))

		By("telling kubectl describe about the claim and its refill")
		Eventually(func(g Gomega) {
			events := &eventsv1.EventList{}
			g.Expect(adminClient.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(And(
				HaveField("Reason", "SandboxClaimed"),
				HaveField("Regarding.Name", "demo"),
				HaveField("Note", ContainSubstring("Sandbox %s claimed by agent-1", pod.Name)),
			)))
		}, timeout, interval).Should(Succeed())
	})

	It("counts each claim it judges, by kind and result", func(ctx SpecContext) {
		pool := warmPool(ctx, ns, 2)
		count := func(result string) float64 {
			return testutil.ToFloat64(claimAdmissions.WithLabelValues(ns, "demo", "warm", result))
		}
		// An update starts from the API server's watch cache. From a stale
		// copy the API server runs admission, fails its write, and runs it
		// again on the stored Pod, so the webhook judges, and counts, one
		// claim twice. Each claim here waits until that cache is current.
		inWatchCache := func(pod *corev1.Pod) {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				stored := &corev1.Pod{}
				g.Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(pod), stored)).To(Succeed())
				cached := &corev1.PodList{}
				g.Expect(adminClient.List(ctx, cached, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: "0"}})).To(Succeed())
				g.Expect(cached.Items).To(ContainElement(And(HaveField("Name", pod.Name), HaveField("ResourceVersion", stored.ResourceVersion))))
			}, timeout, interval).Should(Succeed())
		}
		inWatchCache(&pool[0])
		_, err := claimAs(ctx, agent, &pool[0], "agent-1")
		Expect(err).NotTo(HaveOccurred())
		inWatchCache(&pool[0])
		_, err = claimAs(ctx, agent, &pool[0], "agent-2")
		Expect(apierrors.IsConflict(err)).To(BeTrue(), "got %v", err)
		Expect(kubelet.SetReady(ctx, adminClient, &pool[1], false)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(pods(ctx, g, ns, agentsv1alpha1.StateCreating)).To(ContainElement(HaveField("Name", pool[1].Name)))
		}, timeout, interval).Should(Succeed(), "the controller has marked it creating, its last write")
		inWatchCache(&pool[1])
		_, err = claimAs(ctx, agent, &pool[1], "agent-2")
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect([]float64{count("admitted"), count("lost"), count("refused")}).To(Equal([]float64{1, 1, 1}))
	})

	It("refuses to claim a Pod that is still creating", func(ctx SpecContext) {
		pod := warmPool(ctx, ns, 1)[0]
		Expect(kubelet.SetReady(ctx, adminClient, &pod, false)).To(Succeed())
		_, err := claimAs(ctx, agent, &pod, "agent-1")
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("sandbox %s cannot be claimed: it is still creating", pod.Name))
	})

	It("refuses a second claim, naming the Pod and its holder", func(ctx SpecContext) {
		pod := warmPool(ctx, ns, 1)[0]
		_, err := claimAs(ctx, agent, &pod, "agent-1")
		Expect(err).NotTo(HaveOccurred())
		_, err = claimAs(ctx, agent, &pod, "agent-2")
		Expect(apierrors.IsConflict(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("sandbox %s is already claimed by agent-1", pod.Name))
	})

	DescribeTable("refuses hostile patches, each with its own message",
		func(ctx SpecContext, claimFirst bool, labels map[string]*string, wantMessage string) {
			pod := warmPool(ctx, ns, 1)[0]
			if claimFirst {
				_, err := claimAs(ctx, agent, &pod, "agent-1")
				Expect(err).NotTo(HaveOccurred())
			}
			err := agent.Patch(ctx, &pod, labelPatch(labels))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(wantMessage))
			stored := &corev1.Pod{}
			Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(&pod), stored)).To(Succeed())
			Expect(stored.Labels[agentsv1alpha1.LabelClaimedBy] != "").To(Equal(claimFirst), "nothing half-applied")
			Expect(stored.Labels[agentsv1alpha1.LabelState] == string(agentsv1alpha1.StateClaimed)).To(Equal(claimFirst), "state and holder agree")
		},
		Entry("forged state on a warm Pod", false, map[string]*string{agentsv1alpha1.LabelState: ptrTo("claimed")},
			"only the SandboxSet controller sets a sandbox's state"),
		Entry("forged state in a claim", false, map[string]*string{agentsv1alpha1.LabelClaimedBy: ptrTo("agent-1"), agentsv1alpha1.LabelState: ptrTo("creating")},
			"metadata.labels[agents.kruise.io/state]: Forbidden"),
		Entry("moving a Pod to another pool", false, map[string]*string{agentsv1alpha1.LabelSandboxSet: ptrTo("other")},
			"metadata.labels[agents.kruise.io/sandboxset]: Forbidden"),
		Entry("relabelling a Pod's revision", false, map[string]*string{agentsv1alpha1.LabelRevision: ptrTo("abc")},
			"metadata.labels[agents.kruise.io/revision]: Forbidden"),
		Entry("an agent id too long for a label", false, map[string]*string{agentsv1alpha1.LabelClaimedBy: ptrTo(strings.Repeat("a", 64))},
			"an agent id must be a valid label value: must be no more than 63"),
		Entry("a swapped holder", true, map[string]*string{agentsv1alpha1.LabelClaimedBy: ptrTo("agent-2")},
			"is already claimed by agent-1"),
		Entry("unclaiming", true, map[string]*string{agentsv1alpha1.LabelClaimedBy: nil},
			"a claim cannot be removed; delete the Pod to release the sandbox"),
		Entry("marking a claimed Pod available again", true, map[string]*string{agentsv1alpha1.LabelState: ptrTo("available")},
			"a claimed sandbox stays claimed"),
	)

	It("keeps an agent to its own namespace, even through a crafted request", func(ctx SpecContext) {
		pod := warmPool(ctx, ns, 1)[0]
		otherNS := newNamespace(ctx)
		outsider := agentClient(ctx, otherNS, "outsider")

		By("patching the Pod in a namespace the agent has no Role in")
		_, err := claimAs(ctx, outsider, &pod, "outsider")
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)

		By("sending the patch to its own namespace with the other namespace in the body")
		crafted := pod.DeepCopy()
		crafted.Namespace = otherNS
		body := []byte(fmt.Sprintf(`{"metadata":{"namespace":%q,"labels":{%q:"outsider"}}}`, ns, agentsv1alpha1.LabelClaimedBy))
		err = outsider.Patch(ctx, crafted, client.RawPatch(types.MergePatchType, body))
		Expect(err).To(HaveOccurred())
		Expect(apierrors.IsNotFound(err) || apierrors.IsBadRequest(err) || apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)

		stored := &corev1.Pod{}
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(&pod), stored)).To(Succeed())
		Expect(stored.Labels).NotTo(HaveKey(agentsv1alpha1.LabelClaimedBy))
	})

	It("refuses warm Pods from anyone but the manager", func(ctx SpecContext) {
		warmPool(ctx, ns, 0)
		forged := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "forged", Labels: map[string]string{agentsv1alpha1.LabelSandboxSet: "demo"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "sandbox", Image: "evil"}}},
		}
		err := adminClient.Create(ctx, forged)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("only the SandboxSet controller creates warm sandboxes"))
	})

	It("is called only for writes it has to judge", func(ctx SpecContext) {
		pod := warmPool(ctx, ns, 1)[0]
		manager, err := env.UserClient(envtestenv.ManagerUser)
		Expect(err).NotTo(HaveOccurred())
		calls := podWebhookCalls()

		By("an agent's own label on a warm Pod, which the pool-pods policy refuses without the webhook, and the manager moving the Pod between states")
		Expect(agent.Patch(ctx, &pod, labelPatch(map[string]*string{"app": ptrTo("mine")}))).To(MatchError(ContainSubstring("rule warm-metadata")))
		Expect(manager.Patch(ctx, &pod, labelPatch(map[string]*string{agentsv1alpha1.LabelState: ptrTo("creating")}))).To(Succeed())
		Expect(manager.Patch(ctx, &pod, labelPatch(map[string]*string{agentsv1alpha1.LabelState: ptrTo("available")}))).To(Succeed())
		Expect(podWebhookCalls()).To(Equal(calls), "none of these writes reached the webhook")

		By("a claim, which it must judge and complete")
		claimed, err := claimAs(ctx, agent, &pod, "agent-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(claimed.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)))
		Expect(podWebhookCalls()).To(BeNumerically(">", calls))

		By("the holder's own label on its sandbox, and a forged state that the webhook still sees and refuses")
		// The claim's refill creates a Pod, through the webhook: count from
		// once it exists.
		Eventually(func(g Gomega) {
			g.Expect(pods(ctx, g, ns, agentsv1alpha1.StateCreating)).To(HaveLen(1))
		}, timeout, interval).Should(Succeed())
		calls = podWebhookCalls()
		Expect(agent.Patch(ctx, claimed, labelPatch(map[string]*string{"task": ptrTo("build")}))).To(Succeed())
		Expect(podWebhookCalls()).To(Equal(calls))
		err = agent.Patch(ctx, claimed, labelPatch(map[string]*string{agentsv1alpha1.LabelState: ptrTo("available")}))
		Expect(err).To(MatchError(ContainSubstring("a claimed sandbox stays claimed")))
	})

	It("lets exactly one of 50 racing agents win each of 10 sandboxes", func(ctx SpecContext) {
		available := warmPool(ctx, ns, 10)
		type result struct {
			pod, agent string
			err        error
		}
		results := make(chan result, 50)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer GinkgoRecover()
				pod := available[i%len(available)]
				id := fmt.Sprintf("agent-%d", i)
				<-start
				_, err := claimAs(ctx, agent, &pod, id)
				results <- result{pod: pod.Name, agent: id, err: err}
			}()
		}
		close(start)
		wg.Wait()
		close(results)

		winners := map[string]string{}
		for r := range results {
			if r.err != nil {
				Expect(apierrors.IsConflict(r.err)).To(BeTrue(), "a lost race is a clear Conflict, got %v", r.err)
				Expect(r.err.Error()).To(MatchRegexp(`sandbox %s is already claimed by agent-\d+`, r.pod))
				continue
			}
			Expect(winners).NotTo(HaveKey(r.pod), "two agents were told they hold %s", r.pod)
			winners[r.pod] = r.agent
		}
		Expect(winners).To(HaveLen(10))
		for name, holder := range winners {
			stored := &corev1.Pod{}
			Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, stored)).To(Succeed())
			Expect(stored.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, holder))
			Expect(stored.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)))
		}
	})
})

// claimAs claims a Pod as an agent does: one merge patch of the holder
// label, with no resourceVersion, so the API server's own retry and the
// claim webhook decide races. It returns the Pod as stored by that write.
func claimAs(ctx context.Context, c client.Client, pod *corev1.Pod, agentID string) (*corev1.Pod, error) {
	claimed := pod.DeepCopy()
	err := c.Patch(ctx, claimed, labelPatch(map[string]*string{agentsv1alpha1.LabelClaimedBy: &agentID}))
	return claimed, err
}

// labelPatch is a JSON merge patch of labels; a nil value removes the label.
func labelPatch(labels map[string]*string) client.Patch {
	patch := map[string]any{"metadata": map[string]any{"labels": labels}}
	data, err := json.Marshal(patch)
	Expect(err).NotTo(HaveOccurred())
	return client.RawPatch(types.MergePatchType, data)
}

func pods(ctx context.Context, g Gomega, ns string, state agentsv1alpha1.SandboxState) []corev1.Pod {
	list := &corev1.PodList{}
	g.Expect(adminClient.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{agentsv1alpha1.LabelState: string(state)})).To(Succeed())
	return list.Items
}

func ptrTo(s string) *string { return &s }

// podWebhookCalls is how many requests the Pod webhook has served, from
// controller-runtime's own metric: the webhook server runs in this process.
func podWebhookCalls() float64 {
	GinkgoHelper()
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	var calls float64
	for _, family := range families {
		if family.GetName() != "controller_runtime_webhook_requests_total" {
			continue
		}
		for _, m := range family.GetMetric() {
			for _, label := range m.GetLabel() {
				if label.GetName() == "webhook" && label.GetValue() == "/mutate--v1-pod" {
					calls += m.GetCounter().GetValue()
				}
			}
		}
	}
	return calls
}

// Every manager replica serves the webhooks, and a replica's cache can trail
// the leader's: a pool just created, or a template just changed, must not be
// refused on what the cache says.
var _ = Describe("A webhook replica with a stale cache", func() {
	It("asks the API server before refusing a Pod of a pool, or a cold claim at a revision, its cache does not know", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		sbs := newSandboxSet(ns, "fresh", 0)
		Expect(adminClient.Create(ctx, sbs)).To(Succeed())
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		stale := sbs.DeepCopy()
		stale.Spec.Template.Spec.Containers[0].Image = "nginx:previous"
		// The cache this replica has: no pool at first, then the pool's
		// previous template.
		var known atomic.Bool
		cached := interceptor.NewClient(env.Admin, interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			got, ok := obj.(*agentsv1alpha1.SandboxSet)
			switch {
			case !ok:
				return c.Get(ctx, key, obj, opts...)
			case !known.Load():
				return apierrors.NewNotFound(schema.GroupResource{Group: "agents.kruise.io", Resource: "sandboxsets"}, key.Name)
			}
			stale.DeepCopyInto(got)
			return nil
		}})
		w := &PodWebhook{Client: cached, APIReader: env.Admin, ManagerUsername: envtestenv.ManagerUser}
		w.now, w.templates = time.Now, newTemplateSpecs(env.Admin)
		var err error
		w.podSecurity, err = newPodSecurity("", env.Admin)
		Expect(err).NotTo(HaveOccurred())

		warm := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fresh-abcde", Labels: map[string]string{agentsv1alpha1.LabelSandboxSet: "fresh"}},
			Spec:       sbs.Spec.Template.Spec,
		}
		Expect(w.admitCreate(ctx, warm, envtestenv.ManagerUser, true, false)).To(Succeed())
		Expect(warm.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateCreating)))

		known.Store(true)
		cold := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fresh-cold1", Labels: map[string]string{
				agentsv1alpha1.LabelSandboxSet: "fresh", agentsv1alpha1.LabelRevision: sbs.Spec.Revision(), agentsv1alpha1.LabelClaimedBy: "agent-1",
			}},
			Spec: *sbs.Spec.Template.Spec.DeepCopy(),
		}
		// Its spec as the API server defaults it before admission.
		dry := cold.DeepCopy()
		Expect(adminClient.Create(ctx, dry, client.DryRunAll)).To(Succeed())
		cold.Spec = dry.Spec
		Expect(w.admitCreate(ctx, cold, "agent-user", false, false)).To(Succeed())
		Expect(cold.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)))
	})
})
