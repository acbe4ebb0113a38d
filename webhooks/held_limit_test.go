package webhooks

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/controllers"
)

// spec.maxHeldPerIdentity through the real API server, claimed by agents
// holding the example agent Role, all at once.
var _ = Describe("The per-identity limit on held sandboxes", func() {
	const limit = 3
	var (
		ns   string
		sbs  *agentsv1alpha1.SandboxSet
		warm []corev1.Pod
	)
	heldBy := func(ctx context.Context, g Gomega, user string) []string {
		list := &corev1.PodList{}
		g.Expect(adminClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var names []string
		for _, pod := range list.Items {
			if pod.Annotations[agentsv1alpha1.AnnotationClaimedByUser] == user && pod.DeletionTimestamp == nil {
				names = append(names, pod.Name)
			}
		}
		return names
	}
	// claimAll sends one claim per Pod, all at once, as user, and returns
	// the errors of those refused.
	claimAll := func(ctx context.Context, c client.Client, pods []corev1.Pod) (admitted int, refused []error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range pods {
			wg.Go(func() {
				_, err := claimAs(ctx, c, &pods[i], fmt.Sprintf("worker-%d", i))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					refused = append(refused, err)
				} else {
					admitted++
				}
			})
		}
		wg.Wait()
		return admitted, refused
	}

	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		sbs = newSandboxSet(ns, "demo", 24)
		sbs.Spec.MaxHeldPerIdentity = ptr.To[int32](limit)
		warm = warmPoolOf(ctx, sbs)
	})

	It("ends 20 claims at once by one identity with exactly the limit held, and refuses the rest with the way out", func(ctx SpecContext) {
		a := agentClient(ctx, ns, "agent-a")
		admitted, refused := claimAll(ctx, a, warm[:20])
		Expect(admitted).To(Equal(limit))
		Expect(refused).To(HaveLen(20 - limit))
		for _, err := range refused {
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
			Expect(err.Error()).To(MatchRegexp(`rule held-limit: agent-a already holds 3 of SandboxSet demo's sandboxes \(demo-\w+, demo-\w+, demo-\w+\), ` +
				`its limit \(spec.maxHeldPerIdentity: 3\); release one \(kubectl sbs release <pod>, or delete it\) before claiming another`))
		}
		Expect(heldBy(ctx, Default, "agent-a")).To(HaveLen(limit))
		Consistently(func(g Gomega) { g.Expect(heldBy(ctx, g, "agent-a")).To(HaveLen(limit)) }, time.Second, interval).Should(Succeed())

		By("leaving other identities their own limit")
		b := agentClient(ctx, ns, "agent-b")
		admitted, _ = claimAll(ctx, b, warm[20:24])
		Expect(admitted).To(Equal(limit))

		By("making room when the identity releases one, at once")
		held := heldBy(ctx, Default, "agent-a")
		Expect(a.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: held[0]}})).To(Succeed())
		var next *corev1.Pod
		for i := range warm[:20] {
			if !slices.Contains(held, warm[i].Name) {
				if stored := (&corev1.Pod{}); adminClient.Get(ctx, client.ObjectKeyFromObject(&warm[i]), stored) == nil && !agentsv1alpha1.IsClaimed(stored) {
					next = stored
					break
				}
			}
		}
		Expect(next).NotTo(BeNil(), "an unclaimed sandbox is left")
		_, err := claimAs(ctx, a, next, "worker-next")
		Expect(err).NotTo(HaveOccurred())
		Expect(heldBy(ctx, Default, "agent-a")).To(HaveLen(limit))
	})

	It("counts cold claims, and reserves nothing for a dry run", func(ctx SpecContext) {
		a := wideAgentClient(ctx, ns, "agent-a")
		for i := range limit - 1 {
			_, err := claimAs(ctx, a, &warm[i], "worker")
			Expect(err).NotTo(HaveOccurred())
		}
		By("a dry-run claim, admitted and not counted")
		dry := warm[limit].DeepCopy()
		Expect(a.Patch(ctx, dry, labelPatch(map[string]*string{agentsv1alpha1.LabelClaimedBy: ptrTo("worker")}), client.DryRunAll)).To(Succeed())
		lease := &coordinationv1.Lease{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: ledgerName("demo", "agent-a")}, lease)).To(Succeed())
		Expect(lease.Annotations[agentsv1alpha1.AnnotationLedgerPending]).NotTo(ContainSubstring(dry.Name))
		Expect(*lease.Spec.HolderIdentity).To(Equal("agent-a"))
		Expect(lease.OwnerReferences).To(ConsistOf(HaveField("UID", sbs.UID)), "deleted with the pool")

		By("a cold claim takes the last place")
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		cold := func(name string) *corev1.Pod {
			return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: name, Labels: map[string]string{
				agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelRevision: sbs.Spec.Revision(), agentsv1alpha1.LabelClaimedBy: "worker",
			}}, Spec: *sbs.Spec.Template.Spec.DeepCopy()}
		}
		first := cold("demo-cold-")
		Expect(a.Create(ctx, first)).To(Succeed())
		Expect(first.Name).To(HavePrefix("demo-cold-"), "named from generateName in admission")
		err := a.Create(ctx, cold("demo-cold-"))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("rule held-limit: agent-a already holds 3 of SandboxSet demo's sandboxes"))
		_, err = claimAs(ctx, a, &warm[limit+1], "worker")
		Expect(err).To(MatchError(ContainSubstring("rule held-limit")))
		Expect(heldBy(ctx, Default, "agent-a")).To(HaveLen(limit))
	})

	It("holds across manager replicas: reservations race through the API server, not a lock", func(ctx SpecContext) {
		// Two webhooks as two replicas run them: each its own locks, over
		// a cache of its own.
		podCache, err := cache.New(env.Environment.Config, cache.Options{Scheme: env.Scheme, ByObject: controllers.CacheOptions().ByObject})
		Expect(err).NotTo(HaveOccurred())
		Expect(podCache.IndexField(ctx, &corev1.Pod{}, holderIndex, holderIndexKeys)).To(Succeed())
		cacheCtx, stop := context.WithCancel(context.Background())
		DeferCleanup(stop)
		go func() { _ = podCache.Start(cacheCtx) }()
		Expect(podCache.WaitForCacheSync(ctx)).To(BeTrue())
		cached, err := client.New(env.Environment.Config, client.Options{Scheme: env.Scheme, Cache: &client.CacheOptions{Reader: podCache}})
		Expect(err).NotTo(HaveOccurred())
		replicas := []*heldLimit{
			{client: cached, apiReader: adminClient, now: time.Now},
			{client: cached, apiReader: adminClient, now: time.Now},
		}
		var reserved atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				defer GinkgoRecover()
				err := replicas[i%2].reserve(ctx, sbs, fmt.Sprintf("demo-racer%d", i), "agent-racing", true, false)
				switch {
				case err == nil:
					reserved.Add(1)
				case !strings.Contains(err.Error(), "rule held-limit"):
					Fail(fmt.Sprintf("reservation %d: %v", i, err))
				}
			})
		}
		wg.Wait()
		Expect(reserved.Load()).To(BeEquivalentTo(limit))
	})
})
