package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sandboxset/warmpool/api/claim"
	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/podtrack"
	"github.com/sandboxset/warmpool/test/poolcheck"
)

// Each fault spec states what may be lost: nothing. They stop and start
// parts of the system, so they run one at a time.
var _ = Describe("Faults", Serial, func() {
	var (
		ns       string
		creation *podtrack.Creations
	)
	BeforeEach(func(ctx SpecContext) { ns, creation = countedNamespace(ctx) })

	It("SIGKILLs of the manager during a burst refill lose nothing and create nothing extra", func(ctx SpecContext) {
		// One write at a time keeps each kill mid-refill. With the default
		// budget of 64 a restarted manager sends the rest of the refill at
		// once, and it lands before the kill that was meant to cut it.
		slowWrites := []string{"MANAGER_ARGS=--pod-write-parallelism=1"}
		clusterWith(slowWrites, "start-manager")
		DeferCleanup(func() { cluster("start-manager") })
		sbs := newSandboxSet(ns, "demo", 200)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 200, 200)

		By("claiming 100 sandboxes at once")
		held := claimConcurrently(ctx, podsOf(ctx, Default, sbs)[:100])

		By("killing the manager three times at random points of the refill")
		for kill, lowest := range []int{205, 235, 265} {
			// Each kill waits for a random count of creations, and must find
			// the refill still under way.
			at := lowest + rand.IntN(20)
			Eventually(creation.Counted, timeout, time.Millisecond).Should(BeNumerically(">=", at))
			Expect(syscall.Kill(managerPID(0), syscall.SIGKILL)).To(Succeed())
			created, err := creation.Counted()
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Printf("kill %d: %d of 300 Pods created\n", kill+1, created)
			Expect(created).To(BeNumerically("<", 300), "kill %d landed mid-refill", kill+1)
			clusterWith(slowWrites, "start-manager")
		}

		expectPool(ctx, sbs, 200, 200)
		expectCreations(creation, 300)
		expectUntouched(ctx, ns, held)
	})

	It("a killed leader is replaced within the lease, with no over-creation", func(ctx SpecContext) {
		const lease = 6 * time.Second
		By("running the webhooks apart from two leader-electing controller replicas")
		cluster("stop-manager")
		clusterWith([]string{"MANAGER_ARGS=--enable-controllers=false"}, "start-manager")
		electing := []string{"LEADER_ELECT=true", "MANAGER_ARGS=--enable-webhooks=false --leader-elect-lease-duration=6s --leader-elect-renew-deadline=4s --leader-elect-retry-period=500ms"}
		for _, i := range []string{"1", "2"} {
			clusterWith(append(electing, "MANAGER_INSTANCE="+i), "start-manager")
		}
		DeferCleanup(func() {
			for _, i := range []string{"1", "2"} {
				clusterWith([]string{"MANAGER_INSTANCE=" + i}, "stop-manager")
			}
			cluster("start-manager")
		})
		var leader int
		Eventually(func() int { leader = leaderInstance(); return leader }, timeout, interval).Should(BeNumerically(">", 0))

		sbs := newSandboxSet(ns, "demo", 300)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		Eventually(creation.Counted, timeout, time.Millisecond).Should(BeNumerically(">", 0))
		Expect(syscall.Kill(managerPID(leader), syscall.SIGKILL)).To(Succeed())
		created, err := creation.Counted()
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("killed leader %d with %d of 300 Pods created\n", leader, created)
		Expect(created).To(BeNumerically("<", 300), "the kill landed mid-fill")
		old := leaseOf(ctx)

		Eventually(func() int { return leaderInstance() }, 3*lease, interval).Should(Equal(3-leader), "the other replica takes over")
		taken := leaseOf(ctx)
		Expect(*taken.Spec.HolderIdentity).NotTo(Equal(*old.Spec.HolderIdentity))
		// Judged on the Lease's own times, not this test's clock: the new
		// leader acquires once the old holder's last renewal is a lease
		// old, within two retry periods (each up to 2.2 x 500 ms with
		// client-go's jitter) of noticing.
		takeover := taken.Spec.AcquireTime.Sub(old.Spec.RenewTime.Time)
		AddReportEntry("leader takeover after the last renewal", takeover.Round(10*time.Millisecond).String())
		Expect(takeover).To(BeNumerically(">=", lease), "not before the lease expired")
		Expect(takeover).To(BeNumerically("<=", lease+2*2200*time.Millisecond), "within the lease and the retries")
		expectPool(ctx, sbs, 300, 300)
		expectCreations(creation, 300)
	})

	It("claims during an API server and etcd restart either succeed once or fail clearly", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "demo", 30)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 30, 30)
		c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		agents := claim.New(c)

		type result struct {
			agent, pod string
			err        error
			start, end time.Time
		}
		results := make(chan result, 30)
		var started atomic.Int32
		claimAfter := func(i int, ready <-chan struct{}, delay time.Duration) {
			defer GinkgoRecover()
			<-ready
			time.Sleep(delay) // spread the load, not synchronisation
			started.Add(1)
			r := result{agent: fmt.Sprintf("agent-%d", i), start: time.Now()}
			sbx, err := agents.Claim(ctx, ns, "demo", r.agent, claim.ClaimOptions{})
			r.end, r.err = time.Now(), err
			if err == nil {
				r.pod = sbx.Name
			}
			results <- r
		}
		// Half the agents claim just before the restart, half while it runs.
		now, stopping := make(chan struct{}), make(chan struct{})
		close(now)
		for i := range 30 {
			if i%2 == 0 {
				go claimAfter(i, now, time.Duration(rand.IntN(500))*time.Millisecond)
			} else {
				go claimAfter(i, stopping, time.Duration(rand.IntN(1000))*time.Millisecond)
			}
		}
		Eventually(started.Load, timeout, time.Millisecond).Should(BeNumerically(">=", 10), "the first agents are claiming")
		down := time.Now()
		close(stopping)
		cluster("restart-apiserver")
		up := time.Now()

		var all []result
		for range 30 {
			all = append(all, <-results)
		}
		Eventually(func() error { return k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs) }, timeout, interval).Should(Succeed())
		holders := map[string]string{} // agent → Pod it holds
		for _, pod := range podsOf(ctx, Default, sbs) {
			holder := pod.Labels[agentsv1alpha1.LabelClaimedBy]
			claimed := pod.Labels[agentsv1alpha1.LabelState] == string(agentsv1alpha1.StateClaimed)
			Expect(claimed).To(Equal(holder != ""), "state and holder of %s agree", pod.Name)
			if holder != "" {
				Expect(holders).NotTo(HaveKey(holder), "%s holds two sandboxes", holder)
				holders[holder] = pod.Name
			}
		}
		succeeded, failed, overlapped := 0, 0, 0
		for _, r := range all {
			if r.start.Before(up) && r.end.After(down) {
				overlapped++
			}
			if r.err != nil {
				failed++
				GinkgoWriter.Printf("%s: %v\n", r.agent, r.err)
				// The claim package names the call that failed; a bare
				// transport error would leave an agent guessing.
				Expect(r.err.Error()).To(Or(
					MatchRegexp(`^(list pods in namespace %s|claiming sandbox %s-\w{5}|get sandboxsets in namespace %s): `, ns, sbs.Name, ns),
					HavePrefix("other agents took each of the"), HavePrefix("SandboxSet %s/%s has no available sandbox", ns, sbs.Name)))
				Expect(holders).NotTo(HaveKey(r.agent), "%s was told it failed but holds a sandbox", r.agent)
				continue
			}
			succeeded++
			Expect(holders).To(HaveKeyWithValue(r.agent, r.pod), "%s won %s and holds it", r.agent, r.pod)
		}
		Expect(holders).To(HaveLen(succeeded), "every sandbox held was won by a claim that succeeded")
		AddReportEntry("claims across the restart", fmt.Sprintf("%d succeeded, %d failed, %d in flight during the restart", succeeded, failed, overlapped))
		Expect(overlapped).To(BeNumerically(">", 0), "some claims ran while the API server was down or starting")
		expectPool(ctx, sbs, 30, 30)
	})

	It("refuses claims while the webhook is down, naming the cause, and fills the pool once it is back", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "demo", 2)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 2, 2)
		pod := podsOf(ctx, Default, sbs)[0]

		cluster("stop-manager")
		DeferCleanup(func() { cluster("start-manager") })
		err := patchLabel(ctx, &pod, agentsv1alpha1.LabelClaimedBy, "agent-1")
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(`failed calling webhook "mpod.agents.kruise.io"`))
		Expect(err.Error()).To(ContainSubstring("connection refused"))
		Expect(getPod(ctx, Default, ns, pod.Name).ResourceVersion).To(Equal(pod.ResourceVersion), "nothing half-applied")
		c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		_, err = claim.New(c).Claim(ctx, ns, "demo", "agent-1", claim.ClaimOptions{})
		Expect(err).To(MatchError(claim.ErrOperatorUnavailable))
		Expect(err.Error()).To(HavePrefix("the SandboxSet operator's admission webhook did not answer, and claims fail closed until it does; " +
			"check the operator's Pods (kubectl -n sandboxset-system get pods) and retry. The API server said: "))
		out, err := kubectl(ctx, "-n", ns, "scale", "sbs", "demo", "--replicas=5")
		Expect(err).To(HaveOccurred(), "scaling is validated by the webhook too: %s", out)
		Expect(out).To(ContainSubstring(`failed calling webhook "vsandboxset-scale.agents.kruise.io"`))

		cluster("start-manager")
		Expect(patchLabel(ctx, &pod, agentsv1alpha1.LabelClaimedBy, "agent-1")).To(Succeed())
		out, err = kubectl(ctx, "-n", ns, "scale", "sbs", "demo", "--replicas=5")
		Expect(err).NotTo(HaveOccurred(), out)
		expectPool(ctx, sbs, 5, 5)
		expectCreations(creation, 6)
	})

	It("backs off when a quota refuses Pods, says so, and recovers when the quota is raised", func(ctx SpecContext) {
		quota := &corev1.ResourceQuota{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pods"},
			Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("5")}},
		}
		Expect(k8sClient.Create(ctx, quota)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(quota), quota)).To(Succeed())
			g.Expect(quota.Status.Hard).NotTo(BeEmpty(), "the quota controller has computed the quota")
		}, timeout, interval).Should(Succeed())
		sbs := newSandboxSet(ns, "demo", 8)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		poolcheck.ExpectCondition(ctx, k8sClient, sbs, agentsv1alpha1.ConditionReplicaFailure, metav1.ConditionTrue, agentsv1alpha1.ReasonQuotaExceeded,
			"exceeded quota", timeout, interval)

		By("waiting for 4 refusals, then counting them over 10 s: a backoff, not a hot loop")
		// The per-pool backoff doubles from 100 ms: after 4 refusals the
		// retries are seconds apart, and each probes with a single creation.
		// The counter spans the manager's life, and an earlier spec may have
		// added to it: count from here.
		base, err := refusedCreates()
		if err != nil {
			base = 0 // none refused yet in this manager's life
		}
		Eventually(func() (int, error) {
			n, err := refusedCreates()
			return n - base, err
		}, timeout, interval).Should(BeNumerically(">=", 4), "refused creations counted")
		before, err := refusedCreates()
		Expect(err).NotTo(HaveOccurred())
		Consistently(func() (int, error) {
			n, err := refusedCreates()
			return n - before, err
		}, 10*time.Second, interval).Should(BeNumerically("<=", 6))
		after, err := refusedCreates()
		Expect(err).NotTo(HaveOccurred())
		AddReportEntry("refused creations in 10 s under quota, after 4", after-before)
		Expect(podsOf(ctx, Default, sbs)).To(HaveLen(5))

		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(quota), quota)).To(Succeed())
			quota.Spec.Hard[corev1.ResourcePods] = resource.MustParse("8")
			g.Expect(k8sClient.Update(ctx, quota)).To(Succeed())
		}, timeout, interval).Should(Succeed())
		expectPool(ctx, sbs, 8, 8)
		expectCreations(creation, 8)
	})

	It("replaces warm Pods that fail, are evicted or deleted, and leaves claimed ones to their holder", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "demo", 4)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 4, 4)
		pods := podsOf(ctx, Default, sbs)
		Expect(patchLabel(ctx, &pods[3], agentsv1alpha1.LabelClaimedBy, "agent-1")).To(Succeed())

		failed := pods[0].DeepCopy()
		failed.Status.Phase = corev1.PodFailed
		failed.Status.Reason = "Error"
		Expect(k8sClient.Status().Patch(ctx, failed, client.MergeFrom(&pods[0]))).To(Succeed())
		Expect(k8sClient.SubResource("eviction").Create(ctx, &pods[1], &policyv1.Eviction{})).To(Succeed())
		Expect(k8sClient.Delete(ctx, &pods[2])).To(Succeed())
		claimedFailed := getPod(ctx, Default, ns, pods[3].Name)
		gone := claimedFailed.DeepCopy()
		gone.Status.Phase = corev1.PodFailed
		Expect(k8sClient.Status().Patch(ctx, gone, client.MergeFrom(claimedFailed))).To(Succeed())

		expectPool(ctx, sbs, 4, 4)
		Eventually(func(g Gomega) {
			for _, pod := range pods[:3] {
				g.Expect(podsOf(ctx, g, sbs)).NotTo(ContainElement(HaveField("Name", pod.Name)))
			}
		}, timeout, interval).Should(Succeed())
		Consistently(func(g Gomega) {
			pod := getPod(ctx, g, ns, pods[3].Name)
			g.Expect(pod.DeletionTimestamp).To(BeNil(), "a failed claimed sandbox is its holder's to delete")
		}, holdFor, interval).Should(Succeed())
		expectCreations(creation, 8) // 4, the claim's refill, and 3 replacements
	})

	It("replaces warm Pods whose node vanishes", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "demo", 10)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 10, 10)
		victim := podsOf(ctx, Default, sbs)[0]
		node := &corev1.Node{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: victim.Spec.NodeName}, node)).To(Succeed())
		onNode := []string{}
		for _, pod := range podsOf(ctx, Default, sbs) {
			if pod.Spec.NodeName == node.Name {
				onNode = append(onNode, pod.Name)
			}
		}
		Expect(k8sClient.Delete(ctx, node)).To(Succeed())
		DeferCleanup(func() { cluster("kwokctl", "scale", "node", "--replicas", "20") })

		By("waiting for the Pod garbage collector to remove the node's Pods, and the pool to refill")
		Eventually(func(g Gomega) {
			for _, pod := range podsOf(ctx, g, sbs) {
				g.Expect(onNode).NotTo(ContainElement(pod.Name))
			}
		}, 2*timeout, interval).Should(Succeed())
		expectPool(ctx, sbs, 10, 10)
		expectCreations(creation, 10+len(onNode))
	})

	It("reports Pods that can never be scheduled, without churning them", func(ctx SpecContext) {
		sbs := newSandboxSet(ns, "demo", 2)
		sbs.Spec.Template.Spec.NodeSelector = map[string]string{"sandbox.example.com/gpu": "h100"}
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		poolcheck.ExpectCondition(ctx, k8sClient, sbs, agentsv1alpha1.ConditionReady, metav1.ConditionFalse, agentsv1alpha1.ReasonUnschedulable,
			"node(s) didn't match Pod's node affinity/selector", timeout, interval)
		uids := []string{}
		for _, pod := range podsOf(ctx, Default, sbs) {
			uids = append(uids, string(pod.UID))
		}
		Expect(uids).To(HaveLen(2))
		By("making the controller act on the pool while its Pods cannot be scheduled")
		out, err := kubectl(ctx, "-n", ns, "scale", "sbs", "demo", "--replicas=3")
		Expect(err).NotTo(HaveOccurred(), out)
		Eventually(func(g Gomega) {
			got := &agentsv1alpha1.SandboxSet{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation), "the controller has acted on the scale")
			g.Expect(got.Status.Replicas).To(Equal(int32(3)))
		}, timeout, interval).Should(Succeed())
		Consistently(func(g Gomega) {
			now := []string{}
			for _, pod := range podsOf(ctx, g, sbs) {
				now = append(now, string(pod.UID))
			}
			g.Expect(now).To(HaveLen(3))
			g.Expect(now).To(ContainElements(uids), "the unschedulable Pods were kept, not churned")
		}, holdFor, interval).Should(Succeed())
		expectCreations(creation, 3)
	})
})

