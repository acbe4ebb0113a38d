package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sandboxset/warmpool/api/claim"
	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// The claim lifecycle on the local cluster: agents (ServiceAccounts holding
// the agent Role) claim with a TTL and renew through kubectl-sbs, and the
// manager's expiry controller deletes each sandbox at its shutdown time.
var _ = Describe("Claim lifecycle", Ordered, func() {
	var (
		ns, cli string
		sbs     *agentsv1alpha1.SandboxSet
		agents  = map[string]string{} // agent → kubeconfig
	)
	sbsCLI := func(ctx context.Context, agent string, args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, cli, append([]string{"--kubeconfig", agents[agent], "-n", ns}, args...)...).CombinedOutput()
		return string(out), err
	}
	claimWithTTL := func(ctx context.Context, agent string, ttl time.Duration) *claim.Sandbox {
		GinkgoHelper()
		out, err := sbsCLI(ctx, agent, "claim", "demo", "--by", agent, "--ttl", ttl.String(), "-o", "json")
		Expect(err).NotTo(HaveOccurred(), out)
		sbx := &claim.Sandbox{}
		Expect(json.Unmarshal([]byte(out), sbx)).To(Succeed(), out)
		Expect(sbx.ShutdownTime).To(BeTemporally("~", time.Now().Add(ttl), 2*time.Second))
		return sbx
	}

	BeforeAll(func(ctx SpecContext) {
		cli = filepath.Join(GinkgoT().TempDir(), "kubectl-sbs")
		out, err := exec.CommandContext(ctx, "go", "build", "-o", cli, "../../cmd/kubectl-sbs").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		ns = newNamespace(ctx)
		out2, err := kubectl(ctx, "-n", ns, "apply", "-f", filepath.Join("..", "..", "config", "rbac", "agent_role.yaml"))
		Expect(err).NotTo(HaveOccurred(), out2)
		for _, agent := range []string{"agent-a", "agent-b"} {
			for _, args := range [][]string{
				{"create", "serviceaccount", agent},
				{"create", "rolebinding", agent, "--role=sandbox-agent", "--serviceaccount=" + ns + ":" + agent},
			} {
				out, err := kubectl(ctx, append([]string{"-n", ns}, args...)...)
				Expect(err).NotTo(HaveOccurred(), out)
			}
			agents[agent] = serviceAccountKubeconfig(ctx, ns, agent)
		}
		sbs = newSandboxSet(ns, "demo", 3)
		sbs.Spec.ClaimLifetime = &agentsv1alpha1.ClaimLifetime{Max: &metav1.Duration{Duration: time.Hour}}
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 3, 3)
	})

	It("deletes a sandbox claimed with --ttl 5s within a second of its shutdown time, and says so on its SandboxSet", func(ctx SpecContext) {
		sbx := claimWithTTL(ctx, "agent-a", 5*time.Second)
		deleted := watchDeletion(ctx, ns, sbx.Name)()
		lateness := deleted.Sub(sbx.ShutdownTime)
		AddReportEntry("expiry lateness", lateness.Round(time.Millisecond).String())
		Expect(lateness).To(BeNumerically(">=", 0), "not before its shutdown time")
		Expect(lateness).To(BeNumerically("<", time.Second))
		Eventually(func(g Gomega) {
			list := &eventsv1.EventList{}
			g.Expect(k8sClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(ContainElement(And(
				HaveField("Reason", "SandboxExpired"), HaveField("Regarding.Kind", "SandboxSet"), HaveField("Regarding.Name", "demo"),
				HaveField("Note", ContainSubstring("Sandbox %s claimed by agent-a (system:serviceaccount:%s:agent-a) reached its shutdown time", sbx.Name, ns)),
			)))
		}, timeout, interval).Should(Succeed())
		expectPool(ctx, sbs, 3, 3)
	})

	It("keeps a renewed sandbox past its first deadline and deletes it at its second, and refuses another agent's renewal", func(ctx SpecContext) {
		sbx := claimWithTTL(ctx, "agent-a", 6*time.Second)
		deletion := watchDeletion(ctx, ns, sbx.Name)
		out, err := sbsCLI(ctx, "agent-b", "renew", sbx.Name, "--ttl", "1h")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("not allowed to act on sandbox %s: sandbox %s is claimed by agent-a (system:serviceaccount:%s:agent-a); only that identity may change or delete it", sbx.Name, sbx.Name, ns))

		out, err = sbsCLI(ctx, "agent-a", "renew", sbx.Name, "--ttl", "10s")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(HavePrefix("sandbox %s renewed until ", sbx.Name))
		second, err := agentsv1alpha1.ParseShutdownTime(getPod(ctx, Default, ns, sbx.Name).Annotations[agentsv1alpha1.AnnotationShutdownTime])
		Expect(err).NotTo(HaveOccurred())
		deleted := deletion()
		Expect(deleted).To(BeTemporally(">", sbx.ShutdownTime.Add(time.Second)), "it outlived its first deadline")
		Expect(deleted.Sub(second)).To(BeNumerically("<", time.Second))
		Expect(deleted.Sub(second)).To(BeNumerically(">=", 0))
	})

	It("refuses a shutdown time beyond the pool's maximum, naming the latest allowed", func(ctx SpecContext) {
		out, err := sbsCLI(ctx, "agent-a", "claim", "demo", "--by", "agent-a", "--ttl", "2h")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("metadata.annotations[agents.kruise.io/shutdown-time]"))
		Expect(out).To(ContainSubstring("the claim time plus its SandboxSet's claimLifetime.max"))
		sbx := claimWithTTL(ctx, "agent-a", 30*time.Minute)
		out, err = sbsCLI(ctx, "agent-a", "renew", sbx.Name, "--ttl", "2h")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("rule shutdown-time: must be no later than "))
	})

	It("expires sandboxes after their SandboxSet is deleted, and across a manager SIGKILL while they wait", func(ctx SpecContext) {
		first := claimWithTTL(ctx, "agent-a", 6*time.Second)
		second := claimWithTTL(ctx, "agent-b", 12*time.Second)
		deletions := []func() time.Time{watchDeletion(ctx, ns, first.Name), watchDeletion(ctx, ns, second.Name)}
		Expect(k8sClient.Delete(ctx, sbs)).To(Succeed())
		Expect(syscall.Kill(managerPID(0), syscall.SIGKILL)).To(Succeed())
		cluster("start-manager")
		for i, sbx := range []*claim.Sandbox{first, second} {
			Expect(deletions[i]()).To(BeTemporally(">=", sbx.ShutdownTime), "%s expired, not before its time", sbx.Name)
		}
	})
})

// watchDeletion starts watching the Pod, and returns a function that waits
// until the API server reports it deleted (marked for deletion, or gone) and
// says when that was seen. Start it before the deletion can happen.
func watchDeletion(ctx context.Context, ns, name string) func() time.Time {
	GinkgoHelper()
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	w, err := c.Watch(ctx, &corev1.PodList{}, client.InNamespace(ns),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", name)})
	Expect(err).NotTo(HaveOccurred())
	seen := make(chan time.Time, 1)
	go func() {
		defer GinkgoRecover()
		defer w.Stop()
		for ev := range w.ResultChan() {
			pod, isPod := ev.Object.(*corev1.Pod)
			if ev.Type == watch.Deleted || (isPod && pod.DeletionTimestamp != nil) {
				seen <- time.Now()
				return
			}
		}
	}()
	return func() time.Time {
		GinkgoHelper()
		select {
		case at := <-seen:
			return at
		case <-time.After(2 * timeout):
			Fail("Pod " + name + " was not deleted in time")
			return time.Time{}
		}
	}
}
