package claim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/kubelet"
)

var _ = Describe("Claim", func() {
	It("takes an available sandbox in one write", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 2, true)
		before := time.Now().Add(-time.Second)
		sbx, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(*sbx).To(MatchFields(IgnoreExtras, Fields{
			"Namespace": Equal(ns), "SandboxSet": Equal("demo"), "Agent": Equal("agent-1"),
			"IP": Equal("10.0.0.1"), "Cold": BeFalse(), "Attempts": Equal(1),
			"ClaimedAt": BeTemporally(">", before), "Latency": BeNumerically(">", 0),
		}))
		stored := storedPod(ctx, ns, sbx.Name)
		Expect(stored.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)))
		Expect(stored.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, "agent-1"))
	})

	It("stops at the pool's limit per identity with ErrHeldLimit, through Claim and a Picker", func(ctx SpecContext) {
		sbs := newPool(ctx, ns, "demo", 4, true)
		Eventually(func(g Gomega) {
			g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
			sbs.Spec.MaxHeldPerIdentity = ptr.To[int32](2)
			g.Expect(admin.Update(ctx, sbs)).To(Succeed())
		}, timeout, interval).Should(Succeed())
		for range 2 {
			_, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		_, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{})
		Expect(err).To(MatchError(ErrHeldLimit))
		Expect(err.Error()).To(MatchRegexp(`^cannot claim: agent-user already holds 2 of SandboxSet demo's sandboxes \(demo-\w+, demo-\w+\), its limit \(spec.maxHeldPerIdentity: 2\); release one`))
		picker, err := agent.NewPicker(ctx, ns, "demo")
		Expect(err).NotTo(HaveOccurred())
		defer picker.Stop()
		_, err = picker.Claim(ctx, "agent-1", ClaimOptions{})
		Expect(err).To(MatchError(ErrHeldLimit))
	})

	It("gives each of 10 sandboxes to exactly one of 20 racing agents", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 10, true)
		claim := func(id string) (*Sandbox, error) { return agent.Claim(ctx, ns, "demo", id, ClaimOptions{}) }
		Expect(raceClaims(ctx, ns, slices.Repeat([]claimer{claim}, 20))).To(HaveLen(10))
	})

	It("never gives one sandbox to two workers that share an agent id and an identity", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 1, true)
		results := make(chan error, 8)
		start := make(chan struct{})
		for range 8 {
			go func() {
				<-start
				_, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{MaxAttempts: 1})
				results <- err
			}()
		}
		close(start)
		won := 0
		for range 8 {
			if err := <-results; err == nil {
				won++
			} else {
				Expect(errors.Is(err, ErrLostRaces) || errors.Is(err, ErrPoolEmpty)).To(BeTrue(), "a loser is told why, got %v", err)
			}
		}
		Expect(won).To(Equal(1))
	})

	Context("when the sandbox it aimed at changes after its list", func() {
		// racedAgent is the spec's agent, with race run on each claim's
		// target just before the claim reaches the API server, whose answer
		// is then real.
		racedAgent := func(race func(ctx context.Context, pod string, n int32)) (*Client, *atomic.Int32) {
			GinkgoHelper()
			c, err := env.UserClient("agent-user")
			Expect(err).NotTo(HaveOccurred())
			var patches atomic.Int32
			return New(interceptor.NewClient(c, interceptor.Funcs{
				Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
					race(ctx, obj.GetName(), patches.Add(1))
					return c.Patch(ctx, obj, patch, opts...)
				},
			})), &patches
		}
		steal := func(ctx context.Context, name string) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
			patch := []byte(`{"metadata":{"labels":{"` + agentsv1alpha1.LabelClaimedBy + `":"agent-2"}}}`)
			Expect(admin.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
		}

		It("tries another when it was deleted or claimed meanwhile", func(ctx SpecContext) {
			newPool(ctx, ns, "demo", 3, true)
			raced, patches := racedAgent(func(ctx context.Context, pod string, n int32) {
				switch n {
				case 1:
					Expect(admin.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pod}})).To(Succeed())
				case 2:
					steal(ctx, pod)
				}
			})
			sbx, err := raced.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(sbx.Attempts).To(Equal(3))
			Expect(patches.Load()).To(Equal(int32(3)))
		})

		It("sends exactly MaxAttempts claims when each one loses, and says so", func(ctx SpecContext) {
			newPool(ctx, ns, "demo", 4, true)
			raced, patches := racedAgent(func(ctx context.Context, pod string, _ int32) { steal(ctx, pod) })
			_, err := raced.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{MaxAttempts: 2})
			Expect(err).To(MatchError(ErrLostRaces))
			Expect(err).To(MatchError(fmt.Sprintf("other agents took each of the 2 sandboxes tried in SandboxSet %s/demo; retry, or raise --max-attempts", ns)))
			Expect(patches.Load()).To(Equal(int32(2)))
		})
	})

	It("waits for a sandbox to become available, and takes it at once", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 1, true)
		first, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{})
		Expect(err).NotTo(HaveOccurred())

		done := make(chan *Sandbox, 1)
		go func() {
			defer GinkgoRecover()
			sbx, err := agent.Claim(ctx, ns, "demo", "agent-2", ClaimOptions{Wait: timeout})
			Expect(err).NotTo(HaveOccurred())
			done <- sbx
		}()
		var refill []corev1.Pod
		Eventually(func(g Gomega) {
			refill = poolPods(ctx, g, ns, "demo", agentsv1alpha1.StateCreating)
			g.Expect(refill).To(HaveLen(1))
		}, timeout, interval).Should(Succeed())
		Consistently(done, holdFor).ShouldNot(Receive(), "nothing to claim while the refill is creating")

		By("playing kubelet: the refill turns Ready")
		Expect(kubelet.SetReady(ctx, admin, &refill[0], true)).To(Succeed())
		var sbx *Sandbox
		Eventually(done, timeout).Should(Receive(&sbx))
		Expect(sbx.Name).To(Equal(refill[0].Name))
		Expect(sbx.Name).NotTo(Equal(first.Name))
		Expect(sbx.Agent).To(Equal("agent-2"))
	})

	It("says when there is no such SandboxSet", func(ctx SpecContext) {
		_, err := agent.Claim(ctx, ns, "nope", "agent-1", ClaimOptions{})
		Expect(err).To(MatchError(ErrNoSandboxSet))
		Expect(err).To(MatchError(fmt.Sprintf("no SandboxSet nope in namespace %s", ns)))
	})

	It("says when the pool has nothing available, and how much is coming", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 2, false)
		_, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{})
		Expect(err).To(MatchError(ErrPoolEmpty))
		Expect(err).To(MatchError(fmt.Sprintf("SandboxSet %s/demo has no available sandbox (2 creating); retry, wait for one (--wait 30s), or claim cold (--cold-if-empty)", ns)))

		_, err = agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{Wait: 300 * time.Millisecond})
		Expect(err).To(MatchError(ErrPoolEmpty))
		Expect(err).To(MatchError(fmt.Sprintf("SandboxSet %s/demo had no available sandbox after waiting 300ms (2 creating); wait longer, or claim cold (--cold-if-empty)", ns)))
	})

	It("says a pool scaled to 0 will not refill, so waiting cannot help", func(ctx SpecContext) {
		newPool(ctx, ns, "idle", 0, false)
		for _, opts := range []ClaimOptions{{}, {Wait: 100 * time.Millisecond}} {
			_, err := agent.Claim(ctx, ns, "idle", "agent-1", opts)
			Expect(err).To(MatchError(ErrPoolEmpty))
			Expect(err).To(MatchError(fmt.Sprintf("SandboxSet %s/idle is scaled to 0: it keeps no warm sandboxes; "+
				"scale it up (kubectl scale sbs idle --replicas=N), or claim cold (--cold-if-empty)", ns)))
		}
	})

	It("refuses options that cannot mean anything, before any call", func(ctx SpecContext) {
		for opts, want := range map[ClaimOptions]string{
			{MaxAttempts: -1}:    "MaxAttempts must be at least 1, not -1 (0 means 5)",
			{Wait: -time.Second}: "a wait must not be negative, not -1s",
			{TTL: -time.Minute}:  "a TTL must be positive, not -1m0s",
		} {
			_, err := agent.Claim(ctx, ns, "nope", "agent-1", opts)
			Expect(err).To(MatchError(want))
		}
		_, err := agent.Claim(ctx, ns, "nope", "agent 1", ClaimOptions{})
		Expect(err).To(MatchError(`agent id "agent 1" is not usable as a label value: use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit, e.g. agent-1`))
		_, err = agent.Claim(ctx, ns, "nope", "", ClaimOptions{})
		Expect(err).To(MatchError("an agent id is required: it becomes the sandbox's claimed-by label"))
	})

	It("says which right an agent without the agent Role lacks", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 1, true)
		_, err := userClient("stranger").Claim(ctx, ns, "demo", "agent-1", ClaimOptions{})
		Expect(err).To(MatchError(ErrForbidden))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the API error stays reachable")
		Expect(err.Error()).To(And(
			HavePrefix("not allowed to list pods in namespace %s: ", ns),
			ContainSubstring(`User "stranger" cannot list resource "pods"`),
			HaveSuffix("an agent needs the Role in config/rbac/agent_role.yaml"),
		))
	})

	It("recognises the claim webhook's refusal of a Pod that stopped being Ready as a lost race", func(ctx SpecContext) {
		// Claim meets this only in a narrow race; here it is made to happen.
		newPool(ctx, ns, "demo", 1, true)
		pod := poolPods(ctx, Default, ns, "demo", agentsv1alpha1.StateAvailable)[0]
		Expect(kubelet.SetReady(ctx, admin, &pod, false)).To(Succeed())
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{agentsv1alpha1.LabelClaimedBy: "agent-1"}}})
		Expect(err).NotTo(HaveOccurred())
		err = admin.Patch(ctx, &pod, client.RawPatch(types.MergePatchType, patch))
		Expect(err).To(MatchError(ContainSubstring("cannot be claimed: it is still creating")))
		Expect(lostRace(err)).To(BeTrue())
	})

	Context("with ColdIfEmpty", func() {
		It("creates a claimed sandbox from the current template, outside the pool", func(ctx SpecContext) {
			sbs := newPool(ctx, ns, "demo", 1, false)
			Expect(admin.Create(ctx, &rbacv1.Role{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "create-pods"},
				Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create"}}},
			})).To(Succeed())
			Expect(env.BindRole(ctx, ns, "create-pods", "agent-user")).To(Succeed())

			sbx, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{ColdIfEmpty: true})
			Expect(err).NotTo(HaveOccurred())
			Expect(sbx.Cold).To(BeTrue())
			Expect(sbx.Name).To(MatchRegexp(`^demo-[a-z0-9]{5}$`))
			Expect(sbx.Agent).To(Equal("agent-1"))
			Expect(sbx.ClaimedAt).NotTo(BeZero(), "stamped by the webhook")

			stored := storedPod(ctx, ns, sbx.Name)
			Expect(stored.Labels).To(And(
				HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)),
				HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, "agent-1"),
				HaveKeyWithValue(agentsv1alpha1.LabelRevision, sbs.Spec.Revision()),
				HaveKeyWithValue("app", "sandbox"),
			))
			Expect(stored.Annotations).To(And(
				HaveKeyWithValue(agentsv1alpha1.AnnotationPersistentContents, "ip"),
				HaveKeyWithValue("foo", "bar"),
			))
			Expect(stored.OwnerReferences).To(BeEmpty())

			By("leaving the pool as it was")
			Consistently(func(g Gomega) {
				g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
				g.Expect(sbs.Status.Replicas).To(Equal(int32(1)))
				g.Expect(poolPods(ctx, g, ns, "demo", agentsv1alpha1.StateCreating)).To(HaveLen(1))
			}, holdFor, interval).Should(Succeed())
		})

		It("says that a cold claim needs create on pods", func(ctx SpecContext) {
			newPool(ctx, ns, "demo", 1, false)
			_, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{ColdIfEmpty: true})
			Expect(err).To(MatchError(ErrForbidden))
			Expect(err.Error()).To(And(
				HavePrefix("not allowed to create pods in namespace %s: ", ns),
				HaveSuffix("a cold claim needs create on pods, which the agent Role in config/rbac/agent_role.yaml does not grant"),
			))
		})
	})
})

