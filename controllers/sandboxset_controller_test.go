package controllers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/kubelet"
	"github.com/sandboxset/warmpool/test/poolcheck"
)

var _ = Describe("SandboxSet warm pool", func() {
	var (
		ns       string
		sbs      *agentsv1alpha1.SandboxSet
		creation *creationCounter
	)

	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		creation = countCreations(context.Background(), ns)
		DeferCleanup(creation.Stop)
	})

	create := func(ctx context.Context, replicas int32) {
		sbs = newSandboxSet(ns, "demo", replicas)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
	}

	It("walks the seed's four stages: full, claimed, refilling, restored", func(ctx SpecContext) {
		create(ctx, 3)
		By("creating three Pods with the pool's labels and owner")
		Eventually(func(g Gomega) {
			pods := podsOf(ctx, g, sbs, agentsv1alpha1.StateCreating)
			g.Expect(pods).To(HaveLen(3))
			got := &agentsv1alpha1.SandboxSet{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
			g.Expect(got.Status.UpdateRevision).NotTo(BeEmpty())
			for _, pod := range pods {
				g.Expect(pod.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelRevision, got.Status.UpdateRevision))
				g.Expect(pod.Annotations).To(HaveKeyWithValue("foo", "bar"))
				g.Expect(metav1.IsControlledBy(&pod, got)).To(BeTrue())
			}
		}, timeout, interval).Should(Succeed())
		expectPool(ctx, sbs, 3, 0)

		By("stage 1: the pool is ready, 3 of 3 available")
		makeReady(ctx, sbs)
		expectPool(ctx, sbs, 3, 3)

		By("stage 2: an agent claims a sandbox; it leaves the pool")
		stages := func() []uint64 {
			var counts []uint64
			for _, stage := range []string{stageSeen, stageReconciling, stageCreated} {
				counts = append(counts, histogramCount("sandboxset_claim_replacement_stage_seconds", map[string]string{"stage": stage}))
			}
			return counts
		}
		before := stages()
		claimed := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)[0]
		claimPod(ctx, &claimed, "agent-1")
		Eventually(func(g Gomega) {
			pod := getPod(ctx, g, ns, claimed.Name)
			g.Expect(pod.OwnerReferences).To(BeEmpty(), "released from the SandboxSet")
			g.Expect(pod.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)))
			g.Expect(pod.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelSandboxSet, "demo"), "kept for traceability")
		}, timeout, interval).Should(Succeed())

		expectEvent(ctx, sbs, "SandboxLeftPool", fmt.Sprintf("Sandbox %s claimed by agent-1 left the pool", claimed.Name))

		By("stage 3: a replacement is creating at once; 3 replicas, 2 available")
		expectPool(ctx, sbs, 3, 2)
		Eventually(func(g Gomega) {
			after := stages()
			for i := range after {
				g.Expect(after[i]).To(BeNumerically(">", before[i]), "every stage of the replacement timed: %v, then %v", before, after)
			}
		}, timeout, interval).Should(Succeed())
		Expect(podsOf(ctx, Default, sbs, agentsv1alpha1.StateCreating)).To(HaveLen(1))

		By("stage 4: the replacement is ready; 3 of 3 available again")
		makeReady(ctx, sbs)
		expectPool(ctx, sbs, 3, 3)
		creation.expectExactly(4)

		By("never touching the claimed Pod again")
		released := getPod(ctx, Default, ns, claimed.Name)
		Consistently(func(g Gomega) {
			g.Expect(getPod(ctx, g, ns, claimed.Name).ResourceVersion).To(Equal(released.ResourceVersion))
		}, holdFor, interval).Should(Succeed())
	})

	It("folds the events every claim brings into one Event per reason, whichever the pool's version", func(ctx SpecContext) {
		create(ctx, 1)
		makeReadyWhenCreated(ctx, sbs, 1)
		expectPool(ctx, sbs, 1, 1)
		replaced := func() uint64 {
			return histogramCount("sandboxset_claim_replacement_stage_seconds", map[string]string{"stage": stageCreated})
		}
		before := replaced()
		for i := range 2 {
			// Each claim of the only sandbox flips Ready, a status write
			// and a new version of the pool, between its events.
			pod := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)[0]
			claimPod(ctx, &pod, fmt.Sprintf("agent-%d", i))
			expectPool(ctx, sbs, 1, 0)
			makeReadyWhenCreated(ctx, sbs, 1)
			expectPool(ctx, sbs, 1, 1)
		}
		Eventually(replaced, timeout, interval).Should(BeNumerically(">=", before+2), "both replacements recorded")
		eventsAbout := func(reason, action string) int {
			events := &eventsv1.EventList{}
			Expect(k8sClient.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			n := 0
			for _, e := range events.Items {
				if e.Regarding.Name == sbs.Name && e.Reason == reason && e.Action == action {
					n++
				}
			}
			return n
		}
		Eventually(func() int { return eventsAbout("SandboxClaimed", "Refill") }, timeout, interval).Should(Equal(1))
		Consistently(func() []int {
			return []int{eventsAbout("SuccessfulCreate", "Create"), eventsAbout("SandboxClaimed", "Refill")}
		}, holdFor, interval).Should(Equal([]int{1, 1}), "the fill and two refills, and the two claims, as one series each")
	})

	It("shows the seed's columns in kubectl get sbs, and readiness in -o wide", func(ctx SpecContext) {
		get := func(args ...string) [][]string {
			out := kubectl(ctx, append([]string{"get", "sbs", "-n", ns}, args...)...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			Expect(lines).To(HaveLen(2), out)
			return [][]string{strings.Fields(lines[0]), strings.Fields(lines[1])}
		}
		create(ctx, 2)
		expectPool(ctx, sbs, 2, 0)
		got := &agentsv1alpha1.SandboxSet{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
		table := get()
		Expect(table[1][:4]).To(Equal([]string{"demo", "2", "0", got.Status.UpdateRevision}), "0 available, not blank")
		Expect(get("-o", "wide")[1][5:]).To(Equal([]string{"2", "2", "False", agentsv1alpha1.ReasonSandboxesCreating}), "desired, updated, ready, reason")

		makeReady(ctx, sbs)
		expectPool(ctx, sbs, 2, 2)
		table = get()
		Expect(table[0]).To(Equal([]string{"NAME", "REPLICAS", "AVAILABLE", "UPDATEREVISION", "AGE"}))
		Expect(table[1][:4]).To(Equal([]string{"demo", "2", "2", got.Status.UpdateRevision}))
		Expect(got.Status.UpdateRevision).To(MatchRegexp(`^[a-z0-9]{6,10}$`), "a short hash like pod-template-hash")
		Eventually(func(g Gomega) {
			wide := get("-o", "wide")
			g.Expect(wide[0]).To(Equal([]string{"NAME", "REPLICAS", "AVAILABLE", "UPDATEREVISION", "AGE", "DESIRED", "UPDATED", "READY", "REASON",
				"TARGET", "WARMHIT", "RATE", "REFILL", "SIZEDBY"}), "the autoscaler's columns, blank for a pool that is not autoscaled")
			g.Expect(wide[1][5:]).To(Equal([]string{"2", "2", "True", agentsv1alpha1.ReasonPoolReady}))
		}, timeout, interval).Should(Succeed())
	})

	It("counts a sandbox created already claimed as a cold claim, and leaves the pool as it was", func(ctx SpecContext) {
		create(ctx, 1)
		makeReadyWhenCreated(ctx, sbs, 1)
		expectPool(ctx, sbs, 1, 1)
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		claims := func() float64 {
			return counterValue("sandboxset_claims_total", map[string]string{"namespace": ns, "sandboxset": "demo"})
		}
		Expect(claims()).To(BeZero())

		cold := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo-cold1", Labels: map[string]string{
				agentsv1alpha1.LabelSandboxSet: "demo",
				agentsv1alpha1.LabelState:      string(agentsv1alpha1.StateClaimed),
				agentsv1alpha1.LabelClaimedBy:  "agent-9",
				agentsv1alpha1.LabelRevision:   sbs.Status.UpdateRevision,
			}},
			Spec: sbs.Spec.Template.Spec,
		}
		Expect(k8sClient.Create(ctx, cold)).To(Succeed())
		expectEvent(ctx, sbs, "SandboxClaimed", "Sandbox demo-cold1 claimed by agent-9, created cold from the template: the pool had none available")
		Expect(claims()).To(Equal(1.0))
		Consistently(func(g Gomega) {
			g.Expect(podsOf(ctx, g, sbs, agentsv1alpha1.StateAvailable)).To(HaveLen(1), "a cold claim takes nothing from the pool")
			g.Expect(podsOf(ctx, g, sbs, agentsv1alpha1.StateCreating)).To(BeEmpty(), "and adds nothing to it")
		}, holdFor, interval).Should(Succeed())
		creation.expectExactly(2)
	})

	It("scales up and down through the scale subresource, creating Pods first to go, then the newest", func(ctx SpecContext) {
		By("growing to 3 one Pod at a time, each created in a later second than the last")
		create(ctx, 1)
		makeReadyWhenCreated(ctx, sbs, 1)
		for n := int32(2); n <= 3; n++ {
			// Creation timestamps have a one-second resolution.
			newest := podsOf(ctx, Default, sbs)[0].CreationTimestamp.Time
			for _, pod := range podsOf(ctx, Default, sbs) {
				newest = latest(newest, pod.CreationTimestamp.Time)
			}
			Eventually(func() time.Time { return time.Now().Truncate(time.Second) }, timeout, interval).Should(BeTemporally(">", newest))
			scaleTo(ctx, sbs, n)
			makeReadyWhenCreated(ctx, sbs, 1)
		}
		expectPool(ctx, sbs, 3, 3)

		By("scaling to 5 as kubectl scale does")
		scale := &autoscalingv1.Scale{}
		Expect(k8sClient.SubResource("scale").Get(ctx, sbs, scale)).To(Succeed())
		Expect(scale.Status.Replicas).To(Equal(int32(3)))
		Expect(scale.Status.Selector).To(Equal("agents.kruise.io/sandboxset=demo,agents.kruise.io/state in (available,creating)"))
		scaleTo(ctx, sbs, 5)
		expectPool(ctx, sbs, 5, 3)

		By("scaling to 2: the two creating Pods go first, then the newest available one")
		available := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)
		Expect(available).To(HaveLen(3))
		slices.SortFunc(available, func(a, b corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
		scaleTo(ctx, sbs, 2)
		expectPool(ctx, sbs, 2, 2)
		Expect(podsOf(ctx, Default, sbs)).To(ConsistOf(HaveField("Name", available[0].Name), HaveField("Name", available[1].Name)),
			"the two oldest available Pods stay")
		creation.expectExactly(5)
	})

	It("rolls warm Pods to a new template within maxUnavailable and leaves claimed Pods at their revision", func(ctx SpecContext) {
		sbs = newSandboxSet(ns, "demo", 4)
		one := intstr.FromInt32(1)
		sbs.Spec.UpdateStrategy.MaxUnavailable = &one
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		makeReadyWhenCreated(ctx, sbs, 4)
		expectPool(ctx, sbs, 4, 4)
		claimed := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)[0]
		claimPod(ctx, &claimed, "agent-1")
		makeReadyWhenCreated(ctx, sbs, 1)
		expectPool(ctx, sbs, 4, 4)
		oldRevision := claimed.Labels[agentsv1alpha1.LabelRevision]
		claimedRV := getPod(ctx, Default, ns, claimed.Name).ResourceVersion

		By("changing the template")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		sbs.Spec.Template.Spec.Containers[0].Image = "nginx:1.29-alpine"
		Expect(k8sClient.Update(ctx, sbs)).To(Succeed())
		newRevision := sbs.Spec.Revision()
		Expect(newRevision).NotTo(Equal(oldRevision))

		for step := 1; step <= 4; step++ {
			By("replacing one warm Pod at a time")
			Eventually(func(g Gomega) {
				g.Expect(updatedPods(ctx, g, sbs, newRevision)).To(HaveLen(step))
				g.Expect(podsOf(ctx, g, sbs, agentsv1alpha1.StateAvailable)).To(HaveLen(3))
			}, timeout, interval).Should(Succeed())
			// A pass relabels the Pod that just turned Ready before it deletes
			// the next old one, so a fourth may be available for a moment.
			Consistently(func(g Gomega) {
				g.Expect(len(podsOf(ctx, g, sbs, agentsv1alpha1.StateAvailable))).To(BeNumerically(">=", 3), "never more than maxUnavailable=1 down")
			}, holdFor/4, interval).Should(Succeed())
			makeReady(ctx, sbs)
		}
		expectPool(ctx, sbs, 4, 4)
		Expect(updatedPods(ctx, Default, sbs, newRevision)).To(HaveLen(4))

		claimedNow := getPod(ctx, Default, ns, claimed.Name)
		Expect(claimedNow.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelRevision, oldRevision))
		Expect(claimedNow.ResourceVersion).To(Equal(claimedRV))
		creation.expectExactly(9)
	})

	It("moves a Pod back to creating when it loses readiness", func(ctx SpecContext) {
		create(ctx, 2)
		makeReadyWhenCreated(ctx, sbs, 2)
		expectPool(ctx, sbs, 2, 2)
		pod := podsOf(ctx, Default, sbs)[0]
		Expect(kubelet.SetReady(ctx, k8sClient, &pod, false)).To(Succeed())
		expectPool(ctx, sbs, 2, 1)
		Expect(getPod(ctx, Default, ns, pod.Name).Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateCreating)))
		creation.expectExactly(2)
	})

	It("replaces Pods that fail, are evicted or are deleted", func(ctx SpecContext) {
		create(ctx, 3)
		makeReadyWhenCreated(ctx, sbs, 3)
		expectPool(ctx, sbs, 3, 3)
		pods := podsOf(ctx, Default, sbs)
		Expect(kubelet.SetFailed(ctx, k8sClient, &pods[0], "Error")).To(Succeed())
		Expect(kubelet.SetFailed(ctx, k8sClient, &pods[1], "Evicted")).To(Succeed())
		Expect(k8sClient.Delete(ctx, &pods[2])).To(Succeed())

		Eventually(func(g Gomega) {
			for _, gone := range pods {
				g.Expect(podsOf(ctx, g, sbs)).NotTo(ContainElement(HaveField("Name", gone.Name)))
			}
		}, timeout, interval).Should(Succeed())
		makeReadyWhenCreated(ctx, sbs, 3)
		expectPool(ctx, sbs, 3, 3)
		creation.expectExactly(6)
	})

	It("reports Pods that cannot be scheduled, without churning them", func(ctx SpecContext) {
		create(ctx, 1)
		var pod corev1.Pod
		Eventually(func(g Gomega) {
			pods := podsOf(ctx, g, sbs)
			g.Expect(pods).To(HaveLen(1))
			pod = pods[0]
		}, timeout, interval).Should(Succeed())
		Expect(kubelet.SetUnschedulable(ctx, k8sClient, &pod, "0/3 nodes are available: 3 Insufficient cpu.")).To(Succeed())
		poolcheck.ExpectCondition(ctx, k8sClient, sbs, agentsv1alpha1.ConditionReady, metav1.ConditionFalse, agentsv1alpha1.ReasonUnschedulable,
			"Insufficient cpu", timeout, interval)
		Consistently(func(g Gomega) {
			g.Expect(podsOf(ctx, g, sbs)).To(ConsistOf(HaveField("UID", pod.UID)))
		}, holdFor, interval).Should(Succeed())
	})

	It("says when a quota refuses Pods, and fills the pool once the quota allows", func(ctx SpecContext) {
		// Read without creating the series: an absent series must not pass
		// as zero refusals. The counter spans the suite: count from here.
		refused := func() float64 {
			return counterValue("sandboxset_pod_operations_total", map[string]string{"operation": "create", "result": "Forbidden"})
		}
		base := refused()
		quota := setPodQuota(ctx, ns, nil, 2)
		create(ctx, 3)
		poolcheck.ExpectCondition(ctx, k8sClient, sbs, agentsv1alpha1.ConditionReplicaFailure, metav1.ConditionTrue, agentsv1alpha1.ReasonQuotaExceeded,
			"exceeded quota", timeout, interval)
		Expect(podsOf(ctx, Default, sbs)).To(HaveLen(2))
		replicaFailure := poolCondition.WithLabelValues(ns, sbs.Name, agentsv1alpha1.ConditionReplicaFailure)
		Eventually(func() float64 { return testutil.ToFloat64(replicaFailure) }, timeout, interval).Should(Equal(1.0), "the condition's metric, for alerts")

		By("backing off: after 3 refusals, at most 4 more in 5 s")
		Eventually(func() float64 { return refused() - base }, timeout, interval).Should(BeNumerically(">=", 3), "refused creations counted")
		before := refused()
		Consistently(func(g Gomega) {
			g.Expect(refused()-before).To(BeNumerically("<=", 4), "a backoff, not a hot loop")
			got := &agentsv1alpha1.SandboxSet{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, agentsv1alpha1.ConditionReplicaFailure)).To(BeTrue(),
				"the passes that wait out the backoff keep reporting the refusal")
		}, 5*time.Second, interval).Should(Succeed())

		setPodQuota(ctx, ns, quota, 3)
		makeReadyWhenCreated(ctx, sbs, 3)
		expectPool(ctx, sbs, 3, 3)
		got := &agentsv1alpha1.SandboxSet{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
		Expect(meta.IsStatusConditionFalse(got.Status.Conditions, agentsv1alpha1.ConditionReplicaFailure)).To(BeTrue())
		Expect(meta.IsStatusConditionTrue(got.Status.Conditions, agentsv1alpha1.ConditionReady)).To(BeTrue())
		Expect(testutil.ToFloat64(replicaFailure)).To(BeZero())
		Expect(testutil.ToFloat64(poolCondition.WithLabelValues(ns, sbs.Name, agentsv1alpha1.ConditionReady))).To(Equal(1.0))
	})

	It("releases claimed Pods so that deleting the SandboxSet leaves them to their holder", func(ctx SpecContext) {
		create(ctx, 3)
		makeReadyWhenCreated(ctx, sbs, 3)
		expectPool(ctx, sbs, 3, 3)
		claimed := podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)[0]
		claimPod(ctx, &claimed, "agent-1")
		expectPool(ctx, sbs, 3, 2)

		Expect(k8sClient.Delete(ctx, sbs)).To(Succeed())
		// envtest runs no garbage collector: what it would delete is exactly
		// what still names the SandboxSet as owner.
		Expect(podsOf(ctx, Default, sbs)).To(HaveLen(4), "three warm, one claimed")
		for _, pod := range podsOf(ctx, Default, sbs) {
			if pod.Name == claimed.Name {
				Expect(pod.OwnerReferences).To(BeEmpty(), "the claimed Pod survives the SandboxSet")
				Expect(pod.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, "agent-1"))
			} else {
				Expect(metav1.GetControllerOf(&pod)).NotTo(BeNil(), "warm Pods go with the SandboxSet")
			}
		}
	})

	It("creates a 1,000-Pod pool with exactly 1,000 creations", func(ctx SpecContext) {
		create(ctx, 1000)
		Eventually(func(g Gomega) {
			g.Expect(podsOf(ctx, g, sbs)).To(HaveLen(1000))
		}, 2*timeout, interval).Should(Succeed())
		expectPool(ctx, sbs, 1000, 0)
		makeReady(ctx, sbs)
		expectPool(ctx, sbs, 1000, 1000)
		creation.expectExactly(1000)
		Expect(podsOf(ctx, Default, sbs)).To(HaveLen(1000))
	}, SpecTimeout(4*timeout))
})

