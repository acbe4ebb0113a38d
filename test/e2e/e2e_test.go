package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
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
		for _, pod := range original {
			Expect(pod.Spec.NodeName).NotTo(BeEmpty())
		}

		By("stage 2: an agent claims one")
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
		ready := readyTime(getPod(ctx, Default, ns, replacement.Name))
		Expect(ready.Sub(replacement.CreationTimestamp.Time)).To(BeNumerically(">=", 0), "it was creating before it was available")
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

	It("rolls the template under a steady stream of claims, leaving claimed Pods alone", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "demo", 6)
		sbs.Spec.UpdateStrategy.MaxUnavailable = ptr.To(intstr.FromInt32(2))
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 6, 6)

		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		held := map[string]string{} // pod → revision at claim time
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
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
		}()

		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
			sbs.Spec.Template.Spec.Containers[0].Image = "nginx:1.29-alpine"
			g.Expect(k8sClient.Update(ctx, sbs)).To(Succeed())
		}, timeout, interval).Should(Succeed())
		newRevision := sbs.Spec.Revision()
		Eventually(func(g Gomega) {
			got := &agentsv1alpha1.SandboxSet{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
			g.Expect(got.Status.UpdateRevision).To(Equal(newRevision))
			g.Expect(got.Status.UpdatedReplicas).To(Equal(int32(6)))
			g.Expect(got.Status.AvailableReplicas).To(Equal(int32(6)))
		}, timeout, interval).Should(Succeed())
		close(stop)
		wg.Wait()

		Expect(held).NotTo(BeEmpty())
		for name, revision := range held {
			pod := getPod(ctx, Default, ns, name)
			Expect(pod.DeletionTimestamp).To(BeNil(), "claimed %s was not deleted by the rollout", name)
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
		Eventually(func(g Gomega) {
			pods := podsOf(ctx, g, sbs)
			g.Expect(pods).To(HaveLen(2))
			for _, pod := range pods {
				g.Expect(pod.Labels[agentsv1alpha1.LabelState]).To(Equal(string(agentsv1alpha1.StateClaimed)))
				g.Expect(pod.DeletionTimestamp).To(BeNil())
			}
		}, 2*timeout, interval).Should(Succeed())
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
		Expect(apierrors.IsConflict(err) || apierrors.IsInvalid(err)).To(BeTrue(), "a refused claim says why: %v", err)
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

func readyTime(pod *corev1.Pod) time.Time {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// expectCreations waits for the watch to catch up with n creations, then
// checks that no more follow.
func expectCreations(c *podtrack.Creations, n int) {
	GinkgoHelper()
	Eventually(c.Count, timeout, interval).Should(BeNumerically(">=", n), "Pods ever created")
	Consistently(c.Count, holdFor, interval).Should(Equal(n), "Pods ever created")
}
