package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/podtrack"
)

// The agent examples in api/python and api/typescript, run as an agent would
// run them: under a ServiceAccount bound to config/rbac/agent_role.yaml, from
// a kubeconfig that holds only its token. Each script checks the claim
// protocol itself (scenario.py, scenario.ts: a 422 naming the field, 20
// workers racing for 4 sandboxes, a 409 naming the holder, renewal, release
// and a waiting agent's watch) and prints who holds what; here the stored
// outcome is checked through the API.
var _ = Describe("Agent examples", func() {
	const (
		sandboxes = 4
		workers   = 20
		agentSA   = "agent"
	)
	var (
		ns, agentKubeconfig string
		sbs                 *agentsv1alpha1.SandboxSet
		creation            *podtrack.Creations
	)

	// A namespace whose quota lets exactly 4 Pods exist, a full pool of 4
	// with a claimLifetime the scripts' 422s rely on (max 1h), and the agent.
	BeforeEach(func(ctx SpecContext) {
		ns, creation = countedNamespace(ctx)
		quota := &corev1.ResourceQuota{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pods"},
			Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: *resource.NewQuantity(sandboxes, resource.DecimalSI)}},
		}
		Expect(k8sClient.Create(ctx, quota)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(quota), quota)).To(Succeed())
			g.Expect(quota.Status.Hard).NotTo(BeEmpty(), "the quota controller has computed the quota")
		}, timeout, interval).Should(Succeed())
		sbs = newSandboxSet(ns, "demo", sandboxes)
		sbs.Spec.ClaimLifetime = &agentsv1alpha1.ClaimLifetime{
			Default: &metav1.Duration{Duration: 10 * time.Minute},
			Max:     &metav1.Duration{Duration: time.Hour},
		}
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())

		for _, args := range [][]string{
			{"apply", "-f", filepath.Join("..", "..", "config", "rbac", "agent_role.yaml")},
			{"create", "serviceaccount", agentSA},
			{"create", "rolebinding", agentSA, "--role=sandbox-agent", "--serviceaccount=" + ns + ":" + agentSA},
		} {
			out, err := kubectl(ctx, append([]string{"-n", ns}, args...)...)
			Expect(err).NotTo(HaveOccurred(), out)
		}
		agentKubeconfig = verifiedServiceAccountKubeconfig(ctx, ns, agentSA)
		expectPool(ctx, sbs, sandboxes, sandboxes)
	})

	// run runs an example's scenario as the agent and returns its last line.
	run := func(ctx context.Context, env []string, dir, name string, args ...string) string {
		GinkgoHelper()
		cmd := exec.CommandContext(ctx, name, append(args, "--namespace", ns, "--pool", sbs.Name,
			"--sandboxes", strconv.Itoa(sandboxes), "--workers", strconv.Itoa(workers))...)
		cmd.Dir = dir
		cmd.Env = append(withoutEnv(os.Environ(), "KUBECONFIG"), append(env, "KUBECONFIG="+agentKubeconfig)...)
		var stdout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, GinkgoWriter
		start := time.Now()
		Expect(cmd.Run()).To(Succeed(), "%s %v; stdout:\n%s", name, args, stdout.String())
		AddReportEntry("scenario", time.Since(start).Round(time.Millisecond).String())
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		return lines[len(lines)-1]
	}

	// expectOutcome checks, through the API, what the scenario says it left:
	// 4 sandboxes, each claimed once, by 4 distinct agents, as the agent's
	// ServiceAccount; the released one gone and replaced once.
	expectOutcome := func(ctx context.Context, last string) {
		GinkgoHelper()
		var outcome struct {
			Holders  map[string]string `json:"holders"`
			Released string            `json:"released"`
		}
		Expect(json.Unmarshal([]byte(last), &outcome)).To(Succeed(), last)
		Expect(outcome.Holders).To(HaveLen(sandboxes))
		agents := map[string]string{}
		for name, agent := range outcome.Holders {
			Expect(agents).NotTo(HaveKey(agent), "%s holds two sandboxes: %s and %s", agent, agents[agent], name)
			agents[agent] = name
		}
		Expect(agents).To(HaveKey("agent-waiting"))

		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: outcome.Released}, &corev1.Pod{}))
		}, timeout, interval).Should(BeTrue(), "the released sandbox is deleted")
		stored := map[string]string{}
		for _, pod := range podsOf(ctx, Default, sbs) {
			Expect(pod.Labels).To(HaveKey(agentsv1alpha1.LabelClaimedBy), "no warm sandbox is left: the quota is full")
			Expect(pod.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)))
			Expect(pod.Annotations).To(HaveKeyWithValue(agentsv1alpha1.AnnotationClaimedByUser, "system:serviceaccount:"+ns+":"+agentSA))
			Expect(pod.OwnerReferences).To(BeEmpty())
			stored[pod.Name] = pod.Labels[agentsv1alpha1.LabelClaimedBy]
		}
		Expect(stored).To(Equal(outcome.Holders), "the stored claims are the ones the scenario reports")
		expectCreations(creation, sandboxes+1) // the pool, and the released sandbox's replacement
	}

	It("Python: claims with the official kubernetes client, one winner per sandbox", NodeTimeout(5*time.Minute), func(ctx SpecContext) {
		// make test's cluster-tools fetched it; this is for a focused run.
		fetch := exec.CommandContext(ctx, filepath.Join("..", "tools", "build.sh"), "python-client", "--pythonpath")
		fetch.Stderr = GinkgoWriter
		out, err := fetch.Output()
		Expect(err).NotTo(HaveOccurred(), "test/tools/build.sh python-client")
		pythonpath := strings.TrimSpace(string(out))
		// Debian's own Python, whose dist-packages hold the rest of what
		// python3-kubernetes needs, not whatever python3 is first on PATH.
		last := run(ctx, []string{"PYTHONPATH=" + pythonpath, "PYTHONNOUSERSITE=1", "PYTHONDONTWRITEBYTECODE=1"},
			filepath.Join("..", "..", "api", "python"), "/usr/bin/python3", "scenario.py")
		expectOutcome(ctx, last)
	})

	It("TypeScript: claims with @kubernetes/client-node, one winner per sandbox", NodeTimeout(5*time.Minute), func(ctx SpecContext) {
		dir := filepath.Join("..", "..", "api", "typescript")
		for _, args := range [][]string{
			{"npm", "ci", "--prefer-offline", "--no-audit", "--no-fund"}, // the versions package-lock.json pins
			{filepath.Join("node_modules", ".bin", "tsc"), "-p", "."},
		} {
			cmd := exec.CommandContext(ctx, args[0], args[1:]...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "%v:\n%s", args, out)
		}
		last := run(ctx, nil, dir, "node", filepath.Join("dist", "scenario.js"))
		expectOutcome(ctx, last)
	})
})