var _ = Describe("Short expectations", Serial, func() {
	It("create nothing extra once they expire: the cache confirms every creation first", func(ctx SpecContext) {
		const ttl = 2 * time.Second
		tuneManager(func(o *Options) { o.ExpectationTTL = ttl })
		ns := newNamespace(ctx)
		creation := countCreations(context.Background(), ns)
		defer creation.Stop()
		sbs := newSandboxSet(ns, "demo", 50)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(podsOf(ctx, g, sbs)).To(HaveLen(50)) }, timeout, interval).Should(Succeed())
		makeReady(ctx, sbs)
		expectPool(ctx, sbs, 50, 50)
		By("holding well past the expectations' lifetime")
		Consistently(creation.Counted, 3*ttl, interval).Should(Equal(50), "Pods ever created")
	})
})

var _ = Describe("A long status interval", Serial, func() {
	It("never writes a claim refilled within it, and writes one that is not once it has passed", func(ctx SpecContext) {
		const statusInterval = 8 * time.Second
		tuneManager(func(o *Options) { o.StatusInterval = statusInterval })
		ns := newNamespace(ctx)
		sbs := newSandboxSet(ns, "demo", 2)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		makeReadyWhenCreated(ctx, sbs, 2)
		poolcheck.ExpectCondition(ctx, k8sClient, sbs, agentsv1alpha1.ConditionReady, metav1.ConditionTrue, agentsv1alpha1.ReasonPoolReady,
			"all 2 sandboxes are available", statusInterval+timeout, interval)
		stored := &agentsv1alpha1.SandboxSet{}
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), stored)).To(Succeed())
		resourceVersion := func(g Gomega) string {
			got := &agentsv1alpha1.SandboxSet{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
			return got.ResourceVersion
		}
		By("holding a full pool unwritten for an interval, so that the next write waits on the claim, not on the last write")
		Consistently(resourceVersion, statusInterval, interval).Should(Equal(stored.ResourceVersion))

		By("claiming a sandbox and making its replacement Ready within the interval")
		claimedAt := time.Now()
		claimPod(ctx, &podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)[0], "agent-1")
		makeReadyWhenCreated(ctx, sbs, 1)
		Expect(time.Since(claimedAt)).To(BeNumerically("<", statusInterval*3/4), "the refill must end well within the interval for this spec")
		Consistently(resourceVersion, time.Until(claimedAt.Add(statusInterval+2*time.Second)), interval).Should(Equal(stored.ResourceVersion),
			"neither the claim nor its refill written")

		By("claiming another and leaving its replacement creating: written once the interval has passed")
		claimedAt = time.Now()
		claimPod(ctx, &podsOf(ctx, Default, sbs, agentsv1alpha1.StateAvailable)[0], "agent-2")
		Consistently(resourceVersion, statusInterval-time.Second, interval).Should(Equal(stored.ResourceVersion), "not before the interval")
		poolcheck.ExpectCondition(ctx, k8sClient, sbs, agentsv1alpha1.ConditionReady, metav1.ConditionFalse, agentsv1alpha1.ReasonSandboxesCreating,
			"1 of 2 sandboxes are available", timeout, interval)
		GinkgoWriter.Printf("the claim's status written %s after it\n", time.Since(claimedAt).Round(time.Millisecond))
	})
})

