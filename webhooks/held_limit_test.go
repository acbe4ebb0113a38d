package webhooks

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/controllers"
	"github.com/sandboxset/warmpool/test/envtestenv"
)

// spec.maxHeldPerIdentity through the real API server, claimed by agents
// holding the example agent Role, all at once.
var _ = Describe("The per-identity limit on held sandboxes", func() {
	const limit = 3
	var (
		ns   string
		sbs  *agentsv1alpha1.SandboxSet
		warm []corev1.Pod
	)
	heldBy := func(ctx context.Context, g Gomega, user string) []string {
		list := &corev1.PodList{}
		g.Expect(adminClient.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var names []string
		for _, pod := range list.Items {
			if pod.Annotations[agentsv1alpha1.AnnotationClaimedByUser] == user && pod.DeletionTimestamp == nil {
				names = append(names, pod.Name)
			}
		}
		return names
	}
	// claimAll sends one claim per Pod, all at once, as user, and returns
	// the errors of those refused.
	claimAll := func(ctx context.Context, c client.Client, pods []corev1.Pod) (admitted int, refused []error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range pods {
			wg.Go(func() {
				_, err := claimAs(ctx, c, &pods[i], fmt.Sprintf("worker-%d", i))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					refused = append(refused, err)
				} else {
					admitted++
				}
			})
		}
		wg.Wait()
		return admitted, refused
	}

	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		sbs = newSandboxSet(ns, "demo", 24)
		sbs.Spec.MaxHeldPerIdentity = ptr.To[int32](limit)
		warm = warmPoolOf(ctx, sbs)
	})

	It("ends 20 claims at once by one identity with exactly the limit held, and refuses the rest with the way out", func(ctx SpecContext) {
		a := agentClient(ctx, ns, "agent-a")
		admitted, refused := claimAll(ctx, a, warm[:20])
		Expect(admitted).To(Equal(limit))
		Expect(refused).To(HaveLen(20 - limit))
		for _, err := range refused {
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
			Expect(err.Error()).To(MatchRegexp(`rule held-limit: agent-a already holds 3 of SandboxSet demo's sandboxes \(demo-\w+, demo-\w+, demo-\w+\), ` +
				`its limit \(spec.maxHeldPerIdentity: 3\); release one \(kubectl sbs release <pod>, or delete it\) before claiming another`))
		}
		Expect(heldBy(ctx, Default, "agent-a")).To(HaveLen(limit))
		Consistently(func(g Gomega) { g.Expect(heldBy(ctx, g, "agent-a")).To(HaveLen(limit)) }, time.Second, interval).Should(Succeed())

		By("leaving other identities their own limit")
		b := agentClient(ctx, ns, "agent-b")
		admitted, _ = claimAll(ctx, b, warm[20:24])
		Expect(admitted).To(Equal(limit))

		By("making room when the identity releases one, at once")
		held := heldBy(ctx, Default, "agent-a")
		Expect(a.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: held[0]}})).To(Succeed())
		var next *corev1.Pod
		for i := range warm[:20] {
			if !slices.Contains(held, warm[i].Name) {
				if stored := (&corev1.Pod{}); adminClient.Get(ctx, client.ObjectKeyFromObject(&warm[i]), stored) == nil && !agentsv1alpha1.IsClaimed(stored) {
					next = stored
					break
				}
			}
		}
		Expect(next).NotTo(BeNil(), "an unclaimed sandbox is left")
		_, err := claimAs(ctx, a, next, "worker-next")
		Expect(err).NotTo(HaveOccurred())
		Expect(heldBy(ctx, Default, "agent-a")).To(HaveLen(limit))
	})

	It("counts cold claims, and reserves nothing for a dry run", func(ctx SpecContext) {
		a := wideAgentClient(ctx, ns, "agent-a")
		for i := range limit - 1 {
			_, err := claimAs(ctx, a, &warm[i], "worker")
			Expect(err).NotTo(HaveOccurred())
		}
		By("a dry-run claim, admitted and not counted")
		dry := warm[limit].DeepCopy()
		Expect(a.Patch(ctx, dry, labelPatch(map[string]*string{agentsv1alpha1.LabelClaimedBy: ptrTo("worker")}), client.DryRunAll)).To(Succeed())
		lease := &coordinationv1.Lease{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: ledgerName("demo", "agent-a")}, lease)).To(Succeed())
		Expect(lease.Annotations[agentsv1alpha1.AnnotationLedgerPending]).NotTo(ContainSubstring(dry.Name))
		Expect(*lease.Spec.HolderIdentity).To(Equal("agent-a"))
		Expect(lease.OwnerReferences).To(ConsistOf(HaveField("UID", sbs.UID)), "deleted with the pool")

		By("a cold claim takes the last place")
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		cold := func(name string) *corev1.Pod {
			return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: name, Labels: map[string]string{
				agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelRevision: sbs.Spec.Revision(), agentsv1alpha1.LabelClaimedBy: "worker",
			}}, Spec: *sbs.Spec.Template.Spec.DeepCopy()}
		}
		first := cold("demo-cold-")
		Expect(a.Create(ctx, first)).To(Succeed())
		Expect(first.Name).To(HavePrefix("demo-cold-"), "named from generateName in admission")
		err := a.Create(ctx, cold("demo-cold-"))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("rule held-limit: agent-a already holds 3 of SandboxSet demo's sandboxes"))
		_, err = claimAs(ctx, a, &warm[limit+1], "worker")
		Expect(err).To(MatchError(ContainSubstring("rule held-limit")))
		Expect(heldBy(ctx, Default, "agent-a")).To(HaveLen(limit))
	})

	It("holds across manager replicas: reservations race through the API server, not a lock", func(ctx SpecContext) {
		// Two webhooks as two replicas run them: each its own locks, over
		// a cache of its own.
		podCache, err := cache.New(env.Environment.Config, cache.Options{Scheme: env.Scheme, ByObject: controllers.CacheOptions().ByObject})
		Expect(err).NotTo(HaveOccurred())
		Expect(podCache.IndexField(ctx, &corev1.Pod{}, holderIndex, holderIndexKeys)).To(Succeed())
		cacheCtx, stop := context.WithCancel(context.Background())
		DeferCleanup(stop)
		go func() { _ = podCache.Start(cacheCtx) }()
		Expect(podCache.WaitForCacheSync(ctx)).To(BeTrue())
		cached, err := client.New(env.Environment.Config, client.Options{Scheme: env.Scheme, Cache: &client.CacheOptions{Reader: podCache}})
		Expect(err).NotTo(HaveOccurred())
		replicas := []*heldLimit{
			{client: cached, apiReader: adminClient, now: time.Now},
			{client: cached, apiReader: adminClient, now: time.Now},
		}
		var reserved atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				defer GinkgoRecover()
				err := replicas[i%2].reserve(ctx, sbs, fmt.Sprintf("demo-racer%d", i), "agent-racing", true, false)
				switch {
				case err == nil:
					reserved.Add(1)
				case !strings.Contains(err.Error(), "rule held-limit"):
					Fail(fmt.Sprintf("reservation %d: %v", i, err))
				}
			})
		}
		wg.Wait()
		Expect(reserved.Load()).To(BeEquivalentTo(limit))
	})
})

