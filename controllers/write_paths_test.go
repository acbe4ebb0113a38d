package controllers

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/kubelet"
)

// The write paths the API server rarely takes, driven one Reconcile at a
// time: a reconciler whose client is the real one with controller-runtime's
// interceptor around it, so chosen calls fail as they would under a race
// or an outage while everything else reaches the API server. The suite's
// manager is stopped meanwhile, so that nothing else reconciles the pools.
var _ = Describe("Write paths", Serial, func() {
	var (
		ns  string
		sbs *agentsv1alpha1.SandboxSet
		// freezeCache stops the last syncReconciler's cache: it keeps
		// answering, with what it had seen, as a lagging cache does.
		freezeCache func()
	)
	BeforeEach(func(ctx SpecContext) {
		stopManager()
		DeferCleanup(func() { stopManager = startManager() })
		ns = newNamespace(ctx)
	})

	// syncReconciler is a reconciler over a cache of its own, whose client
	// goes through funcs.
	syncReconciler := func(ctx context.Context, funcs interceptor.Funcs) *SandboxSetReconciler {
		GinkgoHelper()
		c, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultTransform: CacheOptions().DefaultTransform, ByObject: CacheOptions().ByObject})
		Expect(err).NotTo(HaveOccurred())
		cacheCtx, stop := context.WithCancel(context.Background())
		DeferCleanup(stop)
		freezeCache = stop
		r := &SandboxSetReconciler{
			Client:    interceptor.NewClient(k8sClient, funcs),
			APIReader: k8sClient,
			Recorder:  events.NewFakeRecorder(1000),
			Options:   Options{Workers: 1, PodWriteParallelism: 8, ExpectationTTL: time.Minute},
		}
		Expect(r.prepare(ctx, c)).To(Succeed())
		go func() {
			defer GinkgoRecover()
			Expect(c.Start(cacheCtx)).To(Succeed())
		}()
		Expect(c.WaitForCacheSync(ctx)).To(BeTrue())
		return r
	}
	// reconcileUntil reconciles sbs until check passes, waiting between
	// passes for the cache to catch up with the last one's writes.
	reconcileUntil := func(ctx context.Context, r *SandboxSetReconciler, check func(g Gomega)) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			_, _ = r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(sbs)})
			check(g)
		}, timeout, 200*time.Millisecond).Should(Succeed())
	}
	newPool := func(ctx context.Context, replicas int32) {
		GinkgoHelper()
		sbs = newSandboxSet(ns, "demo", replicas)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
	}

	// scaledDownPool fills a pool of from Pods, then scales it to to.
	scaledDownPool := func(ctx context.Context, from, to int32) {
		GinkgoHelper()
		newPool(ctx, from)
		plain := syncReconciler(ctx, interceptor.Funcs{})
		reconcileUntil(ctx, plain, func(g Gomega) { g.Expect(podsOf(ctx, g, sbs)).To(HaveLen(int(from))) })
		scaleTo(ctx, sbs, to)
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
	}

	It("renames a Pod whose random name is taken, and creates exactly the pool", func(ctx SpecContext) {
		newPool(ctx, 5)
		creation := countCreations(ctx, ns)
		DeferCleanup(creation.Stop)
		var clashes atomic.Int32
		r := syncReconciler(ctx, interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*corev1.Pod); ok && clashes.Add(1) <= 2 {
				return apierrors.NewAlreadyExists(schema.GroupResource{Resource: "pods"}, obj.GetName())
			}
			return c.Create(ctx, obj, opts...)
		}})
		_, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(sbs)})
		Expect(err).NotTo(HaveOccurred(), "a name clash is retried under a new name, not an error")
		creation.expectExactly(5)
	})

	It("counts the creations its cache has not shown yet, and sends none twice", func(ctx SpecContext) {
		newPool(ctx, 5)
		creation := countCreations(ctx, ns)
		DeferCleanup(creation.Stop)
		r := syncReconciler(ctx, interceptor.Funcs{})
		freezeCache()
		for range 3 {
			_, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(sbs)})
			Expect(err).NotTo(HaveOccurred())
		}
		creation.expectExactly(5)
	})

	It("never deletes a Pod claimed between its decision and its delete", func(ctx SpecContext) {
		scaledDownPool(ctx, 2, 1)

		var claimed string
		r := syncReconciler(ctx, interceptor.Funcs{Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			if claimed == "" {
				claimed = obj.GetName()
				pod := getPod(ctx, Default, ns, claimed)
				claimPod(ctx, pod, "agent-1")
			}
			return c.Delete(ctx, obj, opts...)
		}})
		_, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(sbs)})
		Expect(err).NotTo(HaveOccurred(), "a conflicting delete is decided again, not an error")
		Expect(claimed).NotTo(BeEmpty(), "the scale-down chose a Pod")
		Expect(getPod(ctx, Default, ns, claimed).Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelClaimedBy, "agent-1"), "the claimed Pod is still there")
	})

	It("decides again when a Pod changed before its deletion", func(ctx SpecContext) {
		scaledDownPool(ctx, 3, 1)

		var conflicts atomic.Int32
		r := syncReconciler(ctx, interceptor.Funcs{Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			if conflicts.Add(1) == 1 {
				return apierrors.NewConflict(schema.GroupResource{Resource: "pods"}, obj.GetName(), errors.New("the object has been modified"))
			}
			return c.Delete(ctx, obj, opts...)
		}})
		_, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(sbs)})
		Expect(err).NotTo(HaveOccurred(), "a conflicting delete is decided again, not an error")
		Expect(podsOf(ctx, Default, sbs)).To(HaveLen(2), "the conflicted Pod was kept this pass")
		reconcileUntil(ctx, r, func(g Gomega) { g.Expect(podsOf(ctx, g, sbs)).To(HaveLen(1)) })
	})

	It("keeps observedGeneration back while its status cannot be written", func(ctx SpecContext) {
		newPool(ctx, 1)
		var failing atomic.Bool
		failing.Store(true)
		r := syncReconciler(ctx, interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if failing.Load() {
				return apierrors.NewServiceUnavailable("etcd is down")
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		}})
		_, err := r.Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(sbs)})
		Expect(err).To(MatchError(ContainSubstring("updating SandboxSet status: etcd is down")))
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		Expect(sbs.Status.ObservedGeneration).To(BeZero())

		failing.Store(false)
		reconcileUntil(ctx, r, func(g Gomega) {
			got := &agentsv1alpha1.SandboxSet{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(got.Status.Replicas).To(Equal(int32(1)))
		})
	})

	It("writes the status it computes even when its cached SandboxSet still shows an older write", func(ctx SpecContext) {
		newPool(ctx, 1)
		var pinned atomic.Pointer[agentsv1alpha1.SandboxSet]
		r := syncReconciler(ctx, interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if stale, ok := obj.(*agentsv1alpha1.SandboxSet); ok && pinned.Load() != nil {
				pinned.Load().DeepCopyInto(stale)
				return nil
			}
			return c.Get(ctx, key, obj, opts...)
		}})
		stored := func(g Gomega) *agentsv1alpha1.SandboxSet {
			got := &agentsv1alpha1.SandboxSet{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
			return got
		}
		By("a first status: one creating")
		reconcileUntil(ctx, r, func(g Gomega) { g.Expect(stored(g).Status.Replicas).To(Equal(int32(1))) })
		first := stored(Default)
		Expect(first.Status.AvailableReplicas).To(BeZero())

		By("a second: it is available")
		pod := podsOf(ctx, Default, sbs)[0]
		Expect(kubelet.SetReady(ctx, k8sClient, &pod, true)).To(Succeed())
		reconcileUntil(ctx, r, func(g Gomega) { g.Expect(stored(g).Status.AvailableReplicas).To(Equal(int32(1))) })

		By("back to creating, read through a cache that still shows the first status")
		pod = *getPod(ctx, Default, ns, pod.Name)
		Expect(kubelet.SetReady(ctx, k8sClient, &pod, false)).To(Succeed())
		pinned.Store(first)
		reconcileUntil(ctx, r, func(g Gomega) {
			g.Expect(stored(g).Status.AvailableReplicas).To(BeZero(), "the status computed equals the stale copy's, and is written all the same")
		})
	})

	It("probes with one creation after a refused pass, however stale the status it reads", func(ctx SpecContext) {
		newPool(ctx, 10)
		var mu sync.Mutex
		calls := 0
		var quotaRaised atomic.Bool
		r := syncReconciler(ctx, interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				mu.Lock()
				calls++
				mu.Unlock()
				if quotaRaised.Load() {
					return c.Create(ctx, obj, opts...)
				}
				return apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, obj.GetName(), errors.New("exceeded quota: pods"))
			},
			// The status that says ReplicaFailure is never written: the
			// decision cannot come from it.
			SubResourcePatch: func(context.Context, client.Client, string, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
				return nil
			},
		})
		request := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(sbs)}
		_, err := r.Reconcile(ctx, request)
		Expect(err).To(MatchError(ContainSubstring("exceeded quota")))
		mu.Lock()
		first := calls
		calls = 0
		mu.Unlock()
		Expect(first).To(BeNumerically("<=", 8), "after the first refusal no new creation is sent")

		By("a pass inside the backoff, as a Pod event wakes it, sends nothing")
		result, err := r.Reconcile(ctx, request)
		Expect(err).NotTo(HaveOccurred(), "waiting out a backoff is no failure")
		Expect(result.RequeueAfter).To(And(BeNumerically(">", 0), BeNumerically("<=", 100*time.Millisecond)),
			"the pass asks to come back when the backoff ends")
		mu.Lock()
		Expect(calls).To(BeZero(), "no creation inside the backoff")
		mu.Unlock()

		By("the first pass after it probes with one creation, even when the quota now allows them all")
		quotaRaised.Store(true)
		Eventually(func() int {
			_, _ = r.Reconcile(ctx, request)
			mu.Lock()
			defer mu.Unlock()
			return calls
		}, timeout, 20*time.Millisecond).ShouldNot(BeZero())
		mu.Lock()
		defer mu.Unlock()
		Expect(calls).To(Equal(1), "the probe is one creation")
	})

	Describe("adopting orphans", func() {
		// orphan creates a Pod of the pool that no controller owns, as an
		// orphaning delete of its SandboxSet leaves it.
		orphan := func(ctx context.Context, name string) *corev1.Pod {
			GinkgoHelper()
			pod := newPod(sbs, name, sbs.Spec.Revision())
			pod.OwnerReferences = nil
			Expect(k8sClient.Create(ctx, pod)).To(Succeed())
			return pod
		}

		It("adopts the pool's orphans instead of creating Pods", func(ctx SpecContext) {
			newPool(ctx, 2)
			orphans := []*corev1.Pod{orphan(ctx, "demo-orph1"), orphan(ctx, "demo-orph2")}
			creation := countCreations(ctx, ns)
			DeferCleanup(creation.Stop)
			r := syncReconciler(ctx, interceptor.Funcs{})
			reconcileUntil(ctx, r, func(g Gomega) {
				for _, pod := range orphans {
					g.Expect(metav1.IsControlledBy(getPod(ctx, g, ns, pod.Name), sbs)).To(BeTrue())
				}
			})
			creation.expectExactly(2) // the orphans themselves
		})

		It("never adopts a Pod claimed since the cache saw it", func(ctx SpecContext) {
			newPool(ctx, 1)
			stale := orphan(ctx, "demo-orph1")
			claimed := stale.DeepCopy()
			claimed.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1"
			Expect(k8sClient.Patch(ctx, claimed, client.MergeFrom(stale))).To(Succeed())
			r := syncReconciler(ctx, interceptor.Funcs{})
			adopted, err := r.adoptOrphans(ctx, sbs, []*corev1.Pod{stale})
			Expect(err).NotTo(HaveOccurred())
			Expect(adopted).To(BeEmpty())
			Expect(getPod(ctx, Default, ns, stale.Name).OwnerReferences).To(BeEmpty(), "the claimed Pod stays its holder's")
		})

		It("adopts nothing for a SandboxSet the cache shows but the API server no longer has", func(ctx SpecContext) {
			newPool(ctx, 1)
			gone := sbs.DeepCopy()
			Expect(k8sClient.Delete(ctx, sbs)).To(Succeed())
			newPool(ctx, 1) // a namesake, as after delete --cascade=orphan and a re-create
			orphan := orphan(ctx, "demo-orph1")
			r := syncReconciler(ctx, interceptor.Funcs{})
			adopted, err := r.adoptOrphans(ctx, gone, []*corev1.Pod{orphan})
			Expect(err).NotTo(HaveOccurred())
			Expect(adopted).To(BeEmpty())
			Expect(getPod(ctx, Default, ns, orphan.Name).OwnerReferences).To(BeEmpty(), "not handed to a deleted owner, for the garbage collector")
		})
	})
})
