package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/podtrack"
)

var _ = Describe("The warm pool on a real control plane", func() {
	var (
		ns       string
		creation *podtrack.Creations
	)
	BeforeEach(func(ctx SpecContext) { ns, creation = countedNamespace(ctx) })

	It("walks the seed's four stages with real scheduling and readiness", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "demo", 3)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		By("stage 1: 3 of 3 available, each Pod scheduled to a node")
		expectPool(ctx, sbs, 3, 3)
		original := podsOf(ctx, Default, sbs)
		Expect(original).To(HaveLen(3))
		for _, pod := range original {
			Expect(pod.Spec.NodeName).NotTo(BeEmpty())
			Expect(pod.Annotations).To(HaveKeyWithValue(agentsv1alpha1.AnnotationPersistentContents, "ip"), "what the sandbox runtime keeps across hibernation")
		}

		By("stage 2: an agent claims one")
		states := watchStates(ctx, ns)
		claimed := original[0]
		Expect(patchLabel(ctx, &claimed, agentsv1alpha1.LabelClaimedBy, "agent-1")).To(Succeed())

		By("stage 3: a replacement is creating while 2 stay available")
		var replacement corev1.Pod
		Eventually(func(g Gomega) {
			for _, pod := range podsOf(ctx, g, sbs) {
				if !containsPod(original, pod.Name) {
					replacement = pod
				}
			}
			g.Expect(replacement.Name).NotTo(BeEmpty())
		}, timeout, interval/10).Should(Succeed())

		By("stage 4: the replacement turns Ready; 3 of 3 available again")
		expectPool(ctx, sbs, 3, 3)
		// Every state each Pod was seen in, from a watch started before the
		// claim: the replacement was creating, then available, while the two
		// others stayed available throughout.
		Expect(states.of(replacement.Name)).To(Equal([]string{string(agentsv1alpha1.StateCreating), string(agentsv1alpha1.StateAvailable)}))
		for _, pod := range original[1:] {
			Expect(states.of(pod.Name)).To(Equal([]string{string(agentsv1alpha1.StateAvailable)}), "%s stayed available", pod.Name)
		}
		held := getPod(ctx, Default, ns, claimed.Name)
		Expect(held.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, "agent-1"))
		Expect(held.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)))
		expectCreations(creation, 4)
	})

	It("scales with kubectl scale sbs", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "demo", 2)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 2, 2)
		out, err := kubectl(ctx, "-n", ns, "scale", "sbs", "demo", "--replicas=6")
		Expect(err).NotTo(HaveOccurred(), out)
		expectPool(ctx, sbs, 6, 6)
		out, err = kubectl(ctx, "-n", ns, "scale", "sbs", "demo", "--replicas=1")
		Expect(err).NotTo(HaveOccurred(), out)
		expectPool(ctx, sbs, 1, 1)
		out, err = kubectl(ctx, "-n", ns, "get", "sbs")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(MatchRegexp(`NAME\s+REPLICAS\s+AVAILABLE\s+UPDATEREVISION\s+AGE\ndemo\s+1\s+1\s+[a-z0-9]+\s+\S+`))
		expectCreations(creation, 6)
	})

	It("rolls the template within maxUnavailable, then under a steady stream of claims, leaving claimed Pods alone", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "demo", 6)
		sbs.Spec.UpdateStrategy.MaxUnavailable = ptr.To(intstr.FromInt32(2))
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 6, 6)
		changeImage := func(image string) string {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
				sbs.Spec.Template.Spec.Containers[0].Image = image
				g.Expect(k8sClient.Update(ctx, sbs)).To(Succeed())
			}, timeout, interval).Should(Succeed())
			return sbs.Spec.Revision()
		}
		// rolledTo waits until every sandbox of the pool is at revision. It
		// does not wait for all six to be available: under a stream of
		// claims the pool is rarely full, and a status write samples it.
		rolledTo := func(revision string) {
			GinkgoHelper()
			Eventually(func(g Gomega) {
				got := &agentsv1alpha1.SandboxSet{}
				g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
				g.Expect(got.Status.UpdateRevision).To(Equal(revision))
				g.Expect(got.Status.UpdatedReplicas).To(Equal(int32(6)))
			}, timeout, interval).Should(Succeed())
		}

		By("claiming two sandboxes at the first revision")
		held := map[string]string{} // pod → revision at claim time
		for i := range 2 {
			pod, ok := claimAny(ctx, sbs, fmt.Sprintf("early-%d", i))
			Expect(ok).To(BeTrue())
			held[pod.Name] = pod.Labels[agentsv1alpha1.LabelRevision]
		}
		expectPool(ctx, sbs, 6, 6)

		By("rolling with no claims: never more than maxUnavailable of 6 unavailable")
		available := watchAvailable(ctx, ns)
		rolledTo(changeImage("nginx:1.28-alpine"))
		expectPool(ctx, sbs, 6, 6)
		Expect(available.min()).To(BeNumerically(">=", 6-2), "available warm Pods during the rollout")

		By("rolling again under a claim every 300 ms")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		stopClaims := sync.OnceFunc(func() {
			close(stop)
			wg.Wait()
		})
		// A failed wait below must not leave the claims running into the
		// next spec.
		DeferCleanup(stopClaims)
		wg.Go(func() {
			defer GinkgoRecover()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if pod, ok := claimAny(ctx, sbs, fmt.Sprintf("agent-%d", i)); ok {
					mu.Lock()
					held[pod.Name] = pod.Labels[agentsv1alpha1.LabelRevision]
					mu.Unlock()
				}
			}
		})
		rolledTo(changeImage("nginx:1.29-alpine"))
		stopClaims()
		expectPool(ctx, sbs, 6, 6)

		Expect(len(held)).To(BeNumerically(">", 2), "claims landed during the second rollout")
		for name, revision := range held {
			pod := getPod(ctx, Default, ns, name)
			Expect(pod.DeletionTimestamp).To(BeNil(), "claimed %s was not deleted by the rollouts", name)
			Expect(pod.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelRevision, revision), "claimed %s kept its revision", name)
		}
	})

	It("deletes warm Pods with their SandboxSet and leaves claimed ones to their holders", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "demo", 4)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 4, 4)
		claimed := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)[:2]
		for i := range claimed {
			Expect(patchLabel(ctx, &claimed[i], agentsv1alpha1.LabelClaimedBy, "agent-"+strconv.Itoa(i))).To(Succeed())
		}
		expectPool(ctx, sbs, 4, 4)

		Expect(k8sClient.Delete(ctx, sbs)).To(Succeed())
		By("waiting for the garbage collector, which may first have to discover the CRD")
		names := []string{claimed[0].Name, claimed[1].Name}
		claimedOnly := func(g Gomega) {
			pods := podsOf(ctx, g, sbs)
			g.Expect(pods).To(HaveLen(2))
			for _, pod := range pods {
				g.Expect(names).To(ContainElement(pod.Name))
				g.Expect(pod.Labels[agentsv1alpha1.LabelState]).To(Equal(string(agentsv1alpha1.StateClaimed)))
				g.Expect(pod.OwnerReferences).To(BeEmpty(), "nothing for the garbage collector to follow")
				g.Expect(pod.DeletionTimestamp).To(BeNil())
			}
		}
		Eventually(claimedOnly, 2*timeout, interval).Should(Succeed())
		By("and the garbage collector, having processed the SandboxSet, leaves them")
		Consistently(claimedOnly, holdFor, interval).Should(Succeed())
	})
})

