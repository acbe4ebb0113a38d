package controllers

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/kubelet"
	"github.com/sandboxset/warmpool/test/podtrack"
	"github.com/sandboxset/warmpool/test/poolcheck"
)

func newSandboxSet(ns, name string, replicas int32) *agentsv1alpha1.SandboxSet {
	return &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: agentsv1alpha1.SandboxSetSpec{
			Replicas:           ptr.To(replicas),
			PersistentContents: []agentsv1alpha1.PersistentContent{agentsv1alpha1.PersistentContentIP},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"foo": "bar"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine"}}},
			},
		},
	}
}

// podsOf lists a pool's Pods straight from the API server, optionally only
// those in one state.
func podsOf(ctx context.Context, g Gomega, sbs *agentsv1alpha1.SandboxSet, state ...agentsv1alpha1.SandboxState) []corev1.Pod {
	return poolcheck.Pods(ctx, g, k8sClient, sbs, state...)
}

// makeReady plays kubelet: every creating Pod of the pool becomes Ready.
func makeReady(ctx context.Context, sbs *agentsv1alpha1.SandboxSet) {
	for _, pod := range podsOf(ctx, Default, sbs, agentsv1alpha1.StateCreating) {
		Expect(kubelet.SetReady(ctx, k8sClient, &pod, true)).To(Succeed())
	}
}

// expectPool waits until the pool is at replicas/available.
func expectPool(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, replicas, available int32) {
	GinkgoHelper()
	poolcheck.ExpectPool(ctx, k8sClient, sbs, replicas, available, timeout, interval)
}

// claimPod labels a Pod as claimed by agent, as an agent's one label patch.
func claimPod(ctx context.Context, pod *corev1.Pod, agent string) {
	patched := pod.DeepCopy()
	patched.Labels[agentsv1alpha1.LabelClaimedBy] = agent
	Expect(k8sClient.Patch(ctx, patched, client.MergeFrom(pod))).To(Succeed())
}

func getPod(ctx context.Context, g Gomega, ns, name string) *corev1.Pod {
	pod := &corev1.Pod{}
	g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, pod)).To(Succeed())
	return pod
}

// creationCounter counts every Pod ever created in a namespace.
type creationCounter struct{ *podtrack.Creations }

func countCreations(ctx context.Context, ns string) *creationCounter {
	GinkgoHelper()
	c, err := podtrack.Count(ctx, cfg, ns)
	Expect(err).NotTo(HaveOccurred())
	return &creationCounter{c}
}

// expectExactly waits for the watch to catch up with n creations, then
// checks that no more follow.
func (c *creationCounter) expectExactly(n int) {
	GinkgoHelper()
	Eventually(c.Counted, timeout, interval).Should(BeNumerically(">=", n), "Pods ever created")
	Consistently(c.Counted, holdFor, interval).Should(Equal(n), "Pods ever created")
}

func resourceQuantity(n int64) *resource.Quantity { return resource.NewQuantity(n, resource.DecimalSI) }

// expectEvent waits for an event on the SandboxSet with this reason and note.
func expectEvent(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, reason, note string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		events := &eventsv1.EventList{}
		g.Expect(k8sClient.List(ctx, events, client.InNamespace(sbs.Namespace))).To(Succeed())
		g.Expect(events.Items).To(ContainElement(And(
			HaveField("Reason", reason), HaveField("Regarding.Name", sbs.Name), HaveField("Note", note))))
	}, timeout, interval).Should(Succeed())
}
