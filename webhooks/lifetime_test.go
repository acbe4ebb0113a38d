package webhooks

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

var _ = Describe("Claim lifetime", func() {
	var (
		ns   string
		a, b client.Client
	)
	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		a, b = agentClient(ctx, ns, "agent-a"), agentClient(ctx, ns, "agent-b")
	})

	// pool makes a warm pool of two with the lifetime policy.
	pool := func(ctx context.Context, def, max time.Duration) []corev1.Pod {
		GinkgoHelper()
		pods := warmPool(ctx, ns, 2)
		lifetime := &agentsv1alpha1.ClaimLifetime{}
		if def > 0 {
			lifetime.Default = &metav1.Duration{Duration: def}
		}
		if max > 0 {
			lifetime.Max = &metav1.Duration{Duration: max}
		}
		Eventually(func(g Gomega) {
			sbs := &agentsv1alpha1.SandboxSet{}
			g.Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "demo"}, sbs)).To(Succeed())
			sbs.Spec.ClaimLifetime = lifetime
			g.Expect(adminClient.Update(ctx, sbs)).To(Succeed())
		}, timeout, interval).Should(Succeed())
		// The claim webhook reads the policy from the manager's cache: wait
		// until a claim, dry-run, gets it.
		stamped := agentsv1alpha1.AnnotationMaxShutdownTime
		if max == 0 {
			stamped = agentsv1alpha1.AnnotationShutdownTime
		}
		Eventually(func(g Gomega) {
			probe := pods[0].DeepCopy()
			patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"labels":{%q:"probe"}}}`, agentsv1alpha1.LabelClaimedBy))
			g.Expect(a.Patch(ctx, probe, patch, client.DryRunAll)).To(Succeed())
			g.Expect(probe.Annotations).To(HaveKey(stamped))
		}, timeout, interval).Should(Succeed())
		return pods
	}
	annotate := func(ctx context.Context, c client.Client, pod *corev1.Pod, value *string) (*corev1.Pod, error) {
		patched := pod.DeepCopy()
		body := fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, agentsv1alpha1.AnnotationShutdownTime)
		if value != nil {
			body = fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, agentsv1alpha1.AnnotationShutdownTime, *value)
		}
		return patched, c.Patch(ctx, patched, client.RawPatch(types.MergePatchType, []byte(body)))
	}
	shutdownOf := func(pod *corev1.Pod) time.Time {
		GinkgoHelper()
		at, ok := agentsv1alpha1.ShutdownTime(pod)
		Expect(ok).To(BeTrue(), "a valid shutdown time: %v", pod.Annotations)
		return at
	}

	It("stamps the pool's default lifetime and maximum at claim time", func(ctx SpecContext) {
		pods := pool(ctx, 10*time.Minute, time.Hour)
		claimed, err := claimAs(ctx, a, &pods[1], "agent-1")
		Expect(err).NotTo(HaveOccurred())
		at, err := time.Parse(time.RFC3339Nano, claimed.Annotations[agentsv1alpha1.AnnotationClaimedAt])
		Expect(err).NotTo(HaveOccurred())
		Expect(shutdownOf(claimed)).To(BeTemporally("~", at.Add(10*time.Minute), time.Millisecond))
		limit, err := agentsv1alpha1.ParseShutdownTime(claimed.Annotations[agentsv1alpha1.AnnotationMaxShutdownTime])
		Expect(err).NotTo(HaveOccurred())
		Expect(limit).To(BeTemporally("~", at.Add(time.Hour), time.Millisecond))
	})

	It("stamps nothing for a pool without a policy", func(ctx SpecContext) {
		claimed, err := claimAs(ctx, a, &warmPool(ctx, ns, 1)[0], "agent-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(claimed.Annotations).NotTo(HaveKey(agentsv1alpha1.AnnotationShutdownTime))
		Expect(claimed.Annotations).NotTo(HaveKey(agentsv1alpha1.AnnotationMaxShutdownTime))
	})

	It("keeps a shutdown time the claim sets, within the maximum, and lets only the holder move it", func(ctx SpecContext) {
		pods := pool(ctx, 10*time.Minute, time.Hour)
		pod := &pods[1]
		in30m := agentsv1alpha1.FormatShutdownTime(time.Now().Add(30 * time.Minute))
		patched := pod.DeepCopy()
		body := fmt.Sprintf(`{"metadata":{"labels":{%q:"agent-1"},"annotations":{%q:%q}}}`, agentsv1alpha1.LabelClaimedBy, agentsv1alpha1.AnnotationShutdownTime, in30m)
		Expect(a.Patch(ctx, patched, client.RawPatch(types.MergePatchType, []byte(body)))).To(Succeed())
		Expect(patched.Annotations).To(HaveKeyWithValue(agentsv1alpha1.AnnotationShutdownTime, in30m))

		By("renewing as the holder")
		in50m := agentsv1alpha1.FormatShutdownTime(time.Now().Add(50 * time.Minute))
		renewed, err := annotate(ctx, a, patched, &in50m)
		Expect(err).NotTo(HaveOccurred())
		Expect(renewed.Annotations).To(HaveKeyWithValue(agentsv1alpha1.AnnotationShutdownTime, in50m))

		By("renewing as another agent")
		_, err = annotate(ctx, b, renewed, &in30m)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("rule holder-only: sandbox %s is claimed by agent-1", pod.Name))
	})

	DescribeTable("refuses a shutdown time that is malformed, past, beyond the maximum, or removed",
		func(ctx SpecContext, value func() *string, wantField, want string) {
			pods := pool(ctx, 10*time.Minute, time.Hour)
			claimed, err := claimAs(ctx, a, &pods[1], "agent-1")
			Expect(err).NotTo(HaveOccurred())
			_, err = annotate(ctx, a, claimed, value())
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring(wantField + ": "))
			Expect(err.Error()).To(ContainSubstring(want))
			Expect(getPodAnnotations(ctx, claimed)).To(Equal(claimed.Annotations), "nothing half-applied")
		},
		Entry("not a time", func() *string { return ptrTo("tomorrow") },
			"metadata.annotations[agents.kruise.io/shutdown-time]", "rule shutdown-time: must be an RFC 3339 UTC time, e.g. 2026-12-01T10:00:00Z"),
		Entry("not UTC", func() *string { return ptrTo(time.Now().Add(time.Minute).Format("2006-01-02T15:04:05+01:00")) },
			"metadata.annotations[agents.kruise.io/shutdown-time]", "must be an RFC 3339 UTC time"),
		Entry("in the past", func() *string { return ptrTo(agentsv1alpha1.FormatShutdownTime(time.Now().Add(-time.Minute))) },
			"metadata.annotations[agents.kruise.io/shutdown-time]", "rule shutdown-time: must be in the future"),
		Entry("beyond the maximum", func() *string { return ptrTo(agentsv1alpha1.FormatShutdownTime(time.Now().Add(2 * time.Hour))) },
			"metadata.annotations[agents.kruise.io/shutdown-time]", "the claim time plus its SandboxSet's claimLifetime.max"),
		Entry("removed", func() *string { return nil },
			"metadata.annotations[agents.kruise.io/shutdown-time]", "so its shutdown time cannot be removed; move it instead"),
	)

	It("refuses a claim whose shutdown time is beyond the maximum", func(ctx SpecContext) {
		pods := pool(ctx, 0, time.Hour)
		body := fmt.Sprintf(`{"metadata":{"labels":{%q:"agent-1"},"annotations":{%q:%q}}}`, agentsv1alpha1.LabelClaimedBy,
			agentsv1alpha1.AnnotationShutdownTime, agentsv1alpha1.FormatShutdownTime(time.Now().Add(3*time.Hour)))
		err := a.Patch(ctx, pods[1].DeepCopy(), client.RawPatch(types.MergePatchType, []byte(body)))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("claimLifetime.max"))
	})

	DescribeTable("validates the policy",
		func(ctx SpecContext, lifetime agentsv1alpha1.ClaimLifetime, want string) {
			sbs := newSandboxSet(ns, "bad", 0)
			sbs.Spec.ClaimLifetime = &lifetime
			err := adminClient.Create(ctx, sbs)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
			Expect(err.Error()).To(ContainSubstring(want))
		},
		Entry("a zero default", agentsv1alpha1.ClaimLifetime{Default: &metav1.Duration{}},
			`spec.claimLifetime.default: Invalid value: "0s": must be a positive duration, e.g. 10m or 2h`),
		Entry("a negative maximum", agentsv1alpha1.ClaimLifetime{Max: &metav1.Duration{Duration: -time.Minute}},
			`spec.claimLifetime.max: Invalid value: "-1m0s": must be a positive duration`),
		Entry("a default longer than the maximum", agentsv1alpha1.ClaimLifetime{Default: &metav1.Duration{Duration: 2 * time.Hour}, Max: &metav1.Duration{Duration: time.Hour}},
			`spec.claimLifetime.default: Invalid value: "2h0m0s": must not be longer than claimLifetime.max (1h0m0s)`),
	)
})

func getPodAnnotations(ctx context.Context, pod *corev1.Pod) map[string]string {
	GinkgoHelper()
	stored := &corev1.Pod{}
	Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(pod), stored)).To(Succeed())
	return stored.Annotations
}
