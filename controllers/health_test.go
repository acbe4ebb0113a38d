package controllers

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/kubelet"
	"github.com/sandboxset/warmpool/test/poolcheck"
)

// What GitOps tools make of a SandboxSet as the API server stores it:
// kstatus (Flux, kpt, cli-utils) and the Argo CD health check in
// config/argocd, run on the same object each time.
var _ = Describe("SandboxSet health for GitOps tools", func() {
	It("reads InProgress while the pool fills or rolls out, and Current once it is full", func(ctx SpecContext) {
		sbs := newSandboxSet(newNamespace(ctx), "demo", 2)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectHealth(ctx, sbs, kstatus.InProgressStatus, agentsv1alpha1.ReasonSandboxesCreating, "0 of 2 sandboxes are available")

		makeReadyWhenCreated(ctx, sbs, 2)
		expectHealth(ctx, sbs, kstatus.CurrentStatus, "", "all 2 sandboxes are available")

		By("changing the template")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		sbs.Spec.Template.Spec.Containers[0].Image = "nginx:1.29-alpine"
		Expect(k8sClient.Update(ctx, sbs)).To(Succeed())
		revision := sbs.Spec.Revision()
		expectHealth(ctx, sbs, kstatus.InProgressStatus, agentsv1alpha1.ReasonRollingUpdate, "sandboxes are at revision "+revision)
		for step := 1; step <= 2; step++ {
			Eventually(func(g Gomega) []corev1.Pod { return updatedPods(ctx, g, sbs, revision) }, timeout, interval).Should(HaveLen(step))
			makeReady(ctx, sbs)
		}
		expectHealth(ctx, sbs, kstatus.CurrentStatus, "", "all 2 sandboxes are available")
	})

	It("reads Failed while a ResourceQuota refuses the Pods, for each new generation too, and recovers", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		quota := setPodQuota(ctx, ns, nil, 1)
		sbs := newSandboxSet(ns, "demo", 2)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectHealth(ctx, sbs, kstatus.FailedStatus, agentsv1alpha1.ReasonQuotaExceeded, "exceeded quota")
		poolcheck.ExpectCondition(ctx, k8sClient, sbs, agentsv1alpha1.ConditionReplicaFailure, metav1.ConditionTrue, agentsv1alpha1.ReasonQuotaExceeded,
			"exceeded quota", timeout, interval)

		By("scaling while blocked: the new generation reads Failed too, not InProgress forever")
		scaleTo(ctx, sbs, 3)
		expectHealth(ctx, sbs, kstatus.FailedStatus, agentsv1alpha1.ReasonQuotaExceeded, "exceeded quota")

		By("raising the quota")
		setPodQuota(ctx, ns, quota, 10)
		makeReadyWhenCreated(ctx, sbs, 3)
		expectHealth(ctx, sbs, kstatus.CurrentStatus, "", "all 3 sandboxes are available")
	})

	It("reads Failed while no node fits the template", func(ctx SpecContext) {
		sbs := newSandboxSet(newNamespace(ctx), "demo", 1)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		var pod corev1.Pod
		Eventually(func(g Gomega) {
			pods := podsOf(ctx, g, sbs)
			g.Expect(pods).To(HaveLen(1))
			pod = pods[0]
		}, timeout, interval).Should(Succeed())
		Expect(kubelet.SetUnschedulable(ctx, k8sClient, &pod, "0/3 nodes are available: 3 Insufficient cpu.")).To(Succeed())
		expectHealth(ctx, sbs, kstatus.FailedStatus, agentsv1alpha1.ReasonUnschedulable, "Insufficient cpu")
	})

	It("reads Failed while the namespace's Pod Security level refuses the Pods", func(ctx SpecContext) {
		// The API server's own PodSecurity admission refuses them: this
		// suite runs no webhook, and nginx as templated here runs as root.
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			GenerateName: "sbs-restricted-",
			Labels:       map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
		}}
		Expect(k8sClient.Create(ctx, ns)).To(Succeed())
		sbs := newSandboxSet(ns.Name, "demo", 2)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectHealth(ctx, sbs, kstatus.FailedStatus, agentsv1alpha1.ReasonPodSecurityViolation, `violates PodSecurity "restricted:latest"`)
		poolcheck.ExpectCondition(ctx, k8sClient, sbs, agentsv1alpha1.ConditionReplicaFailure, metav1.ConditionTrue, agentsv1alpha1.ReasonPodSecurityViolation,
			"violates PodSecurity", timeout, interval)
		Expect(podsOf(ctx, Default, sbs)).To(BeEmpty())
	})
})

// expectHealth waits until kstatus reads the stored SandboxSet as want and
// the Argo CD health check agrees, both with a message that carries reason
// (unless empty) and detail.
func expectHealth(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, want kstatus.Status, reason, detail string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(agentsv1alpha1.GroupVersion.WithKind("SandboxSet"))
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), u)).To(Succeed())
		expectOneKstatusCondition(g, u)

		res, err := kstatus.Compute(u)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.Status).To(Equal(want), "kstatus: %s", res.Message)
		objJSON, err := u.MarshalJSON()
		g.Expect(err).NotTo(HaveOccurred())
		argo, err := runArgoCDHealth(objJSON)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(argo.Status).To(Equal(argoCDStatus[want]), "Argo CD: %s", argo.Message)
		g.Expect(argo.Message).To(ContainSubstring(detail), "Argo CD")
		if reason != "" {
			g.Expect(res.Message).To(And(HavePrefix(reason+": "), ContainSubstring(detail)), "kstatus")
			g.Expect(argo.Message).To(HavePrefix(reason+": "), "Argo CD")
		}
	}, timeout, interval).Should(Succeed())
}

// expectOneKstatusCondition checks the kstatus convention: Reconciling and
// Stalled are present only while True, and never both.
func expectOneKstatusCondition(g Gomega, u *unstructured.Unstructured) {
	sbs := &agentsv1alpha1.SandboxSet{}
	g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, sbs)).To(Succeed())
	present := 0
	for _, t := range []string{agentsv1alpha1.ConditionReconciling, agentsv1alpha1.ConditionStalled} {
		if c := meta.FindStatusCondition(sbs.Status.Conditions, t); c != nil {
			present++
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), t)
		}
	}
	g.Expect(present).To(BeNumerically("<=", 1), "Reconciling and Stalled at once")
}