// A claim ledger's name follows from the pool and the user name, so anyone
// can compute it, and edit grants Leases. The squatters here are
// ServiceAccounts that hold only their token, the example agent Role and
// the built-in edit ClusterRole.
var _ = Describe("A Lease under a claim ledger's name, made by someone else", func() {
	var (
		ns   string
		warm []corev1.Pod
	)
	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		sbs := newSandboxSet(ns, "demo", 2)
		sbs.Spec.MaxHeldPerIdentity = ptr.To[int32](1)
		warm = warmPoolOf(ctx, sbs)
	})

	It("is refused to an agent holding edit, naming the rule", func(ctx SpecContext) {
		squatter, _ := serviceAccountClient(ctx, ns, "squatter")
		victim := "system:serviceaccount:" + ns + ":victim"
		squat := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ledgerName("demo", victim)},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(victim)},
		}
		want := "rule claim-ledger: Lease " + squat.Name + " is named like a claim ledger (<pool>-held-<12 hex digits>), " +
			"which only the SandboxSet operator creates; choose another name"

		By("RBAC lets it write Leases of other names")
		Expect(squatter.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "notes"}})).To(Succeed())

		By("creating the victim's ledger before its first claim")
		// The API server loads policies asynchronously: a dry run stores
		// nothing until the rule is in force.
		Eventually(func() error {
			return squatter.Create(ctx, squat.DeepCopy(), client.DryRunAll)
		}, timeout, interval).Should(MatchError(ContainSubstring("rule claim-ledger")))
		err := squatter.Create(ctx, squat.DeepCopy())
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring(want))
		Expect(apierrors.IsNotFound(adminClient.Get(ctx, client.ObjectKeyFromObject(squat), &coordinationv1.Lease{}))).To(BeTrue())

		By("the same with the pool's label")
		labelled := squat.DeepCopy()
		labelled.Labels = map[string]string{agentsv1alpha1.LabelSandboxSet: "demo"}
		err = squatter.Create(ctx, labelled)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("rule pool-objects: claim ledger " + squat.Name + " belongs to SandboxSet demo"))

		By("rewriting an unlabelled one made before the rule")
		Expect(adminClient.Create(ctx, squat)).To(Succeed())
		rewrite := squat.DeepCopy()
		rewrite.Spec.HolderIdentity = ptr.To("system:serviceaccount:" + ns + ":squatter")
		err = squatter.Update(ctx, rewrite)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring(want))
	})

	// Leases made before the rule was installed, or by a trusted identity:
	// the admin plays the squatter.
	DescribeTable("made before the rule, is not counted in: claims are refused, naming it and the way out, until an admin deletes it",
		func(ctx SpecContext, holder func(victim string) string, labelled bool, why string) {
			c, victim := serviceAccountClient(ctx, ns, "victim")
			foreign := &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ledgerName("demo", victim)},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder(victim))},
			}
			if labelled {
				foreign.Labels = map[string]string{agentsv1alpha1.LabelSandboxSet: "demo"}
			}
			Expect(adminClient.Create(ctx, foreign)).To(Succeed())

			_, err := claimAs(ctx, c, &warm[0], "worker")
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a refusal, not an internal error: %v", err)
			Expect(err.Error()).To(ContainSubstring("rule claim-ledger: Lease " + foreign.Name + " in namespace " + ns +
				" has the name of " + victim + "'s claim ledger in SandboxSet demo but is not the operator's: " + why +
				"; a cluster admin must delete it (kubectl -n " + ns + " delete lease " + foreign.Name + ") before " + victim + " can claim from this pool"))
			stored := &coordinationv1.Lease{}
			Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(foreign), stored)).To(Succeed())
			Expect(stored.ResourceVersion).To(Equal(foreign.ResourceVersion), "not written as a ledger")

			By("the way out")
			Expect(adminClient.Delete(ctx, foreign)).To(Succeed())
			_, err = claimAs(ctx, c, &warm[0], "worker")
			Expect(err).NotTo(HaveOccurred())
			ledger := &coordinationv1.Lease{}
			Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(foreign), ledger)).To(Succeed())
			Expect(ledger.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelSandboxSet, "demo"))
			Expect(ledger.Spec.HolderIdentity).To(HaveValue(Equal(victim)))
			Expect(ledger.Annotations[agentsv1alpha1.AnnotationLedgerPending]).To(ContainSubstring(warm[0].Name))
		},
		Entry("holding another identity (was an internal error)", func(string) string { return "someone-else" }, false,
			"it is not labelled agents.kruise.io/sandboxset=demo"),
		Entry("holding the victim's identity (was an internal error: manager-scope refused the manager's write)", func(v string) string { return v }, false,
			"it is not labelled agents.kruise.io/sandboxset=demo"),
		Entry("labelled, but owned by no SandboxSet (was used as its ledger)", func(v string) string { return v }, true,
			"it is not owned by this SandboxSet"),
	)
})

