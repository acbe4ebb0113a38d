package webhooks

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// Autoscaling through the real API server: what the schema and the
// webhook refuse at apply time, and who may size an autoscaled pool. The
// suite's manager runs the controller too, so the autoscaler's own writes
// go through the same webhook.
var _ = Describe("Autoscaling admission", func() {
	autoscaled := func(ns string) *agentsv1alpha1.SandboxSet {
		sbs := newSandboxSet(ns, "auto", 1)
		sbs.Spec.Autoscaling = &agentsv1alpha1.AutoscalingSpec{
			TargetWarmRatio: "0.99", MinReplicas: 2, MaxReplicas: 10,
			Schedules: []agentsv1alpha1.AutoscalingSchedule{{
				Name: "weekdays", Days: []agentsv1alpha1.Weekday{agentsv1alpha1.Monday, agentsv1alpha1.Friday},
				Start: "08:00", End: "18:00", TimeZone: "Europe/Berlin", MinReplicas: 4,
			}},
		}
		return sbs
	}

	DescribeTable("refuses bad autoscaling at create, naming the field",
		func(ctx SpecContext, mutate func(*agentsv1alpha1.AutoscalingSpec), wantField, wantMessage string) {
			sbs := autoscaled(newNamespace(ctx))
			mutate(sbs.Spec.Autoscaling)
			err := adminClient.Create(ctx, sbs)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want an Invalid error, got %v", err)
			Expect(err.Error()).To(ContainSubstring(wantField))
			Expect(err.Error()).To(ContainSubstring(wantMessage))
		},
		Entry("min above max", func(a *agentsv1alpha1.AutoscalingSpec) { a.MinReplicas = 11 },
			"spec.autoscaling.minReplicas", "must not be more than maxReplicas (10)"),
		Entry("a target above 1", func(a *agentsv1alpha1.AutoscalingSpec) { a.TargetWarmRatio = "1.5" },
			"spec.autoscaling.targetWarmRatio", "must be a decimal greater than 0 and at most 1"),
		Entry("a target of 0", func(a *agentsv1alpha1.AutoscalingSpec) { a.TargetWarmRatio = "0" },
			"spec.autoscaling.targetWarmRatio", "must be a decimal greater than 0 and at most 1"),
		Entry("a percentage for a target", func(a *agentsv1alpha1.AutoscalingSpec) { a.TargetWarmRatio = "99%" },
			"spec.autoscaling.targetWarmRatio", "must be a decimal greater than 0 and at most 1"),
		Entry("a time that does not parse", func(a *agentsv1alpha1.AutoscalingSpec) { a.Schedules[0].Start = "8am" },
			"spec.autoscaling.schedules[0].start", "must be a time of day as HH:MM"),
		Entry("an unknown day", func(a *agentsv1alpha1.AutoscalingSpec) { a.Schedules[0].Days = []agentsv1alpha1.Weekday{"Funday"} },
			"spec.autoscaling.schedules[0].days[0]", "Unsupported value"),
		Entry("an unknown time zone", func(a *agentsv1alpha1.AutoscalingSpec) { a.Schedules[0].TimeZone = "Mars/Olympus" },
			"spec.autoscaling.schedules[0].timeZone", "Mars/Olympus"),
		Entry("a schedule's floor above max", func(a *agentsv1alpha1.AutoscalingSpec) { a.Schedules[0].MinReplicas = 11 },
			"spec.autoscaling.schedules[0].minReplicas", "maxReplicas"),
		Entry("a max above the operator's ceiling", func(a *agentsv1alpha1.AutoscalingSpec) { a.MaxReplicas = testMaxReplicas + 1 },
			"spec.autoscaling.maxReplicas", "must be at most 100, the operator's ceiling"),
	)

	It("lets only the autoscaler size an autoscaled pool: a manual edit, kubectl scale and an HPA are refused with the reason", func(ctx SpecContext) {
		sbs := autoscaled(newNamespace(ctx))
		Expect(adminClient.Create(ctx, sbs)).To(Succeed())

		By("the manager's autoscaler raising spec.replicas to minReplicas, through this webhook")
		Eventually(func(g Gomega) {
			g.Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
			g.Expect(sbs.Spec.Replicas).To(HaveValue(BeNumerically(">=", 2)))
			g.Expect(sbs.Status.Autoscaling).NotTo(BeNil())
		}, timeout, interval).Should(Succeed())

		By("refusing a change of spec.replicas, even by a cluster admin")
		err := retryStale(ctx, func() error {
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs); err != nil {
				return err
			}
			sbs.Spec.Replicas = ptr.To(*sbs.Spec.Replicas + 5)
			return adminClient.Update(ctx, sbs)
		})
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.replicas: Forbidden: is set by the autoscaler while spec.autoscaling is present"))

		By("refusing kubectl scale and an HPA, which write the scale subresource")
		err = retryStale(ctx, func() error {
			scale := &autoscalingv1.Scale{}
			if err := adminClient.SubResource("scale").Get(ctx, sbs, scale); err != nil {
				return err
			}
			scale.Spec.Replicas += 5
			return adminClient.SubResource("scale").Update(ctx, sbs, client.WithSubResourceBody(scale))
		})
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.replicas: Forbidden: is set by the autoscaler"))
		Expect(err.Error()).To(ContainSubstring("change spec.autoscaling.minReplicas (2) or spec.autoscaling.maxReplicas (10) instead"))

		By("letting other changes through, and replicas again once autoscaling is removed")
		Expect(retryStale(ctx, func() error {
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs); err != nil {
				return err
			}
			sbs.Spec.Autoscaling.ScaleDownDelay = &metav1.Duration{Duration: 0}
			return adminClient.Update(ctx, sbs)
		})).To(Succeed())
		Expect(retryStale(ctx, func() error {
			if err := adminClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs); err != nil {
				return err
			}
			sbs.Spec.Autoscaling = nil
			sbs.Spec.Replicas = ptr.To[int32](1)
			return adminClient.Update(ctx, sbs)
		})).To(Succeed())
	})
})

// retryStale runs write until its answer is about the request, not a stale
// read: the controller writes the SandboxSet meanwhile.
func retryStale(ctx context.Context, write func() error) error {
	GinkgoHelper()
	var err error
	Eventually(func(g Gomega) {
		err = write()
		g.Expect(apierrors.IsConflict(err)).To(BeFalse(), "retry a stale read")
	}, timeout, interval).Should(Succeed())
	return err
}
