package claim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/envtestenv"
	"github.com/sandboxset/warmpool/test/kubelet"
	"github.com/sandboxset/warmpool/webhooks"
)

const (
	timeout  = 30 * time.Second
	interval = 50 * time.Millisecond
	holdFor  = time.Second
)

var (
	env   *envtestenv.Env
	admin client.Client // cluster admin, for setting up and checking

	// Each spec gets a namespace of its own, and an agent holding the
	// example agent Role in it.
	ns    string
	agent *Client
)

func TestClaim(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Claim client suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	env, err = envtestenv.Start(envtestenv.Options{RegisterWebhooks: registerWebhooks})
	Expect(err).NotTo(HaveOccurred())
	admin = env.Admin
})

var _ = AfterSuite(func() {
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

var _ = BeforeEach(func(ctx SpecContext) {
	ns = newNamespace(ctx)
	agent = agentClient(ctx, ns, "agent-user")
})

func registerWebhooks(mgr ctrl.Manager) error {
	return webhooks.SetupWithManager(mgr, webhooks.Options{MaxReplicas: 100, ManagerUsername: envtestenv.ManagerUser, AdmissionParams: envtestenv.AdmissionParams})
}

func newNamespace(ctx context.Context) string {
	GinkgoHelper()
	ns, err := env.NewNamespace(ctx, "claim-test-")
	Expect(err).NotTo(HaveOccurred())
	return ns
}

// agentClient is a claim Client for an agent holding the example agent Role
// (config/rbac/agent_role.yaml) in ns, and nothing else.
func agentClient(ctx context.Context, ns, name string) *Client {
	GinkgoHelper()
	Expect(env.BindAgentRole(ctx, ns, name)).To(Succeed())
	return userClient(name)
}

func userClient(name string) *Client {
	GinkgoHelper()
	c, err := env.UserClient(name)
	Expect(err).NotTo(HaveOccurred())
	return New(c)
}

// newPool creates a SandboxSet of n and waits until its n Pods exist and its
// status counts them; with ready, it plays kubelet until all are available.
func newPool(ctx context.Context, ns, name string, n int32, ready bool) *agentsv1alpha1.SandboxSet {
	GinkgoHelper()
	sbs := &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: agentsv1alpha1.SandboxSetSpec{
			Replicas:           ptr.To(n),
			PersistentContents: []agentsv1alpha1.PersistentContent{agentsv1alpha1.PersistentContentIP},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "sandbox"}, Annotations: map[string]string{"foo": "bar"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "sandbox", Image: "nginx:alpine"}}},
			},
		},
	}
	Expect(admin.Create(ctx, sbs)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(poolPods(ctx, g, ns, name, agentsv1alpha1.StateCreating)).To(HaveLen(int(n)))
	}, timeout, interval).Should(Succeed())
	want := agentsv1alpha1.StateCreating
	if ready {
		want = agentsv1alpha1.StateAvailable
		for _, pod := range poolPods(ctx, Default, ns, name, agentsv1alpha1.StateCreating) {
			Expect(kubelet.SetReady(ctx, admin, &pod, true)).To(Succeed())
		}
	}
	Eventually(func(g Gomega) {
		g.Expect(poolPods(ctx, g, ns, name, want)).To(HaveLen(int(n)))
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		g.Expect(sbs.Status.Replicas).To(Equal(n))
		if ready {
			g.Expect(sbs.Status.AvailableReplicas).To(Equal(n))
		}
	}, timeout, interval).Should(Succeed())
	return sbs
}

func poolPods(ctx context.Context, g Gomega, ns, sandboxSet string, state agentsv1alpha1.SandboxState) []corev1.Pod {
	list := &corev1.PodList{}
	g.Expect(admin.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{
		agentsv1alpha1.LabelSandboxSet: sandboxSet,
		agentsv1alpha1.LabelState:      string(state),
	})).To(Succeed())
	return list.Items
}

func storedPod(ctx context.Context, ns, name string) *corev1.Pod {
	GinkgoHelper()
	pod := &corev1.Pod{}
	Expect(admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod)).To(Succeed())
	return pod
}

// claimer claims a sandbox for an agent id, one of the ways under test.
type claimer func(agent string) (*Sandbox, error)

// raceClaims releases the claims at once, each for an agent of its own, and
// returns who won what: each sandbox to one agent, as its stored Pod says,
// and every loser told why.
func raceClaims(ctx context.Context, ns string, claims []claimer) map[string]string {
	GinkgoHelper()
	type result struct {
		agent string
		sbx   *Sandbox
		err   error
	}
	results := make(chan result, len(claims))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, claim := range claims {
		wg.Go(func() {
			id := fmt.Sprintf("agent-%d", i)
			<-start
			sbx, err := claim(id)
			results <- result{agent: id, sbx: sbx, err: err}
		})
	}
	close(start)
	wg.Wait()
	close(results)

	winners := map[string]string{}
	for r := range results {
		if r.err != nil {
			Expect(errors.Is(r.err, ErrPoolEmpty) || errors.Is(r.err, ErrLostRaces)).To(BeTrue(), "a loser is told why, got %v", r.err)
			continue
		}
		Expect(winners).NotTo(HaveKey(r.sbx.Name), "two agents were told they hold %s", r.sbx.Name)
		Expect(r.sbx.Agent).To(Equal(r.agent))
		winners[r.sbx.Name] = r.agent
	}
	for name, holder := range winners {
		Expect(storedPod(ctx, ns, name).Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, holder))
	}
	return winners
}
