// Package poolcheck holds what the envtest and e2e suites check about a
// SandboxSet's pool, read straight from the API server.
package poolcheck

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2" //nolint:revive // Ginkgo's DSL
	. "github.com/onsi/gomega"    //nolint:revive // Gomega's DSL
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// Pods lists a pool's Pods; with a state, only those in that state.
func Pods(ctx context.Context, g Gomega, c client.Client, sbs *agentsv1alpha1.SandboxSet, state ...agentsv1alpha1.SandboxState) []corev1.Pod {
	selector := client.MatchingLabels{agentsv1alpha1.LabelSandboxSet: sbs.Name}
	if len(state) == 1 {
		selector[agentsv1alpha1.LabelState] = string(state[0])
	}
	list := &corev1.PodList{}
	g.Expect(c.List(ctx, list, client.InNamespace(sbs.Namespace), selector)).To(Succeed())
	return list.Items
}

// ExpectPool waits until the status, for the current generation, shows the
// pool at replicas/available, and that many Pods are labelled available.
func ExpectPool(ctx context.Context, c client.Client, sbs *agentsv1alpha1.SandboxSet, replicas, available int32, timeout, interval time.Duration) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		got := &agentsv1alpha1.SandboxSet{}
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
		g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation), "status.observedGeneration")
		g.Expect(got.Status.Replicas).To(Equal(replicas), "status.replicas")
		g.Expect(got.Status.AvailableReplicas).To(Equal(available), "status.availableReplicas")
		g.Expect(Pods(ctx, g, c, sbs, agentsv1alpha1.StateAvailable)).To(HaveLen(int(available)), "Pods labelled available")
	}, timeout, interval).Should(Succeed())
}

// ExpectCondition waits until the SandboxSet's condition condType has the
// given status and reason, and a message containing message.
func ExpectCondition(ctx context.Context, c client.Client, sbs *agentsv1alpha1.SandboxSet, condType string,
	status metav1.ConditionStatus, reason, message string, timeout, interval time.Duration) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		got := &agentsv1alpha1.SandboxSet{}
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
		cond := meta.FindStatusCondition(got.Status.Conditions, condType)
		g.Expect(cond).NotTo(BeNil(), condType)
		g.Expect(cond.Status).To(Equal(status), condType)
		g.Expect(cond.Reason).To(Equal(reason), condType)
		g.Expect(cond.Message).To(ContainSubstring(message), condType)
	}, timeout, interval).Should(Succeed())
}