// verifiedServiceAccountKubeconfig is serviceAccountKubeconfig's kubeconfig
// (the ServiceAccount's token and no client certificate, its identity
// asserted) with the API server's certificate verified against the cluster's
// CA, as a real agent's would be: clients that are told to skip verification
// warn on every request.
func verifiedServiceAccountKubeconfig(ctx context.Context, ns, name string) string {
	GinkgoHelper()
	path := serviceAccountKubeconfig(ctx, ns, name)
	ca, err := kubectl(ctx, "config", "view", "--raw", "--minify", "-o", "jsonpath={.clusters[0].cluster.certificate-authority}")
	Expect(err).NotTo(HaveOccurred(), ca)
	out, err := exec.CommandContext(ctx, "kubectl", "config", "--kubeconfig", path, "set-cluster", "local",
		"--insecure-skip-tls-verify=false", "--certificate-authority", ca, "--embed-certs").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	out, err = exec.CommandContext(ctx, "kubectl", "--kubeconfig", path, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	Expect(string(out)).To(Equal("system:serviceaccount:"+ns+":"+name), "the agent's kubeconfig authenticates as the agent")
	return path
}

// withoutEnv is env without the variable name.
func withoutEnv(env []string, name string) []string {
	var kept []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			kept = append(kept, kv)
		}
	}
	return kept
}
