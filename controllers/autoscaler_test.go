package controllers

import (
	"context"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/controllers/sizing"
)

// The autoscaling loop through a real API server: claims as agents make
// them (label patches), readiness as a kubelet reports it, and the size the
// controller writes to spec.replicas. The sizing itself is tested as pure
// functions in controllers/sizing and demand_test.go.
var _ = Describe("Autoscaling", func() {
	var (
		ns  string
		sbs *agentsv1alpha1.SandboxSet
	)

	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		sbs = newSandboxSet(ns, "auto", 1)
		sbs.Spec.Autoscaling = &agentsv1alpha1.AutoscalingSpec{
			TargetWarmRatio: "0.9", MinReplicas: 1, MaxReplicas: 12,
			ScaleDownDelay: &metav1.Duration{Duration: 3 * time.Second},
			// 00:00 to 00:00 is open all day, every day.
			Schedules: []agentsv1alpha1.AutoscalingSchedule{{Name: "always", Start: "00:00", End: "00:00", MinReplicas: 3}},
		}
	})

	stored := func(ctx context.Context, g Gomega) *agentsv1alpha1.SandboxSet {
		got := &agentsv1alpha1.SandboxSet{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
		return got
	}
	expectSizing := func(ctx context.Context, replicas int32, reason types.GomegaMatcher) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			got := stored(ctx, g)
			g.Expect(got.Spec.Replicas).To(HaveValue(Equal(replicas)))
			g.Expect(got.Status.Autoscaling).NotTo(BeNil())
			g.Expect(got.Status.Autoscaling.DesiredReplicas).To(Equal(replicas))
			g.Expect(got.Status.Autoscaling.Reason).To(reason)
		}, timeout, interval).Should(Succeed())
	}
	expectSize := func(ctx context.Context, replicas int32, reason string) {
		GinkgoHelper()
		expectSizing(ctx, replicas, Equal(reason))
	}

	It("holds the schedule's floor, grows at once on claims, and shrinks after the delay by deleting warm Pods only", func(ctx SpecContext) {
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())

		By("raising the pool to the open schedule's floor")
		expectSize(ctx, 3, "schedule always")
		expectEvent(ctx, sbs, "Autoscaled",
			"Scaled the pool from 1 to 3 sandboxes (schedule always): 0 claims/s, 30s to refill, target 0.9 served warm")
		expectPool(ctx, sbs, 3, 0)
		Eventually(func(g Gomega) {
			out := kubectl(ctx, "get", "sbs", "-n", ns, sbs.Name, "-o", "custom-columns=T:.spec.autoscaling.targetWarmRatio,R:.status.autoscaling.refillSeconds,S:.status.autoscaling.reason", "--no-headers")
			g.Expect(strings.Fields(out)).To(Equal([]string{"0.9", "30", "schedule", "always"}))
		}, timeout, interval).Should(Succeed())

		By("growing when agents claim: no Pod has been seen ready, so each refill is taken to be 30 s")
		var claimed []string
		for i, pod := range podsOf(ctx, Default, sbs) {
			claimPod(ctx, &pod, "agent-"+strconv.Itoa(i))
			claimed = append(claimed, pod.Name)
		}
		// Three claims at once after a quiet spell read as 1.5 claims/s (an
		// onset, over its least span of 2 s), over a 30 s refill: past max.
		Expect(sizing.WarmSize(1.5, 30*time.Second, 0.9, 13)).To(BeNumerically(">", 12), "the test needs demand above max")
		expectSize(ctx, 12, "max")
		Eventually(func(g Gomega) {
			got := stored(ctx, g)
			g.Expect(got.Status.Autoscaling.ArrivalRate).NotTo(Equal("0"))
			g.Expect(got.Status.Autoscaling.RefillSeconds).To(Equal("30"))
			g.Expect(got.Status.Autoscaling.WarmHitRatio).To(Equal("1"), "every claim found a sandbox")
			g.Expect(got.Status.Autoscaling.LastScaleTime).NotTo(BeNil())
		}, timeout, interval).Should(Succeed())
		expectPool(ctx, sbs, 12, 0)

		By("shrinking once the claims leave the short window and the delay has passed")
		// The two-minute window still holds the three claims: 0.025 claims/s.
		quiet := sizing.WarmSize(0.025, 30*time.Second, 0.9, 13)
		Expect(quiet).To(BeNumerically("<", 12))
		if quiet > 3 {
			expectSize(ctx, quiet, "demand")
		} else {
			// At the floor, demand and the schedule agree; either may name it.
			expectSizing(ctx, 3, Or(Equal("demand"), Equal("schedule always")))
		}
		expectPool(ctx, sbs, max(quiet, 3), 0)
		for _, name := range claimed {
			pod := getPod(ctx, Default, ns, name)
			Expect(pod.DeletionTimestamp).To(BeNil(), "a claimed sandbox is never deleted to shrink the pool")
			Expect(pod.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)))
		}
	})

	It("measures the refill time from the Pods' own creation and readiness", func(ctx SpecContext) {
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 3, 0)
		makeReady(ctx, sbs)
		Eventually(func(g Gomega) {
			got := stored(ctx, g)
			g.Expect(got.Status.Autoscaling).NotTo(BeNil())
			refill, err := strconv.ParseFloat(got.Status.Autoscaling.RefillSeconds, 64)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(refill).To(BeNumerically("<", 30), "a measured refill replaces the 30 s guess")
		}, timeout, interval).Should(Succeed())
	})

	It("stops sizing when autoscaling is removed, and spec.replicas rules again", func(ctx SpecContext) {
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectSize(ctx, 3, "schedule always")
		Eventually(func(g Gomega) {
			got := stored(ctx, g)
			got.Spec.Autoscaling = nil
			got.Spec.Replicas = ptr.To[int32](2)
			g.Expect(k8sClient.Update(ctx, got)).To(Succeed())
		}, timeout, interval).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(stored(ctx, g).Status.Autoscaling).To(BeNil())
		}, timeout, interval).Should(Succeed())
		expectPool(ctx, sbs, 2, 0)
		Consistently(func(g Gomega) {
			g.Expect(stored(ctx, g).Spec.Replicas).To(HaveValue(Equal(int32(2))))
		}, holdFor, interval).Should(Succeed())
	})
})
