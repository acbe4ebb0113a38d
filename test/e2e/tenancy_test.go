package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// Tenancy on the local cluster: agents are ServiceAccounts bound to
// config/rbac/agent_role.yaml, acting through kubectl and the real API
// server, with the operator installed from config/local. agent-a holds a
// sandbox; agent-b holds none; agent-c may also create Pods. Each attack of
// the tenancy issue must be refused with a message naming the rule, and the
// pool must keep working through the same rules.
var _ = Describe("Tenancy", Ordered, func() {
	var (
		ns        string
		sbs       *agentsv1alpha1.SandboxSet
		kubeconfs = map[string]string{}
		held      string // agent-a's sandbox
	)
	as := func(ctx context.Context, agent string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfs[agent], "-n", ns}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	warmPod := func(ctx context.Context) string {
		GinkgoHelper()
		available := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)
		Expect(available).NotTo(BeEmpty())
		return available[0].Name
	}
	expectRefused := func(out string, err error, want string) {
		GinkgoHelper()
		Expect(err).To(HaveOccurred(), "the write was admitted: %s", out)
		Expect(out).To(ContainSubstring(want))
	}

	BeforeAll(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		out, err := kubectl(ctx, "-n", ns, "apply", "-f", filepath.Join("..", "..", "config", "rbac", "agent_role.yaml"))
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = kubectl(ctx, "-n", ns, "create", "role", "cold-claimer", "--verb=create", "--resource=pods")
		Expect(err).NotTo(HaveOccurred(), out)
		for _, agent := range []string{"agent-a", "agent-b", "agent-c"} {
			for _, args := range [][]string{
				{"create", "serviceaccount", agent},
				{"create", "rolebinding", agent, "--role=sandbox-agent", "--serviceaccount=" + ns + ":" + agent},
			} {
				out, err := kubectl(ctx, append([]string{"-n", ns}, args...)...)
				Expect(err).NotTo(HaveOccurred(), out)
			}
			kubeconfs[agent] = serviceAccountKubeconfig(ctx, ns, agent)
		}
		out, err = kubectl(ctx, "-n", ns, "create", "rolebinding", "agent-c-cold", "--role=cold-claimer", "--serviceaccount="+ns+":agent-c")
		Expect(err).NotTo(HaveOccurred(), out)

		sbs = newSandboxSet(ns, "demo", 3)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 3, 3)
		held = warmPod(ctx)
		out, err = as(ctx, "agent-a", "label", "pod", held, agentsv1alpha1.LabelClaimedBy+"=agent-1")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(getPod(ctx, Default, ns, held).Annotations).To(HaveKeyWithValue(agentsv1alpha1.AnnotationClaimedByUser, "system:serviceaccount:"+ns+":agent-a"))
		expectPool(ctx, sbs, 3, 3)
	})

	It("1: refuses another image for a warm sandbox", func(ctx SpecContext) {
		out, err := as(ctx, "agent-b", "set", "image", "pod/"+warmPod(ctx), "sandbox=evil.example/backdoor:1")
		expectRefused(out, err, "rule frozen-spec: the spec of pool Pod")
	})

	It("2: refuses another image for a sandbox another agent holds", func(ctx SpecContext) {
		out, err := as(ctx, "agent-b", "set", "image", "pod/"+held, "sandbox=evil.example/backdoor:1")
		expectRefused(out, err, fmt.Sprintf("rule holder-only: sandbox %s is claimed by agent-1 (system:serviceaccount:%s:agent-a); only that identity may change or delete it, not system:serviceaccount:%s:agent-b", held, ns, ns))
	})

	It("3: refuses a deadline that kills a warm sandbox", func(ctx SpecContext) {
		out, err := as(ctx, "agent-b", "patch", "pod", warmPod(ctx), "-p", `{"spec":{"activeDeadlineSeconds":1}}`)
		expectRefused(out, err, "rule frozen-spec")
	})

	It("4: refuses owner references that detach a warm sandbox from its pool", func(ctx SpecContext) {
		name := warmPod(ctx)
		pod := getPod(ctx, Default, ns, name)
		patch := fmt.Sprintf(`[{"op":"replace","path":"/metadata/ownerReferences","value":[{"apiVersion":"v1","kind":"Pod","name":%q,"uid":%q}]}]`, name, pod.UID)
		out, err := as(ctx, "agent-b", "patch", "pod", name, "--type=json", "-p", patch)
		expectRefused(out, err, "rule frozen-owners")
	})

	It("5: refuses a finalizer on a warm sandbox", func(ctx SpecContext) {
		out, err := as(ctx, "agent-b", "patch", "pod", warmPod(ctx), "-p", `{"metadata":{"finalizers":["example.com/never"]}}`)
		expectRefused(out, err, "rule frozen-finalizers")
	})

	It("6: refuses other persistent contents", func(ctx SpecContext) {
		out, err := as(ctx, "agent-b", "annotate", "--overwrite", "pod", warmPod(ctx), agentsv1alpha1.AnnotationPersistentContents+"=filesystem,memory")
		expectRefused(out, err, "rule operator-keys")
	})

	It("7: refuses a 150 KB annotation on a warm sandbox", func(ctx SpecContext) {
		file := filepath.Join(GinkgoT().TempDir(), "flood.json")
		Expect(os.WriteFile(file, fmt.Appendf(nil, `{"metadata":{"annotations":{"flood":%q}}}`, strings.Repeat("x", 150*1024)), 0o600)).To(Succeed())
		out, err := as(ctx, "agent-b", "patch", "pod", warmPod(ctx), "--patch-file", file)
		expectRefused(out, err, "rule warm-metadata")
	})

	It("8: refuses to delete a warm sandbox", func(ctx SpecContext) {
		name := warmPod(ctx)
		out, err := as(ctx, "agent-b", "delete", "pod", name, "--wait=false")
		expectRefused(out, err, fmt.Sprintf("rule warm-delete: %s is a warm sandbox of SandboxSet demo", name))
	})

	It("9: refuses to delete or relabel a sandbox another agent holds", func(ctx SpecContext) {
		out, err := as(ctx, "agent-b", "delete", "pod", held, "--wait=false")
		expectRefused(out, err, "rule holder-only: sandbox "+held)
		out, err = as(ctx, "agent-b", "label", "pod", held, "task=mine")
		expectRefused(out, err, "rule holder-only: sandbox "+held)
	})

	It("10: refuses a repeat claim under the holder's id from another identity, and lets the holder repeat it", func(ctx SpecContext) {
		out, err := as(ctx, "agent-b", "label", "--overwrite", "pod", held, agentsv1alpha1.LabelClaimedBy+"=agent-1")
		expectRefused(out, err, fmt.Sprintf("sandbox %s is claimed by agent-1 (system:serviceaccount:%s:agent-a)", held, ns))
		out, err = as(ctx, "agent-a", "label", "--overwrite", "pod", held, agentsv1alpha1.LabelClaimedBy+"=agent-1")
		Expect(err).NotTo(HaveOccurred(), out)
	})

	It("11: refuses an empty pool label on an ordinary Pod", func(ctx SpecContext) {
		plain := &corev1.Pod{}
		plain.Namespace, plain.Name = ns, "plain"
		plain.Spec.Containers = []corev1.Container{{Name: "app", Image: "app"}}
		Expect(k8sClient.Create(ctx, plain)).To(Succeed())
		out, err := as(ctx, "agent-b", "label", "pod", "plain", agentsv1alpha1.LabelSandboxSet+"=")
		expectRefused(out, err, "rule pool-label: metadata.labels[agents.kruise.io/sandboxset] of Pod plain must name a SandboxSet")
	})

	It("12: refuses a cold claim that is not the pool's template", func(ctx SpecContext) {
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		forged := &corev1.Pod{}
		forged.APIVersion, forged.Kind = "v1", "Pod"
		forged.Name = "demo-forged"
		forged.Labels = map[string]string{
			agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelRevision: sbs.Spec.Revision(), agentsv1alpha1.LabelClaimedBy: "agent-3",
		}
		forged.Spec = *sbs.Spec.Template.Spec.DeepCopy()
		privileged := true
		forged.Spec.Containers[0].Image = "evil.example/backdoor:1"
		forged.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &privileged}
		data, err := yaml.Marshal(forged)
		Expect(err).NotTo(HaveOccurred())
		file := filepath.Join(GinkgoT().TempDir(), "forged.yaml")
		Expect(os.WriteFile(file, data, 0o600)).To(Succeed())
		out, err := as(ctx, "agent-c", "create", "-f", file)
		expectRefused(out, err, `spec.containers[0].image: Invalid value: "evil.example/backdoor:1": rule cold-claim-template`)
	})

	It("lets the holder label, annotate and release its own sandbox, while the pool refills", func(ctx SpecContext) {
		out, err := as(ctx, "agent-a", "label", "pod", held, "task=build")
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = as(ctx, "agent-a", "annotate", "pod", held, "note=mine")
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = as(ctx, "agent-a", "delete", "pod", held, "--wait=false")
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func(g Gomega) {
			pod := &corev1.Pod{}
			g.Expect(client.IgnoreNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: held}, pod))).To(Succeed())
			g.Expect(pod.Name).To(BeEmpty(), "released")
		}, timeout, interval).Should(Succeed())
		By("claiming again, so that the rest of the pool's life runs with a sandbox held")
		held = warmPod(ctx)
		out, err = as(ctx, "agent-a", "label", "pod", held, agentsv1alpha1.LabelClaimedBy+"=agent-1")
		Expect(err).NotTo(HaveOccurred(), out)
		expectPool(ctx, sbs, 3, 3)
	})

	It("rolls out a new template, scales down and is deleted, through the same rules, never touching the held sandbox", func(ctx SpecContext) {
		before := getPod(ctx, Default, ns, held)

		By("rolling out a new image")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
			sbs.Spec.Template.Spec.Containers[0].Image = "nginx:1.27"
			sbs.Spec.UpdateStrategy.MaxUnavailable = ptr.To(intstr.FromInt32(1))
			g.Expect(k8sClient.Update(ctx, sbs)).To(Succeed())
		}, timeout, interval).Should(Succeed())
		Eventually(func(g Gomega) {
			for _, pod := range podsOf(ctx, g, sbs) {
				if agentsv1alpha1.IsClaimed(&pod) {
					continue
				}
				g.Expect(pod.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelRevision, sbs.Spec.Revision()))
			}
		}, timeout, interval).Should(Succeed())
		expectPool(ctx, sbs, 3, 3)

		By("scaling down")
		out, err := kubectl(ctx, "-n", ns, "scale", "sbs", "demo", "--replicas=1")
		Expect(err).NotTo(HaveOccurred(), out)
		expectPool(ctx, sbs, 1, 1)

		By("deleting the SandboxSet, whose warm Pod the garbage collector removes")
		warm := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)
		Expect(warm).To(HaveLen(1))
		Expect(k8sClient.Delete(ctx, sbs)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(&warm[0]), &corev1.Pod{}))).To(BeTrue())
		}, 2*timeout, interval).Should(Succeed())
		after := getPod(ctx, Default, ns, held)
		Expect(after.ResourceVersion).To(Equal(before.ResourceVersion), "the held sandbox was never written to")
		Expect(after.DeletionTimestamp).To(BeNil())
	})
})
