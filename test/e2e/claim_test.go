package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sandboxset/warmpool/api/claim"
	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

var _ = Describe("Agents claiming", func() {
	var ns string
	BeforeEach(func(ctx SpecContext) { ns = newNamespace(ctx) })

	It("serves 60 concurrent agents from a pool of 40, each sandbox to exactly one", func(ctx SpecContext) {
		creation := countCreations(ns)
		sbs := newSandboxSet(ns, "demo", 40)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 40, 40)

		c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		agents := claim.New(c)
		var mu sync.Mutex
		won := map[string]string{} // pod → agent
		var wg sync.WaitGroup
		for i := range 60 {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				agent := fmt.Sprintf("agent-%d", i)
				// The last 20 wait for the refill the first 40 trigger.
				sbx, err := agents.Claim(ctx, ns, "demo", agent, claim.ClaimOptions{Wait: timeout, MaxAttempts: 20})
				Expect(err).NotTo(HaveOccurred(), agent)
				mu.Lock()
				defer mu.Unlock()
				Expect(won).NotTo(HaveKey(sbx.Name), "%s was given to two agents", sbx.Name)
				won[sbx.Name] = agent
			}()
		}
		wg.Wait()
		Expect(won).To(HaveLen(60))
		for name, agent := range won {
			Expect(getPod(ctx, Default, ns, name).Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, agent))
		}
		expectPool(ctx, sbs, 40, 40)
		expectCreations(creation, 100)
	})

	Describe("through kubectl-sbs", Ordered, func() {
		var cli string
		BeforeAll(func(ctx SpecContext) {
			cli = filepath.Join(GinkgoT().TempDir(), "kubectl-sbs")
			out, err := exec.CommandContext(ctx, "go", "build", "-o", cli, "../../cmd/kubectl-sbs").CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
		})
		run := func(ctx context.Context, kubeconfigPath string, args ...string) (string, error) {
			out, err := exec.CommandContext(ctx, cli, append([]string{"--kubeconfig", kubeconfigPath, "-n", ns}, args...)...).CombinedOutput()
			return string(out), err
		}

		It("claims, shows and releases a sandbox", func(ctx SpecContext) {
			sbs := newSandboxSet(ns, "demo", 2)
			Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
			expectPool(ctx, sbs, 2, 2)
			out, err := run(ctx, kubeconfig, "claim", "demo", "--by", "agent-1")
			Expect(err).NotTo(HaveOccurred(), out)
			fields := strings.Fields(out)
			Expect(fields).To(HaveLen(2), out)
			Expect(fields[1]).To(MatchRegexp(`^\d+\.\d+\.\d+\.\d+$`), "the sandbox's IP")
			Expect(getPod(ctx, Default, ns, fields[0]).Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, "agent-1"))

			out, err = run(ctx, kubeconfig, "claim", "demo", "--by", "agent-2", "-o", "json")
			Expect(err).NotTo(HaveOccurred(), out)
			var sbx claim.Sandbox
			Expect(json.Unmarshal([]byte(out), &sbx)).To(Succeed(), out)
			Expect(sbx.Agent).To(Equal("agent-2"))
			Expect(sbx.Cold).To(BeFalse())

			out, err = run(ctx, kubeconfig, "get", "demo")
			Expect(err).NotTo(HaveOccurred(), out)
			Expect(out).To(ContainSubstring(fields[0]))
			Expect(out).To(ContainSubstring("agent-2"))

			out, err = run(ctx, kubeconfig, "release", fields[0])
			Expect(err).NotTo(HaveOccurred(), out)
			Eventually(func(g Gomega) {
				g.Expect(podsOf(ctx, g, sbs)).NotTo(ContainElement(HaveField("Name", fields[0])))
			}, timeout, interval).Should(Succeed())
		})

		It("says why nothing could be claimed", func(ctx SpecContext) {
			sbs := newSandboxSet(ns, "empty", 0)
			Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
			out, err := run(ctx, kubeconfig, "claim", "nope", "--by", "agent-1")
			Expect(err).To(HaveOccurred())
			Expect(out).To(ContainSubstring("no SandboxSet nope in namespace " + ns))
			out, err = run(ctx, kubeconfig, "claim", "empty", "--by", "agent-1")
			Expect(err).To(HaveOccurred())
			Expect(out).To(ContainSubstring("SandboxSet %s/empty is scaled to 0: it keeps no warm sandboxes", ns))

			By("as an identity with no rights in the namespace")
			out, err = kubectl(ctx, "-n", ns, "create", "serviceaccount", "nobody")
			Expect(err).NotTo(HaveOccurred(), out)
			out, err = run(ctx, serviceAccountKubeconfig(ctx, ns, "nobody"), "claim", "empty", "--by", "agent-1")
			Expect(err).To(HaveOccurred())
			Expect(out).To(ContainSubstring("not allowed to list pods in namespace " + ns))
			Expect(out).To(ContainSubstring("config/rbac/agent_role.yaml"))
		})
	})

	It("claims cold from an empty pool when asked, outside the pool", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "demo", 1)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 1, 1)
		c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		agents := claim.New(c)

		warm, err := agents.Claim(ctx, ns, "demo", "agent-warm", claim.ClaimOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(warm.Cold).To(BeFalse())
		start := time.Now()
		cold, err := agents.Claim(ctx, ns, "demo", "agent-cold", claim.ClaimOptions{ColdIfEmpty: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(cold.Cold).To(BeTrue())
		var pod *corev1.Pod
		Eventually(func(g Gomega) {
			pod = getPod(ctx, g, ns, cold.Name)
			g.Expect(agentsv1alpha1.IsPodReady(pod)).To(BeTrue())
		}, timeout, 10*time.Millisecond).Should(Succeed())
		coldReady := time.Since(start)
		Expect(pod.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)))
		Expect(pod.OwnerReferences).To(BeEmpty())
		AddReportEntry("claim latency", fmt.Sprintf("warm: %s until usable; cold: %s to create, %s until Ready",
			warm.Latency.Round(time.Millisecond), cold.Latency.Round(time.Millisecond), coldReady.Round(time.Millisecond)))
		Consistently(func(g Gomega) {
			got := &agentsv1alpha1.SandboxSet{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
			g.Expect(got.Status.Replicas).To(BeNumerically("<=", 1), "a cold sandbox never counts toward the pool")
		}, holdFor, interval).Should(Succeed())
	})
})

// serviceAccountKubeconfig writes a kubeconfig for a ServiceAccount's token.
func serviceAccountKubeconfig(ctx context.Context, ns, name string) string {
	GinkgoHelper()
	token, err := kubectl(ctx, "-n", ns, "create", "token", name)
	Expect(err).NotTo(HaveOccurred(), token)
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	server, err := kubectl(ctx, "config", "view", "--raw", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
	Expect(err).NotTo(HaveOccurred())
	for _, args := range [][]string{
		{"set-cluster", "local", "--server", server, "--insecure-skip-tls-verify"},
		{"set-credentials", name, "--token", strings.TrimSpace(token)},
		{"set-context", "local", "--cluster", "local", "--user", name},
		{"use-context", "local"},
	} {
		out, err := exec.CommandContext(ctx, "kubectl", append([]string{"config", "--kubeconfig", path}, args...)...).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
	}
	// The kubeconfig holds the token and no client certificate, so the API
	// server authenticates the ServiceAccount: ask it (a SelfSubjectReview).
	out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", path, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	Expect(string(out)).To(Equal("system:serviceaccount:"+ns+":"+name), "the agent's kubeconfig authenticates as the agent")
	return path
}