var _ = Describe("Pools, claimed sandboxes and Release", func() {
	It("lists pools and who holds what", func(ctx SpecContext) {
		sbs := newPool(ctx, ns, "demo", 3, true)
		sbx, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{})
		Expect(err).NotTo(HaveOccurred())

		Eventually(func(g Gomega) {
			pools, err := agent.List(ctx, ns)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pools).To(Equal([]Pool{{Name: "demo", Namespace: ns, Replicas: 3, Available: 2, UpdateRevision: sbs.Spec.Revision()}}))
		}, timeout, interval).Should(Succeed())
		pool, err := agent.Pool(ctx, ns, "demo")
		Expect(err).NotTo(HaveOccurred())
		Expect(pool.Name).To(Equal("demo"))
		_, err = agent.Pool(ctx, ns, "nope")
		Expect(err).To(MatchError(ErrNoSandboxSet))

		claimed, err := agent.Claimed(ctx, ns, "demo")
		Expect(err).NotTo(HaveOccurred())
		Expect(claimed).To(HaveExactElements(MatchFields(IgnoreExtras, Fields{
			"Name": Equal(sbx.Name), "Agent": Equal("agent-1"), "IP": Equal("10.0.0.1"),
			"ClaimedAt": BeTemporally("==", sbx.ClaimedAt),
		})))
	})

	It("releases a claimed sandbox by deleting it, and refuses a warm one", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 2, true)
		sbx, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(agent.Release(ctx, ns, sbx.Name)).To(Succeed())
		err = admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: sbx.Name}, &corev1.Pod{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)

		warm := poolPods(ctx, Default, ns, "demo", agentsv1alpha1.StateAvailable)[0]
		err = agent.Release(ctx, ns, warm.Name)
		Expect(err).To(MatchError(ErrNotClaimed))
		Expect(err).To(MatchError(fmt.Sprintf("sandbox %s/%s is not claimed: it belongs to the warm pool of SandboxSet demo; only a claimed sandbox can be released", ns, warm.Name)))
		storedPod(ctx, ns, warm.Name)
	})

	It("lets only the holder release or renew its sandbox", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 1, true)
		sbx, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{})
		Expect(err).NotTo(HaveOccurred())
		other := agentClient(ctx, ns, "other-user")
		want := fmt.Sprintf("not allowed to act on sandbox %s: sandbox %s is claimed by agent-1 (agent-user); only that identity may change or delete it, not other-user", sbx.Name, sbx.Name)
		err = other.Release(ctx, ns, sbx.Name)
		Expect(err).To(MatchError(ErrNotHolder))
		Expect(err).To(MatchError(want))
		_, err = other.Renew(ctx, ns, sbx.Name, time.Hour)
		Expect(err).To(MatchError(ErrNotHolder))
		Expect(err).To(MatchError(want))
		storedPod(ctx, ns, sbx.Name)
	})

	It("sets the shutdown time in the claim itself, and renews it", func(ctx SpecContext) {
		newPool(ctx, ns, "demo", 1, true)
		before := time.Now()
		sbx, err := agent.Claim(ctx, ns, "demo", "agent-1", ClaimOptions{TTL: 10 * time.Minute})
		Expect(err).NotTo(HaveOccurred())
		Expect(sbx.ShutdownTime).To(BeTemporally(">=", before.Add(10*time.Minute).Truncate(time.Millisecond)))
		Expect(sbx.ShutdownTime).To(BeTemporally("<=", time.Now().Add(10*time.Minute)))
		Expect(storedPod(ctx, ns, sbx.Name).Annotations).To(HaveKeyWithValue(agentsv1alpha1.AnnotationShutdownTime, agentsv1alpha1.FormatShutdownTime(sbx.ShutdownTime)))

		renewed, err := agent.Renew(ctx, ns, sbx.Name, time.Hour)
		Expect(err).NotTo(HaveOccurred())
		Expect(renewed.ShutdownTime).To(BeTemporally("~", time.Now().Add(time.Hour), 5*time.Second))

		_, err = agent.Renew(ctx, ns, sbx.Name, 0)
		Expect(err).To(MatchError("a TTL must be positive, not 0s"))
	})
})
