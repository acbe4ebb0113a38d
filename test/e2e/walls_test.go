package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// The sandbox's own walls on the local cluster, through kubectl, as
// ServiceAccounts whose kubeconfigs hold only their tokens: agent-r holds
// the example agent Role, agent-w and agent-v also the built-in edit
// ClusterRole (aggregated by the cluster's controller-manager) and
// explicit grants on every Pod subresource, so that RBAC is not what
// refuses them. The local cluster enforces no NetworkPolicy: here the
// policy's life is checked; its meaning is in controllers (cyclonus).
var _ = Describe("The sandbox's walls", Ordered, func() {
	var (
		ns        string
		kubeconfs = map[string]string{}
	)
	as := func(ctx context.Context, agent string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfs[agent], "-n", ns}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	expectRefused := func(out string, err error, want string) {
		GinkgoHelper()
		Expect(err).To(HaveOccurred(), "admitted: %s", out)
		Expect(out).To(ContainSubstring(want))
	}

	BeforeAll(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		out, err := kubectl(ctx, "-n", ns, "apply", "-f", filepath.Join("..", "..", "config", "rbac", "agent_role.yaml"))
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = kubectl(ctx, "-n", ns, "create", "role", "every-pod-subresource", "--verb=get,create,update,patch",
			"--resource=pods/exec,pods/attach,pods/portforward,pods/proxy,pods/eviction,pods/status,pods/ephemeralcontainers,pods/resize")
		Expect(err).NotTo(HaveOccurred(), out)
		for _, agent := range []string{"agent-r", "agent-w", "agent-v"} {
			for _, args := range [][]string{
				{"create", "serviceaccount", agent},
				{"create", "rolebinding", agent, "--role=sandbox-agent", "--serviceaccount=" + ns + ":" + agent},
			} {
				out, err := kubectl(ctx, append([]string{"-n", ns}, args...)...)
				Expect(err).NotTo(HaveOccurred(), out)
			}
			if agent != "agent-r" {
				for _, args := range [][]string{
					{"create", "rolebinding", agent + "-edit", "--clusterrole=edit", "--serviceaccount=" + ns + ":" + agent},
					{"create", "rolebinding", agent + "-subresources", "--role=every-pod-subresource", "--serviceaccount=" + ns + ":" + agent},
				} {
					out, err := kubectl(ctx, append([]string{"-n", ns}, args...)...)
					Expect(err).NotTo(HaveOccurred(), out)
				}
			}
			kubeconfs[agent] = serviceAccountKubeconfig(ctx, ns, agent) // asserts the identity
		}
		// edit is aggregated by the controller-manager: wait until it grants exec.
		Eventually(func() (string, error) {
			return as(ctx, "agent-w", "auth", "can-i", "create", "pods/exec")
		}, timeout, interval).Should(Equal("yes\n"))
	})

	It("keeps a NetworkPolicy for the pool that follows its spec and goes with it", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "isolated", 1)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		np := &networkingv1.NetworkPolicy{}
		key := client.ObjectKey{Namespace: ns, Name: "isolated-sandboxes"}
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, np)).To(Succeed())
			g.Expect(np.Spec.Ingress).To(BeEmpty())
			g.Expect(np.Spec.PodSelector.MatchLabels).To(Equal(map[string]string{agentsv1alpha1.LabelSandboxSet: "isolated"}))
			g.Expect(metav1.IsControlledBy(np, sbs)).To(BeTrue())
		}, timeout, interval).Should(Succeed())

		By("opening ingress from a gateway")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
			sbs.Spec.Network.Ingress = []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "gateway"}}}},
			}}
			g.Expect(k8sClient.Update(ctx, sbs)).To(Succeed())
		}, timeout, interval).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, np)).To(Succeed())
			g.Expect(np.Spec.Ingress).To(HaveLen(1))
		}, timeout, interval).Should(Succeed())

		By("refusing an agent holding edit that widens or deletes it")
		out, err := as(ctx, "agent-w", "patch", "networkpolicy", key.Name, "--type=merge", "-p", `{"spec":{"ingress":[{}]}}`)
		expectRefused(out, err, "rule pool-objects: NetworkPolicy isolated-sandboxes belongs to SandboxSet isolated; only the SandboxSet operator writes it")
		out, err = as(ctx, "agent-w", "delete", "networkpolicy", key.Name)
		expectRefused(out, err, "rule pool-objects")

		By("deleting the SandboxSet: the garbage collector takes the policy")
		Expect(k8sClient.Delete(ctx, sbs)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, key, &networkingv1.NetworkPolicy{}))
		}, timeout, interval).Should(BeTrue())
	})

	It("lets only the holder exec into a sandbox, and nobody into a warm one", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "shells", 2)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 2, 2)
		warm := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)
		held, other := warm[0].Name, warm[1].Name
		out, err := as(ctx, "agent-w", "label", "pod", held, agentsv1alpha1.LabelClaimedBy+"=agent-1")
		Expect(err).NotTo(HaveOccurred(), out)
		expectPool(ctx, sbs, 2, 2)

		out, err = as(ctx, "agent-v", "exec", other, "--", "true")
		expectRefused(out, err, "rule warm-connect: "+other+" is a warm sandbox of SandboxSet shells")
		out, err = as(ctx, "agent-v", "exec", held, "--", "true")
		expectRefused(out, err, fmt.Sprintf("rule holder-only: sandbox %s is claimed by agent-1 (system:serviceaccount:%s:agent-w); only that identity may exec into it, not system:serviceaccount:%s:agent-v", held, ns, ns))
		out, err = as(ctx, "agent-v", "port-forward", "pod/"+held, "18999:80")
		expectRefused(out, err, "only that identity may port-forward to it")
		out, err = as(ctx, "agent-r", "exec", held, "--", "true")
		expectRefused(out, err, `cannot create resource "pods/exec"`) // RBAC: the agent Role grants no exec

		By("the holder's exec passes admission; the simulated node has no container to run it in")
		out, err = as(ctx, "agent-w", "exec", held, "--", "true")
		Expect(out).NotTo(ContainSubstring("admission webhook"), "err: %v", err)
		Expect(out).NotTo(ContainSubstring("Forbidden"))
	})

	It("refuses at kubectl apply a template the namespace's Pod Security level refuses", func(ctx SpecContext) {
		strict := newNamespace(ctx)
		out, err := kubectl(ctx, "label", "namespace", strict, "pod-security.kubernetes.io/enforce=restricted")
		Expect(err).NotTo(HaveOccurred(), out)
		sample, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "agents_v1alpha1_sandboxset.yaml"))
		Expect(err).NotTo(HaveOccurred())
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "-n", strict, "apply", "-f", "-")
		cmd.Stdin = strings.NewReader(strings.Replace(string(sample), "  namespace: default\n", "", 1))
		raw, err := cmd.CombinedOutput()
		out = string(raw)
		expectRefused(out, err, `spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation: Forbidden: rule pod-security: violates PodSecurity "restricted:latest", namespace `+strict+"'s enforce level")
		Expect(out).To(ContainSubstring("spec.template.spec.containers[0].securityContext.runAsNonRoot: Forbidden"))
	})

	It("ends 20 claims at once by one ServiceAccount with exactly its limit held", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "limited", 20)
		sbs.Spec.MaxHeldPerIdentity = ptr.To[int32](3)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 20, 20)
		warm := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)
		Expect(warm).To(HaveLen(20))
		var mu sync.Mutex
		var refusals []string
		admitted := 0
		var wg sync.WaitGroup
		for i := range warm {
			wg.Go(func() {
				out, err := as(ctx, "agent-r", "label", "pod", warm[i].Name, fmt.Sprintf("%s=worker-%d", agentsv1alpha1.LabelClaimedBy, i))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					refusals = append(refusals, out)
				} else {
					admitted++
				}
			})
		}
		wg.Wait()
		Expect(admitted).To(Equal(3))
		Expect(refusals).To(HaveLen(17))
		for _, out := range refusals {
			Expect(out).To(ContainSubstring("rule held-limit: system:serviceaccount:" + ns + ":agent-r already holds 3 of SandboxSet limited's sandboxes"))
			Expect(out).To(ContainSubstring("release one"))
		}
		held := 0
		for _, pod := range podsOf(ctx, Default, sbs) {
			if pod.Annotations[agentsv1alpha1.AnnotationClaimedByUser] == "system:serviceaccount:"+ns+":agent-r" {
				held++
			}
		}
		Expect(held).To(Equal(3))
	})
})