var _ = Describe("A manager restart", Serial, func() {
	It("finishes a refill it was stopped in the middle of, without over-creation", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		creation := countCreations(context.Background(), ns)
		defer creation.Stop()
		sbs := newSandboxSet(ns, "demo", 400)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())

		By("stopping the manager once the first Pods exist")
		Eventually(creation.Count, timeout, interval/10).Should(BeNumerically(">", 0))
		stopManager()
		stopped := creation.Count()
		GinkgoWriter.Printf("manager stopped with %d of 400 Pods created\n", stopped)

		By("starting a fresh manager with a cold cache")
		stopManager = startManager()
		Eventually(func(g Gomega) {
			g.Expect(podsOf(ctx, g, sbs)).To(HaveLen(400))
		}, 2*timeout, interval).Should(Succeed())
		expectPool(ctx, sbs, 400, 0)
		creation.expectExactly(400)
	})
})

// makeReadyWhenCreated waits for n creating Pods and makes them Ready.
func makeReadyWhenCreated(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, n int) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(podsOf(ctx, g, sbs, agentsv1alpha1.StateCreating)).To(HaveLen(n))
	}, timeout, interval).Should(Succeed())
	makeReady(ctx, sbs)
}

// scaleTo sets replicas through the scale subresource, as kubectl scale and
// an HPA do.
func scaleTo(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, replicas int32) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		scale := &autoscalingv1.Scale{}
		g.Expect(k8sClient.SubResource("scale").Get(ctx, sbs, scale)).To(Succeed())
		scale.Spec.Replicas = replicas
		g.Expect(k8sClient.SubResource("scale").Update(ctx, sbs, client.WithSubResourceBody(scale))).To(Succeed())
	}, timeout, interval).Should(Succeed())
}

