package main

import (
	"encoding/json"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
		Expect(err).To(MatchError(fmt.Sprintf("SandboxSet %s/demo has no available sandbox (1 creating); retry, use --wait, or --cold-if-empty", ns)))
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