// patchLabel sets one label with a merge patch, as `kubectl label` does.
func patchLabel(ctx context.Context, pod *corev1.Pod, key, value string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{key: value}}})
	if err != nil {
		return err
	}
	return k8sClient.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch))
}

// claimAny claims some available Pod of the pool for agent, retrying
// another on a lost race; false when none could be had.
func claimAny(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, agent string) (*corev1.Pod, bool) {
	for _, pod := range podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable) {
		err := patchLabel(ctx, &pod, agentsv1alpha1.LabelClaimedBy, agent)
		if err == nil {
			return &pod, true
		}
		// Taken (Conflict), no longer Ready (Invalid) or gone (NotFound):
		// the races the claim package retries too.
		Expect(apierrors.IsConflict(err) || apierrors.IsInvalid(err) || apierrors.IsNotFound(err)).To(BeTrue(), "a refused claim says why: %v", err)
	}
	return nil, false
}

func getPod(ctx context.Context, g Gomega, ns, name string) *corev1.Pod {
	pod := &corev1.Pod{}
	g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, pod)).To(Succeed())
	return pod
}

func containsPod(pods []corev1.Pod, name string) bool {
	for _, pod := range pods {
		if pod.Name == name {
			return true
		}
	}
	return false
}

// expectCreations waits for the watch to catch up with n creations, then
// checks that no more follow.
func expectCreations(c *podtrack.Creations, n int) {
	GinkgoHelper()
	Eventually(c.Counted, timeout, interval).Should(BeNumerically(">=", n), "Pods ever created")
	Consistently(c.Counted, holdFor, interval).Should(Equal(n), "Pods ever created")
}

// stateLog records, for each Pod of a namespace, the state labels a watch
// saw it in, in order and without repeats.
type stateLog struct {
	mu     sync.Mutex
	states map[string][]string
}

// watchStates watches the namespace's Pods until the spec ends.
func watchStates(ctx context.Context, ns string) *stateLog {
	GinkgoHelper()
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	w, err := c.Watch(ctx, &corev1.PodList{}, client.InNamespace(ns))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(w.Stop)
	l := &stateLog{states: map[string][]string{}}
	go func() {
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			state := pod.Labels[agentsv1alpha1.LabelState]
			l.mu.Lock()
			if seen := l.states[pod.Name]; len(seen) == 0 || seen[len(seen)-1] != state {
				l.states[pod.Name] = append(seen, state)
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *stateLog) of(name string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.states[name])
}

// availability follows a namespace's warm Pods through a watch and keeps the
// fewest that were available at once.
type availability struct {
	mu     sync.Mutex
	warm   map[string]bool // pod → available
	lowest int
}

// watchAvailable starts following from a list, which gives the first count.
func watchAvailable(ctx context.Context, ns string) *availability {
	GinkgoHelper()
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	list := &corev1.PodList{}
	Expect(c.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	a := &availability{warm: map[string]bool{}}
	up := func(pod *corev1.Pod) bool {
		return pod.DeletionTimestamp == nil && !agentsv1alpha1.IsClaimed(pod) &&
			pod.Labels[agentsv1alpha1.LabelState] == string(agentsv1alpha1.StateAvailable)
	}
	for i := range list.Items {
		if a.warm[list.Items[i].Name] = up(&list.Items[i]); a.warm[list.Items[i].Name] {
			a.lowest++
		}
	}
	w, err := c.Watch(ctx, &corev1.PodList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(w.Stop)
	go func() {
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			a.mu.Lock()
			a.warm[pod.Name] = ev.Type != watch.Deleted && up(pod)
			n := 0
			for _, up := range a.warm {
				if up {
					n++
				}
			}
			a.lowest = min(a.lowest, n)
			a.mu.Unlock()
		}
	}()
	return a
}

func (a *availability) min() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lowest
}