func updatedPods(ctx context.Context, g Gomega, sbs *agentsv1alpha1.SandboxSet, revision string) []corev1.Pod {
	var out []corev1.Pod
	for _, pod := range podsOf(ctx, g, sbs) {
		if pod.Labels[agentsv1alpha1.LabelRevision] == revision && !agentsv1alpha1.IsClaimed(&pod) {
			out = append(out, pod)
		}
	}
	return out
}

// setPodQuota creates or updates a ResourceQuota on Pods. With no
// controller-manager to compute it, the test also fills in status.hard, which
// the quota admission plugin enforces and then keeps status.used of itself.
func setPodQuota(ctx context.Context, ns string, quota *corev1.ResourceQuota, pods int64) *corev1.ResourceQuota {
	GinkgoHelper()
	hard := corev1.ResourceList{corev1.ResourcePods: *resourceQuantity(pods)}
	if quota == nil {
		quota = &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pods"}, Spec: corev1.ResourceQuotaSpec{Hard: hard}}
		Expect(k8sClient.Create(ctx, quota)).To(Succeed())
		quota.Status.Used = corev1.ResourceList{corev1.ResourcePods: *resourceQuantity(0)}
	}
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(quota), quota)).To(Succeed())
		quota.Spec.Hard = hard
		g.Expect(k8sClient.Update(ctx, quota)).To(Succeed())
		quota.Status.Hard = hard
		if quota.Status.Used == nil {
			quota.Status.Used = corev1.ResourceList{corev1.ResourcePods: *resourceQuantity(0)}
		}
		g.Expect(k8sClient.Status().Update(ctx, quota)).To(Succeed())
	}, timeout, interval).Should(Succeed())
	return quota
}

