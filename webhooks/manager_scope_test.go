package webhooks

import (
	"errors"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sandboxset/warmpool/test/envtestenv"
)

// The manager's RBAC lets it write Pods in every namespace; the
// manager-scope policy (config/policies) keeps those writes to pool Pods.
var _ = Describe("The manager's scope", func() {
	It("refuses the manager's identity any write to a Pod outside a pool, naming the rule", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		manager, err := env.UserClient(envtestenv.ManagerUser)
		Expect(err).NotTo(HaveOccurred())
		want := "rule manager-scope: the SandboxSet manager (" + envtestenv.ManagerUser +
			") writes only pool Pods, labelled agents.kruise.io/sandboxset; web is not one"
		workload := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:alpine"}}},
		}

		By("creating one")
		Eventually(func() error {
			err := manager.Create(ctx, workload.DeepCopy())
			if err == nil {
				Expect(adminClient.Delete(ctx, workload.DeepCopy())).To(Succeed())
				return errors.New("created: the policy is not in force yet")
			}
			return err
		}, timeout, interval).Should(MatchError(ContainSubstring(want)))
		Expect(manager.Create(ctx, workload.DeepCopy(), client.DryRunAll)).To(Succeed(),
			"a dry run stores nothing: the cold-claim check dry-runs templates as Pods outside any pool")

		Expect(adminClient.Create(ctx, workload)).To(Succeed())
		By("changing one")
		err = manager.Patch(ctx, workload.DeepCopy(), client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"labels":{"app":"evil"}}}`)))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err).To(MatchError(ContainSubstring(want)))
		By("deleting one")
		err = manager.Delete(ctx, workload.DeepCopy())
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err).To(MatchError(ContainSubstring(want)))
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(workload), &corev1.Pod{})).To(Succeed(), "still there")
	})

	It("refuses the manager's identity NetworkPolicies and Leases outside a pool, but for its own leader election", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		manager, err := env.UserClient(envtestenv.ManagerUser)
		Expect(err).NotTo(HaveOccurred())
		Expect(env.BindWideAgentRoles(ctx, ns, envtestenv.ManagerUser)).To(Succeed(), "so that RBAC is not what refuses it")
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "allow-all"}}
		Eventually(func() error {
			err := manager.Create(ctx, np.DeepCopy())
			if err == nil {
				Expect(adminClient.Delete(ctx, np.DeepCopy())).To(Succeed())
				return errors.New("created: the policy is not in force yet")
			}
			return err
		}, timeout, interval).Should(MatchError(ContainSubstring("rule manager-scope: the SandboxSet manager (" + envtestenv.ManagerUser +
			") writes only pool NetworkPolicies, labelled agents.kruise.io/sandboxset; allow-all is not one")))
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kube-scheduler"}}
		err = manager.Create(ctx, lease)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err).To(MatchError(ContainSubstring("writes only pool claim ledgers, labelled agents.kruise.io/sandboxset; kube-scheduler is not one")))

		By("its leader election, in its own namespace")
		own := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sandboxset-system"}}
		Expect(client.IgnoreAlreadyExists(adminClient.Create(ctx, own))).To(Succeed())
		Expect(env.BindWideAgentRoles(ctx, own.Name, envtestenv.ManagerUser)).To(Succeed())
		election := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: own.Name, Name: "sandboxset-manager.agents.kruise.io"}}
		Expect(manager.Create(ctx, election)).To(Succeed())
		Expect(manager.Delete(ctx, election)).To(Succeed())
	})
})
