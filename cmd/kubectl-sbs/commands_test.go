package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sandboxset/warmpool/api/claim"
	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

var _ = Describe("kubectl sbs", func() {
	var ns, kubeconfig string

	BeforeEach(func(ctx SpecContext) {
		var err error
		ns, err = env.NewNamespace(ctx, "cli-test-")
		Expect(err).NotTo(HaveOccurred())
		kubeconfig = agentKubeconfig(ctx, ns, "agent-user")
	})

	It("claims a sandbox in the context's namespace and prints its Pod and IP", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 1, true)
		out, _, err := sbs(ctx, "--kubeconfig", kubeconfig, "claim", "demo", "--by", "agent-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(MatchRegexp(`^demo-[a-z0-9]{5} 10\.0\.0\.1\n$`))

		pod := &corev1.Pod{}
		Expect(env.Admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: out[:len("demo-xxxxx")]}, pod)).To(Succeed())
		Expect(pod.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, "agent-1"))
	})

	It("prints the claim as JSON, then lists, shows and releases it", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 2, true)
		out, _, err := sbs(ctx, "--kubeconfig", kubeconfig, "-n", ns, "claim", "demo", "--by", "agent-1", "-o", "json")
		Expect(err).NotTo(HaveOccurred())
		var sbx claim.Sandbox
		Expect(json.Unmarshal([]byte(out), &sbx)).To(Succeed())
		Expect(sbx.Namespace).To(Equal(ns))
		Expect(sbx.SandboxSet).To(Equal("demo"))
		Expect(sbx.Agent).To(Equal("agent-1"))
		Expect(sbx.IP).To(Equal("10.0.0.1"))
		Expect(sbx.Attempts).To(Equal(1))
		Expect(sbx.ClaimedAt).NotTo(BeZero())
		var fields map[string]any
		Expect(json.Unmarshal([]byte(out), &fields)).To(Succeed())
		Expect(fields).To(HaveKey("sandboxSet"))
		Expect(fields).To(HaveKey("claimedAt"))
		Expect(fields).To(HaveKey("latencyNanoseconds"))
		Expect(fields).To(HaveKeyWithValue("cold", false))

		Eventually(func(g Gomega) {
			out, _, err := sbs(ctx, "--kubeconfig", kubeconfig, "list")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(out).To(MatchRegexp(`^NAME +REPLICAS +AVAILABLE +UPDATEREVISION\ndemo +2 +1 +[a-z0-9]+\n$`))
		}, timeout, interval).Should(Succeed())

		out, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "get", "demo")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(MatchRegexp(`\n\nNAME +AGENT +CLAIMED-AT +SHUTDOWN-TIME +IP\n%s +agent-1 +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +<none> +10\.0\.0\.1\n$`, sbx.Name))

		out, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "release", sbx.Name)
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(Equal(fmt.Sprintf("sandbox %s released\n", sbx.Name)))
		err = env.Admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: sbx.Name}, &corev1.Pod{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})

	It("says why nothing could be claimed", func(ctx SpecContext) {
		_, _, err := sbs(ctx, "--kubeconfig", kubeconfig, "claim", "nope", "--by", "agent-1")
		Expect(err).To(MatchError(fmt.Sprintf("no SandboxSet nope in namespace %s", ns)))

		newPool(ctx, ns, "demo", 1, false)
		_, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "claim", "demo", "--by", "agent-1")
		Expect(err).To(MatchError(fmt.Sprintf("SandboxSet %s/demo has no available sandbox (1 creating); retry, wait for one (--wait 30s), or claim cold (--cold-if-empty)", ns)))
		_, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "claim", "demo", "--by", "agent-1", "--wait", "200ms")
		Expect(err).To(MatchError(fmt.Sprintf("SandboxSet %s/demo had no available sandbox after waiting 200ms (1 creating); wait longer, or claim cold (--cold-if-empty)", ns)))

		newPool(ctx, ns, "idle", 0, false)
		_, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "claim", "idle", "--by", "agent-1", "--wait", "200ms")
		Expect(err).To(MatchError(fmt.Sprintf("SandboxSet %s/idle is scaled to 0: it keeps no warm sandboxes; scale it up (kubectl scale sbs idle --replicas=N), or claim cold (--cold-if-empty)", ns)))
	})

	It("says a cold sandbox is still starting", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 1, false)
		Expect(env.Admin.Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "create-pods"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create"}}},
		})).To(Succeed())
		Expect(env.BindRole(ctx, ns, "create-pods", "agent-user")).To(Succeed())
		out, _, err := sbs(ctx, "--kubeconfig", kubeconfig, "claim", "demo", "--by", "agent-1", "--cold-if-empty")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(MatchRegexp(`^demo-[a-z0-9]{5} \(cold: starting, no IP yet\)\n$`))
	})

	It("releases a sandbox that is already gone, and lists only live ones", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 2, true)
		out, _, err := sbs(ctx, "--kubeconfig", kubeconfig, "claim", "demo", "--by", "agent-1")
		Expect(err).NotTo(HaveOccurred())
		name := strings.Fields(out)[0]
		out, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "release", name)
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(Equal(fmt.Sprintf("sandbox %s released\n", name)))
		out, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "release", name)
		Expect(err).NotTo(HaveOccurred(), "a second release finds nothing to do")
		Expect(out).To(Equal(fmt.Sprintf("sandbox %s released\n", name)))

		By("holding the next claim's deletion open with a finalizer, as a runtime might")
		out, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "claim", "demo", "--by", "agent-1")
		Expect(err).NotTo(HaveOccurred())
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: strings.Fields(out)[0]}}
		Expect(env.Admin.Patch(ctx, pod, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":["example.com/hold"]}}`)))).To(Succeed())
		DeferCleanup(func(ctx SpecContext) {
			Expect(env.Admin.Patch(ctx, pod, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))).To(Succeed())
		})
		_, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "release", pod.Name)
		Expect(err).NotTo(HaveOccurred())
		_, errOut, err := sbs(ctx, "--kubeconfig", kubeconfig, "get", "demo")
		Expect(err).NotTo(HaveOccurred())
		Expect(errOut).To(Equal("\nNo sandboxes claimed from demo.\n"), "the terminating sandbox is not listed")
	})

	It("lists the pools of every namespace with -A", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 1, false)
		out, _, err := sbs(ctx, "--kubeconfig", kubeconfig, "list")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(MatchRegexp(`^NAME +REPLICAS +AVAILABLE +UPDATEREVISION\ndemo +1 +0 +[a-z0-9]+\n$`))

		// The agent Role is namespaced: listing every namespace needs a
		// cluster-wide read, as it does in kubectl.
		_, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "list", "-A")
		Expect(err).To(MatchError(And(
			HavePrefix("not allowed to list sandboxsets in all namespaces: "),
			ContainSubstring(`User "agent-user" cannot list resource "sandboxsets"`),
			HaveSuffix("listing every namespace needs list on sandboxsets in a ClusterRole; the agent Role is namespaced"))))
		admin, err := env.Kubeconfig("cli-admin", "system:masters")
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(GinkgoT().TempDir(), "admin")
		Expect(os.WriteFile(path, admin, 0o600)).To(Succeed())
		out, _, err = sbs(ctx, "--kubeconfig", path, "list", "-A")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(HavePrefix("NAMESPACE "))
		Expect(out).To(MatchRegexp(`\n%s +demo +1 +0 +[a-z0-9]+\n`, ns))
	})

	It("says what a command wants when it is used wrongly, before any call", func(ctx SpecContext) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"claim", "--by", "agent-1"}, "claim takes the SandboxSet to claim from, got 0 arguments\nUsage: kubectl sbs claim SANDBOXSET --by AGENT [flags]"},
			{[]string{"release"}, "release takes the sandbox Pod to release, got 0 arguments\nUsage: kubectl sbs release POD [flags]"},
			{[]string{"claim", "demo", "--by", "agent 1"}, `agent id "agent 1" is not usable as a label value: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, e.g. agent-1`},
			{[]string{"claim", "demo", "--by", "agent-1", "--max-attempts", "0"}, "--max-attempts must be at least 1, not 0"},
			{[]string{"claim", "demo", "--by", "agent-1", "--wait", "-5s"}, "--wait must be 0 or a positive duration such as 30s, not -5s"},
			{[]string{"claim", "demo", "--by", "agent-1", "--ttl", "-1m"}, "--ttl must be a positive duration such as 10m, not -1m0s"},
			{[]string{"claim", "demo", "--by", "agent-1", "--wait", "5"}, "invalid argument \"5\" for \"--wait\" flag: time: missing unit in duration \"5\"\nSee 'kubectl sbs claim --help' for usage"},
		} {
			_, _, err := sbs(ctx, append([]string{"--kubeconfig", kubeconfig}, c.args...)...)
			Expect(err).To(MatchError(c.want), "kubectl sbs %s", strings.Join(c.args, " "))
		}
	})

	It("says where to find a kubeconfig when there is none", func(ctx SpecContext) {
		missing := filepath.Join(GinkgoT().TempDir(), "none")
		GinkgoT().Setenv("KUBECONFIG", missing)
		_, _, err := sbs(ctx, "list")
		Expect(err).To(MatchError("no kubeconfig: set KUBECONFIG or pass --kubeconfig; kubectl sbs reads the same configuration as kubectl"))
	})

	It("prints its version, and help that leads with its commands", func(ctx SpecContext) {
		out, _, err := sbs(ctx, "version")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(MatchRegexp(`^kubectl-sbs \S+`))

		out, _, err = sbs(ctx, "--help")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("Examples:\n  kubectl sbs list\n"))
		Expect(out).To(ContainSubstring(`so "kubectl -n team-a sbs list" fails where "kubectl sbs -n team-a list" works.`))
		Expect(out).To(ContainSubstring("      --kubeconfig string"))
		Expect(out).NotTo(ContainSubstring("--client-certificate"), "kubectl's other connection flags work, but are not listed")

		out, _, err = sbs(ctx, "claim", "--help")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(MatchRegexp(`--wait duration +How long to wait for a sandbox to become available when none is, e\.g\. 30s or 2m; 0, the default, does not wait\.\n`))
	})

	It("uses the kubeconfig's contexts and refuses bad flags before claiming", func(ctx SpecContext) {
		_, _, err := sbs(ctx, "--kubeconfig", kubeconfig, "--context", "nope", "list")
		Expect(err).To(MatchError(ContainSubstring(`context "nope" does not exist`)))
		_, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "claim", "demo")
		Expect(err).To(MatchError(`required flag(s) "by" not set`))
		_, _, err = sbs(ctx, "--kubeconfig", kubeconfig, "claim", "demo", "--by", "agent-1", "-o", "yaml")
		Expect(err).To(MatchError(`unknown output format "yaml": want json, or none for text`))
		_, errOut, err := sbs(ctx, "--kubeconfig", kubeconfig, "list")
		Expect(err).NotTo(HaveOccurred())
		Expect(errOut).To(Equal(fmt.Sprintf("No SandboxSets found in %s namespace.\n", ns)))
	})
})