// claimConcurrently claims each Pod for its own agent at once, and returns
// each claimed Pod's resourceVersion right after its claim.
func claimConcurrently(ctx context.Context, pods []corev1.Pod) map[string]string {
	GinkgoHelper()
	held := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, pod := range pods {
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			Expect(patchLabel(ctx, &pod, agentsv1alpha1.LabelClaimedBy, fmt.Sprintf("agent-%d", i))).To(Succeed())
			mu.Lock()
			held[pod.Name] = pod.ResourceVersion
			mu.Unlock()
		}()
	}
	wg.Wait()
	return held
}

// expectUntouched checks that no claimed Pod was written to after its claim.
func expectUntouched(ctx context.Context, ns string, held map[string]string) {
	GinkgoHelper()
	for name, rv := range held {
		pod := getPod(ctx, Default, ns, name)
		Expect(pod.ResourceVersion).To(Equal(rv), "claimed %s was written to after its claim", name)
		Expect(pod.DeletionTimestamp).To(BeNil())
	}
}

// leaseOf reads the manager's leader-election Lease.
func leaseOf(ctx context.Context) *coordinationv1.Lease {
	GinkgoHelper()
	lease := &coordinationv1.Lease{}
	Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: "sandboxset-system", Name: "sandboxset-manager.agents.kruise.io"}, lease)).To(Succeed())
	Expect(lease.Spec.HolderIdentity).NotTo(BeNil())
	Expect(lease.Spec.RenewTime).NotTo(BeNil())
	Expect(lease.Spec.AcquireTime).NotTo(BeNil())
	return lease
}