// serviceAccountClient makes a ServiceAccount in ns that holds the example
// agent Role and the built-in edit ClusterRole, and returns a client that
// authenticates with its token alone, as an agent in a Pod does, and its
// user name. It asks the API server who the client is first.
func serviceAccountClient(ctx context.Context, ns, name string) (client.Client, string) {
	GinkgoHelper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	Expect(adminClient.Create(ctx, sa)).To(Succeed())
	user := "system:serviceaccount:" + ns + ":" + name
	Expect(env.BindAgentRole(ctx, ns, user)).To(Succeed())
	Expect(env.BindEdit(ctx, ns, user)).To(Succeed())
	token := &authenticationv1.TokenRequest{}
	Expect(adminClient.SubResource("token").Create(ctx, sa, token)).To(Succeed())
	cfg := rest.AnonymousClientConfig(testEnv.Config) // the API server's CA, no client certificate
	cfg.BearerToken = token.Status.Token
	Expect(envtestenv.ExpectIdentity(ctx, cfg, user)).To(Succeed())
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	Expect(err).NotTo(HaveOccurred())
	return c, user
}

// TestForeignLedger: only a Lease with the pool's label, an owner reference
// to this SandboxSet and the identity as holder counts as its ledger.
func TestForeignLedger(t *testing.T) {
	sbs := &agentsv1alpha1.SandboxSet{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "demo", UID: "uid-now"}}
	const user = "system:serviceaccount:team-a:agent-r"
	ledger := func(change func(*coordinationv1.Lease)) *coordinationv1.Lease {
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "team-a", Name: ledgerName("demo", user),
				Labels:          map[string]string{agentsv1alpha1.LabelSandboxSet: "demo"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: agentsv1alpha1.GroupVersion.String(), Kind: "SandboxSet", Name: "demo", UID: "uid-now"}},
			},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(user)},
		}
		change(lease)
		return lease
	}
	for _, tc := range []struct {
		name  string
		lease *coordinationv1.Lease
		want  string
	}{
		{"the pool's own", ledger(func(*coordinationv1.Lease) {}), ""},
		{"unlabelled", ledger(func(l *coordinationv1.Lease) { l.Labels = nil }), "it is not labelled agents.kruise.io/sandboxset=demo"},
		{"labelled for another pool", ledger(func(l *coordinationv1.Lease) { l.Labels[agentsv1alpha1.LabelSandboxSet] = "other" }),
			"it is not labelled agents.kruise.io/sandboxset=demo"},
		{"owned by no one", ledger(func(l *coordinationv1.Lease) { l.OwnerReferences = nil }), "it is not owned by this SandboxSet"},
		{"owned by an earlier SandboxSet of the same name", ledger(func(l *coordinationv1.Lease) { l.OwnerReferences[0].UID = "uid-before" }),
			"it is not owned by this SandboxSet"},
		{"no holder", ledger(func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = nil }), "its holderIdentity is not " + user},
		{"another holder", ledger(func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = ptr.To("system:serviceaccount:team-a:agent-s") }),
			"its holderIdentity is not " + user},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := foreignLedger(tc.lease, sbs, user); got != tc.want {
				t.Errorf("foreignLedger() = %q, want %q", got, tc.want)
			}
		})
	}
}