// kubectl runs the real kubectl against the test API server as an admin.
func kubectl(ctx context.Context, args ...string) string {
	GinkgoHelper()
	user, err := testEnv.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(path, kubeconfig, 0o600)).To(Succeed())
	out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", path}, args...)...).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	return string(out)
}

var _ = Describe("The SandboxSet schema", func() {
	DescribeTable("refuses at create", func(ctx SpecContext, mutate func(*agentsv1alpha1.SandboxSet), field string) {
		sbs := newSandboxSet(newNamespace(ctx), "demo", 1)
		mutate(sbs)
		err := k8sClient.Create(ctx, sbs)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(field))
	},
		Entry("negative replicas", func(s *agentsv1alpha1.SandboxSet) { s.Spec.Replicas = ptr.To[int32](-1) }, "spec.replicas"),
		Entry("unknown persistent content", func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.PersistentContents = []agentsv1alpha1.PersistentContent{"gpu"}
		}, "spec.persistentContents[0]"),
		Entry("repeated persistent content", func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.PersistentContents = []agentsv1alpha1.PersistentContent{"ip", "ip"}
		}, "spec.persistentContents[1]"),
	)

	It("defaults replicas and maxUnavailable", func(ctx SpecContext) {
		sbs := newSandboxSet(newNamespace(ctx), "defaults", 0)
		raw := map[string]any{
			"apiVersion": "agents.kruise.io/v1alpha1", "kind": "SandboxSet",
			"metadata": map[string]any{"name": "defaults", "namespace": sbs.Namespace},
			"spec":     map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": "i"}}}}},
		}
		u := &unstructured.Unstructured{Object: raw}
		Expect(k8sClient.Create(ctx, u)).To(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		Expect(sbs.Spec.Replicas).To(HaveValue(Equal(int32(1))))
		Expect(sbs.Spec.UpdateStrategy.MaxUnavailable).To(HaveValue(Equal(intstr.FromString("25%"))))
	})
})

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