// clusterWith runs cluster.sh with extra settings.
func clusterWith(env []string, args ...string) {
	GinkgoHelper()
	cmd := exec.Command(filepath.Join("..", "local", "cluster.sh"), args...)
	cmd.Env = append(append(os.Environ(), clusterEnv...), env...)
	cmd.Stderr = GinkgoWriter
	Expect(cmd.Run()).To(Succeed(), "cluster.sh %v %v", env, args)
}

// leaderInstance is the manager instance (1 or 2) that leads, by
// controller-runtime's leader_election_master_status metric, or 0.
// A replica that is down or has not set the metric yet is not leading.
func leaderInstance() int {
	for _, i := range []int{1, 2} {
		if n, err := metric(fmt.Sprintf("http://127.0.0.1:%d/metrics", 18080+10*i), leaderMetric); err == nil && n == 1 {
			return i
		}
	}
	return 0
}

var (
	refusedMetric = regexp.MustCompile(`(?m)^sandboxset_pod_operations_total\{operation="create",result="Forbidden"\} (\d+)`)
	leaderMetric  = regexp.MustCompile(`(?m)^leader_election_master_status\{name="sandboxset-manager.agents.kruise.io"\} (\d+)`)
)

// refusedCreates reads manager 0's count of Pod creations the API server
// refused; an error until it has counted one.
func refusedCreates() (int, error) {
	return metric("http://127.0.0.1:18080/metrics", refusedMetric)
}

// metric reads one number from a Prometheus endpoint, or says why it cannot.
func metric(url string, re *regexp.Regexp) (int, error) {
	resp, err := http.Get(url) //nolint:gosec,noctx // a loopback test endpoint
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	m := re.FindSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("%s has no series matching %s", url, re)
	}
	return strconv.Atoi(string(m[1]))
}
