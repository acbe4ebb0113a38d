package controllers

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

var _ = Describe("Sandbox expiry", func() {
	var (
		ns  string
		sbs *agentsv1alpha1.SandboxSet
	)
	// claimWithShutdown claims one available sandbox with a shutdown time,
	// as the claim webhook leaves it.
	claimWithShutdown := func(ctx context.Context, at time.Time) *corev1.Pod {
		GinkgoHelper()
		pod := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)[0]
		patched := pod.DeepCopy()
		patched.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1"
		patched.Labels[agentsv1alpha1.LabelState] = string(agentsv1alpha1.StateClaimed)
		patched.Annotations[agentsv1alpha1.AnnotationClaimedByUser] = "system:serviceaccount:agents:agent-a"
		patched.Annotations[agentsv1alpha1.AnnotationShutdownTime] = agentsv1alpha1.FormatShutdownTime(at)
		Expect(k8sClient.Patch(ctx, patched, client.MergeFrom(&pod))).To(Succeed())
		return patched
	}
	gone := func(ctx context.Context, pod *corev1.Pod) func() bool {
		return func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}))
		}
	}

	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		sbs = newSandboxSet(ns, "demo", 2)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(podsOf(ctx, g, sbs)).To(HaveLen(2)) }, timeout, interval).Should(Succeed())
		makeReady(ctx, sbs)
		expectPool(ctx, sbs, 2, 2)
	})

	It("deletes a claimed sandbox at its shutdown time, tells its SandboxSet who held it, and counts it", func(ctx SpecContext) {
		expired, lateness := expirationsOf(ns), latenessCount()
		at := time.Now().Add(time.Second)
		pod := claimWithShutdown(ctx, at)
		Consistently(gone(ctx, pod), time.Until(at)-100*time.Millisecond, interval).Should(BeFalse(), "not before its time")
		Eventually(gone(ctx, pod), timeout, interval).Should(BeTrue())
		Eventually(func(g Gomega) {
			list := &eventsv1.EventList{}
			g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(ContainElement(And(
				HaveField("Reason", "SandboxExpired"), HaveField("Regarding.Kind", "SandboxSet"), HaveField("Regarding.Name", "demo"),
				HaveField("Note", ContainSubstring("Sandbox %s claimed by agent-1 (system:serviceaccount:agents:agent-a) reached its shutdown time", pod.Name)),
			)))
		}, timeout, interval).Should(Succeed())
		Expect(expirationsOf(ns)).To(Equal(expired + 1))
		Expect(latenessCount()).To(Equal(lateness + 1))
		By("and leaves the pool whole")
		expectPool(ctx, sbs, 2, 1)
	})

	It("still expires a sandbox after its SandboxSet is gone", func(ctx SpecContext) {
		pod := claimWithShutdown(ctx, time.Now().Add(500*time.Millisecond))
		Expect(k8sClient.Delete(ctx, sbs)).To(Succeed())
		Eventually(gone(ctx, pod), timeout, interval).Should(BeTrue())
	})

	It("lets a renewal win over an expiry decided on the Pod as it was", func(ctx SpecContext) {
		at := time.Now().Add(-time.Second)
		pod := claimWithShutdown(ctx, time.Now().Add(time.Hour))
		stale := getPod(ctx, Default, ns, pod.Name)
		renewed := stale.DeepCopy()
		renewed.Annotations[agentsv1alpha1.AnnotationShutdownTime] = agentsv1alpha1.FormatShutdownTime(time.Now().Add(2 * time.Hour))
		Expect(k8sClient.Patch(ctx, renewed, client.MergeFrom(stale))).To(Succeed())

		reaper := &ExpiryReconciler{Client: k8sClient, Recorder: events.NewFakeRecorder(10), now: time.Now}
		expired := expirationsOf(ns)
		Expect(reaper.expire(ctx, stale, at)).To(Succeed(), "a conflict is not an error")
		Expect(gone(ctx, pod)()).To(BeFalse(), "the renewed sandbox lives")
		Expect(expirationsOf(ns)).To(Equal(expired))
	})

	It("never touches warm sandboxes, nor claimed ones without a shutdown time", func(ctx SpecContext) {
		pods := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)
		claimPod(ctx, &pods[0], "agent-1")
		// A shutdown time on a warm Pod cannot pass admission; here nothing
		// stops it, and the reaper must still leave the Pod to its pool.
		warm := pods[1].DeepCopy()
		warm.Annotations[agentsv1alpha1.AnnotationShutdownTime] = agentsv1alpha1.FormatShutdownTime(time.Now())
		Expect(k8sClient.Patch(ctx, warm, client.MergeFrom(&pods[1]))).To(Succeed())
		Consistently(func() bool { return gone(ctx, &pods[0])() || gone(ctx, warm)() }, holdFor, interval).Should(BeFalse())
	})
})

// expirationsOf reads sandboxset_expirations_total for the pool demo in ns.
func expirationsOf(ns string) float64 {
	GinkgoHelper()
	return counterValue("sandboxset_expirations_total", map[string]string{"namespace": ns, "sandboxset": "demo"})
}

// latenessCount is how many expiries sandboxset_expiry_lateness_seconds holds.
func latenessCount() uint64 {
	GinkgoHelper()
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() == "sandboxset_expiry_lateness_seconds" {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// counterValue is a counter series' value, 0 if there is none.
func counterValue(name string, labels map[string]string) float64 {
	GinkgoHelper()
	return metricSeries(name, labels).GetCounter().GetValue()
}

// histogramCount is how many samples a histogram series holds.
func histogramCount(name string, labels map[string]string) uint64 {
	GinkgoHelper()
	return metricSeries(name, labels).GetHistogram().GetSampleCount()
}

// metricSeries is the manager's series of name with labels, nil if none.
func metricSeries(name string, labels map[string]string) *dto.Metric {
	GinkgoHelper()
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue series
				}
			}
			return m
		}
	}
	return nil
}
