// Package controllers holds the SandboxSet warm-pool controller.
package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// Options tune the controller. The zero value is not useful; see cmd/manager
// for the defaults.
type Options struct {
	// Workers is how many SandboxSets reconcile at once.
	Workers int
	// PodWriteParallelism bounds the Pod writes the controller has in flight,
	// across all SandboxSets.
	PodWriteParallelism int
	// ExpectationTTL is how long a creation or deletion may go unseen in the
	// cache before the controller stops counting on it.
	ExpectationTTL time.Duration
	// StatusInterval is how long a change of a pool's status that claims
	// and refills make (its counts, and Ready's flip while it refills)
	// waits to be written, and the least time between two such writes:
	// under a stream of claims, a write per claim would cost the API
	// server as much as the claims, and a refill that ends within it is
	// never written. Other changes of a condition, the generation or the
	// revision are written at once. 0 writes every change.
	StatusInterval time.Duration
	// BlockedCIDRs are the addresses a pool's NetworkPolicy keeps sandboxes
	// from, beside other Pods and the API server (DefaultBlockedCIDRs).
	BlockedCIDRs []netip.Prefix
}

// A failed pass, and a pool whose creations were refused, retries after
// firstRetry, doubling up to maxRetry.
const (
	firstRetry = 100 * time.Millisecond
	maxRetry   = 30 * time.Second
)

// SandboxSetReconciler keeps each SandboxSet's warm pool full.
type SandboxSetReconciler struct {
	client.Client
	// APIReader reads straight from the API server, for the decisions a
	// stale cache must not make: adopting orphans.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Options   Options

	expectations *expectations
	refills      *refillClock
	demand       *demandTracker
	statusWrites *statusWrites
	// writeSlots holds a token per Pod write in flight.
	writeSlots chan struct{}
	// pods reads the cached Pods by pool (poolIndex).
	pods toolscache.Indexer
}

// +kubebuilder:rbac:groups=agents.kruise.io,resources=sandboxsets,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=agents.kruise.io,resources=sandboxsets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one SandboxSet's pool to its spec and reports its status.
func (r *SandboxSetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	started := time.Now()
	sbs := &agentsv1alpha1.SandboxSet{}
	if err := r.Get(ctx, req.NamespacedName, sbs); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("getting SandboxSet: %w", err)
	}

	pods, err := r.listPods(sbs)
	if err != nil {
		return ctrl.Result{}, err
	}
	log := ctrl.LoggerFrom(ctx)
	pendingCreates, pendingDeletes, expired := r.expectations.observe(req.NamespacedName, pods)
	if expired > 0 {
		log.Info("Expectations expired unconfirmed: the cache missed Pod events", "count", expired, "ttl", r.Options.ExpectationTTL)
	}
	p := classify(sbs.UID, pods, pendingDeletes)
	p.pendingCreates = pendingCreates.Len()

	for _, cold := range r.refills.takeCold(req.NamespacedName) {
		r.Recorder.Eventf(anyVersion(sbs), nil, corev1.EventTypeNormal, "SandboxClaimed", "ClaimCold",
			"Sandbox %s claimed by %s, created cold from the template: the pool had none available", cold.pod, cold.agent)
	}
	// Claimed Pods are released even while the SandboxSet is being deleted:
	// that is what keeps the garbage collector off them.
	errs := []error{r.releaseClaimed(ctx, sbs, p.claimed)}
	if sbs.DeletionTimestamp != nil {
		return ctrl.Result{}, kerrors.NewAggregate(errs)
	}
	adopted, err := r.adoptOrphans(ctx, sbs, p.orphans)
	p.active = append(p.active, adopted...)
	errs = append(errs, err)

	// An autoscaled pool is sized here, and the rest of the pass works
	// from sized; sbs stays as cached, for the status write to compare with.
	sized, autoscaling, err := r.autoscale(ctx, sbs)
	errs = append(errs, err)

	revision := sbs.Spec.Revision()
	replicas := sized.Spec.DesiredReplicas()
	todo := computePlan(p, replicas, resolveMaxUnavailable(sbs.Spec.UpdateStrategy.MaxUnavailable, replicas), revision)
	// After a refusal (quota, admission) the pool waits out its backoff,
	// then probes with one creation rather than spend a batch on refusals.
	// The probe's Pod event wakes the next pass, which goes wide again.
	retryIn, refusal := r.expectations.creationBackoff(req.NamespacedName)
	deferred := refusal != nil && retryIn > 0 && todo.create > 0
	switch {
	case deferred:
		todo.create = 0
	case refusal != nil:
		todo.create = min(todo.create, 1)
	}
	// Relabels and creations go out together: a Pod that just became Ready
	// is claimable only once its label says so, and a claim's replacement
	// should not wait a round trip for them; both were planned above, so
	// neither depends on the other. Deletions go last, so the pool never
	// dips below what the budget allows.
	relabelled := make(chan error, 1)
	todo.relabel = r.expectations.withoutRelabelled(req.NamespacedName, todo.relabel)
	go func() { relabelled <- r.relabelPods(ctx, req.NamespacedName, todo.relabel) }()
	created, createErr := r.createPods(ctx, sbs, revision, todo.create, started)
	errs = append(errs, <-relabelled)
	if todo.create > 0 {
		r.expectations.creationsDone(req.NamespacedName, createErr)
	}
	log.V(1).Info("Planned the pool", "create", todo.create, "delete", len(todo.delete), "relabel", len(todo.relabel),
		"pendingCreates", pendingCreates.Len(), "pendingDeletes", len(pendingDeletes), "orphans", len(p.orphans), "releasing", len(p.claimed),
		"creationsDeferredFor", retryIn)
	errs = append(errs, r.deletePods(ctx, sbs, todo.delete))

	// The status reflects this pass's writes: deleted Pods are gone, created
	// ones are creating, relabelled ones carry their new state. A deferred
	// pass still reports the refusal it waits out.
	p.active = withoutPods(p.active, todo.delete)
	p.pendingCreates += created
	otherErr := kerrors.NewAggregate(errs)
	err = kerrors.NewAggregate(append(errs, createErr))
	failure := createErr
	if deferred {
		failure = refusal
	}
	status := computeStatus(sized, p, revision, poolSelector(sbs.Name).String(), failure)
	status.Autoscaling = autoscaling
	if stampsGeneration(status, createErr, otherErr, deferred) {
		status.ObservedGeneration = sbs.Generation
	}
	statusIn, statusErr := r.updateStatus(ctx, sbs, status)
	if statusErr != nil {
		return ctrl.Result{}, kerrors.NewAggregate([]error{err, statusErr})
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	var requeue time.Duration
	if p.pendingCreates > 0 || len(pendingDeletes) > 0 {
		// Nothing else may wake this pool if an expectation is never met.
		requeue = r.Options.ExpectationTTL
	}
	if deferred {
		requeue = sooner(requeue, retryIn)
	}
	if autoscaling != nil {
		requeue = sooner(requeue, autoscaleResync)
	}
	return ctrl.Result{RequeueAfter: sooner(requeue, statusIn)}, nil
}

// anyVersion is what the events that come with every claim are about: the
// SandboxSet, whichever its version. The events.k8s.io recorder folds
// repeats of an event into one series, written once, only while they
// name the same object, resourceVersion included; in a small pool every
// claim changes the pool's Ready condition and so its version, and each
// claim's events cost new Events. kubectl describe finds them either way.
func anyVersion(sbs *agentsv1alpha1.SandboxSet) *agentsv1alpha1.SandboxSet {
	return &agentsv1alpha1.SandboxSet{ObjectMeta: metav1.ObjectMeta{Namespace: sbs.Namespace, Name: sbs.Name, UID: sbs.UID}}
}

// sooner is the earlier of two requeue delays, where 0 means none.
func sooner(a, b time.Duration) time.Duration {
	if a == 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// listPods returns the pool's Pods as the cache holds them, not copies: a
// pool of thousands is listed on every pass. Everything below only reads
// them, and every write starts from a DeepCopy or a fresh object.
func (r *SandboxSetReconciler) listPods(sbs *agentsv1alpha1.SandboxSet) ([]*corev1.Pod, error) {
	objs, err := r.pods.ByIndex(poolIndex, poolKey(sbs.Namespace, sbs.Name))
	if err != nil {
		return nil, fmt.Errorf("listing Pods of SandboxSet: %w", err)
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, obj := range objs {
		if pod, ok := obj.(*corev1.Pod); ok {
			pods = append(pods, pod)
		}
	}
	return pods, nil
}

// createPods creates n Pods at the update revision, all at once within
// PodWriteParallelism. After the first refusal it stops issuing new requests,
// so a quota-starved namespace costs one failed call per retry, not n.
func (r *SandboxSetReconciler) createPods(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, revision string, n int, passStarted time.Time) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	key := client.ObjectKeyFromObject(sbs)
	names := make([]string, n)
	for i := range names {
		names[i] = podName(sbs.Name)
	}
	r.expectations.expectCreations(key, names)

	var created atomic.Int32
	var firstErr atomic.Pointer[error]
	r.parallel(ctx, n, func(ctx context.Context, i int) {
		if firstErr.Load() != nil {
			r.expectations.creationFailed(key, names[i])
			return
		}
		// Built only as its write starts: a batch of thousands waiting for
		// the write budget would otherwise hold thousands of full Pods.
		pod := newPod(sbs, names[i], revision)
		if err := r.createPod(ctx, key, pod); err != nil {
			firstErr.CompareAndSwap(nil, &err)
			return
		}
		created.Add(1)
	})

	log := ctrl.LoggerFrom(ctx)
	if c := int(created.Load()); c > 0 {
		r.Recorder.Eventf(anyVersion(sbs), nil, corev1.EventTypeNormal, "SuccessfulCreate", "Create", "Created %d sandbox Pods", c)
		for _, claim := range r.refills.replaced(key, c) {
			latency := time.Since(claim.at)
			claimToReplacement.WithLabelValues(sbs.Namespace, sbs.Name).Observe(latency.Seconds())
			claimStages.WithLabelValues(stageReconciling).Observe(passStarted.Sub(claim.at).Seconds())
			claimStages.WithLabelValues(stageCreated).Observe(latency.Seconds())
			r.Recorder.Eventf(anyVersion(sbs), nil, corev1.EventTypeNormal, "SandboxClaimed", "Refill",
				"Sandbox %s claimed by %s; its replacement was created %s later", claim.pod, claim.agent, latency.Round(time.Millisecond))
		}
		log.V(1).Info("Created sandbox Pods", "count", c, "revision", revision)
	}
	if errp := firstErr.Load(); errp != nil {
		err := *errp
		if errors.Is(err, errNamespaceTerminating) {
			return int(created.Load()), nil
		}
		r.Recorder.Eventf(sbs, nil, corev1.EventTypeWarning, "FailedCreate", "Create", "Cannot create sandbox Pods: %v", err)
		return int(created.Load()), fmt.Errorf("creating sandbox Pods: %w", err)
	}
	return int(created.Load()), nil
}

// createPod creates one Pod, retrying under a fresh name on the rare clash
// of random suffixes.
func (r *SandboxSetReconciler) createPod(ctx context.Context, key types.NamespacedName, pod *corev1.Pod) error {
	for attempt := 0; ; attempt++ {
		err := r.Create(ctx, pod)
		podOperations.WithLabelValues("create", resultOf(err)).Inc()
		if err == nil {
			return nil
		}
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			// The namespace is going, and the SandboxSet with it: nothing
			// to refill, nothing to retry.
			r.expectations.creationFailed(key, pod.Name)
			return errNamespaceTerminating
		}
		r.expectations.creationFailed(key, pod.Name)
		if !apierrors.IsAlreadyExists(err) || attempt == 2 {
			return fmt.Errorf("creating Pod %s: %w", pod.Name, err)
		}
		pod.Name = podName(key.Name)
		r.expectations.expectCreations(key, []string{pod.Name})
	}
}

// deletePods deletes Pods only as the controller last saw them: the UID and
// resourceVersion preconditions make the API server refuse the delete if an
// agent claimed the Pod in the meantime.
func (r *SandboxSetReconciler) deletePods(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, pods []*corev1.Pod) error {
	if len(pods) == 0 {
		return nil
	}
	key := client.ObjectKeyFromObject(sbs)
	var deleted atomic.Int32
	errs := r.parallelErrors(ctx, len(pods), func(ctx context.Context, i int) error {
		pod := pods[i]
		r.expectations.expectDeletion(key, pod.UID)
		err := r.Delete(ctx, pod, client.Preconditions{UID: &pod.UID, ResourceVersion: &pod.ResourceVersion})
		podOperations.WithLabelValues("delete", resultOf(err)).Inc()
		switch {
		case err == nil || apierrors.IsNotFound(err):
			deleted.Add(1)
			return nil
		case apierrors.IsConflict(err):
			// Changed since the cache saw it, perhaps claimed: decide again
			// on the next event.
			ctrl.LoggerFrom(ctx).V(2).Info("Pod changed before its deletion; deciding again", "pod", pod.Name, "resourceVersion", pod.ResourceVersion)
			r.expectations.deletionFailed(key, pod.UID)
			return nil
		default:
			r.expectations.deletionFailed(key, pod.UID)
			return fmt.Errorf("deleting Pod %s: %w", pod.Name, err)
		}
	})
	if d := deleted.Load(); d > 0 {
		r.Recorder.Eventf(anyVersion(sbs), nil, corev1.EventTypeNormal, "SuccessfulDelete", "Delete", "Deleted %d sandbox Pods", d)
	}
	if err := kerrors.NewAggregate(errs); err != nil {
		r.Recorder.Eventf(sbs, nil, corev1.EventTypeWarning, "FailedDelete", "Delete", "Cannot delete sandbox Pods: %v", err)
		return err
	}
	return nil
}

// relabelPods moves Pods' state label between creating and available to
// follow readiness. The optimistic lock makes the patch fail, rather than
// overwrite, if an agent claimed the Pod since the cache saw it.
func (r *SandboxSetReconciler) relabelPods(ctx context.Context, key types.NamespacedName, pods []*corev1.Pod) error {
	errs := r.parallelErrors(ctx, len(pods), func(ctx context.Context, i int) error {
		pod := pods[i]
		patched := pod.DeepCopy()
		patched.Labels[agentsv1alpha1.LabelState] = string(readinessState(pod))
		err := r.Patch(ctx, patched, client.MergeFromWithOptions(pod, client.MergeFromWithOptimisticLock{}))
		podOperations.WithLabelValues("relabel", resultOf(err)).Inc()
		if err == nil || apierrors.IsConflict(err) {
			r.expectations.relabelSent(key, pod)
		}
		if apierrors.IsConflict(err) {
			ctrl.LoggerFrom(ctx).V(2).Info("Pod changed before its relabel; deciding again", "pod", pod.Name, "resourceVersion", pod.ResourceVersion)
		}
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("setting state of Pod %s: %w", pod.Name, err)
		}
		return nil
	})
	return kerrors.NewAggregate(errs)
}

// releaseClaimed drops the SandboxSet's controller reference from claimed
// Pods, so that deleting the SandboxSet never deletes a sandbox an agent
// holds, and marks them claimed so that no agent finds them as available.
// It is the only write the controller ever makes to a claimed Pod; the claim
// webhook makes it in the claim itself, and then this finds nothing to do.
func (r *SandboxSetReconciler) releaseClaimed(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, pods []*corev1.Pod) error {
	errs := r.parallelErrors(ctx, len(pods), func(ctx context.Context, i int) error {
		pod := pods[i].DeepCopy() // Patch writes the response into it
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q},"ownerReferences":[{"$patch":"delete","uid":%q}],"uid":%q}}`,
			agentsv1alpha1.LabelState, agentsv1alpha1.StateClaimed, sbs.UID, pod.UID)
		err := r.Patch(ctx, pod, client.RawPatch(types.StrategicMergePatchType, []byte(patch)))
		podOperations.WithLabelValues("release", resultOf(err)).Inc()
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("releasing claimed Pod %s: %w", pod.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Released a claimed Pod from the pool", "pod", pod.Name, "agent", pod.Labels[agentsv1alpha1.LabelClaimedBy])
		r.Recorder.Eventf(sbs, pod, corev1.EventTypeNormal, "SandboxLeftPool", "Release",
			"Sandbox %s claimed by %s left the pool", pod.Name, pod.Labels[agentsv1alpha1.LabelClaimedBy])
		return nil
	})
	return kerrors.NewAggregate(errs)
}

// adoptOrphans takes over unclaimed Pods that carry the pool's label but no
// controller, e.g. after the SandboxSet was deleted with orphaning and
// created again. The resourceVersion precondition keeps a Pod claimed in the
// meantime from being adopted.
func (r *SandboxSetReconciler) adoptOrphans(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, pods []*corev1.Pod) ([]*corev1.Pod, error) {
	if len(pods) == 0 {
		return nil, nil
	}
	// The cache may still show a SandboxSet that an orphaning delete has
	// just removed, or its namesake's predecessor: adopting for it would
	// hand the Pods to the garbage collector (kubernetes#42639). Check the
	// API server first, as the ReplicaSet controller does.
	fresh := &agentsv1alpha1.SandboxSet{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(sbs), fresh); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("rechecking SandboxSet before adopting Pods: %w", err)
	}
	if fresh.UID != sbs.UID || fresh.DeletionTimestamp != nil {
		ctrl.LoggerFrom(ctx).Info("Not adopting orphans: the SandboxSet is gone or going", "orphans", len(pods))
		return nil, nil
	}
	adopted := make([]*corev1.Pod, len(pods))
	errs := r.parallelErrors(ctx, len(pods), func(ctx context.Context, i int) error {
		pod := pods[i].DeepCopy()
		pod.OwnerReferences = append(pod.OwnerReferences, *ownerReference(sbs))
		err := r.Patch(ctx, pod, client.MergeFromWithOptions(pods[i], client.MergeFromWithOptimisticLock{}))
		podOperations.WithLabelValues("adopt", resultOf(err)).Inc()
		if apierrors.IsConflict(err) {
			ctrl.LoggerFrom(ctx).V(2).Info("Orphan changed before its adoption; deciding again", "pod", pod.Name, "resourceVersion", pods[i].ResourceVersion)
		}
		if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("adopting Pod %s: %w", pod.Name, err)
		}
		if err == nil {
			adopted[i] = pod
		}
		return nil
	})
	adopted = withoutPods(adopted, nil)
	if len(adopted) > 0 {
		ctrl.LoggerFrom(ctx).Info("Adopted orphaned Pods", "count", len(adopted))
	}
	return adopted, kerrors.NewAggregate(errs)
}

// updateStatus records the pool's metrics and writes the status if it
// changed. A change that claims and refills make (sameStory) waits until
// StatusInterval after the pool's last status write and after the pass
// that first saw it; it then returns how long is left.
func (r *SandboxSetReconciler) updateStatus(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, status agentsv1alpha1.SandboxSetStatus) (time.Duration, error) {
	r.recordPoolMetrics(sbs, status)
	key := client.ObjectKeyFromObject(sbs)
	// The cached SandboxSet may not show our last status write yet. Unless
	// it does, its status says nothing about what is stored: write anyway.
	seen := r.statusWrites.seen(key, sbs.ResourceVersion)
	if seen && equality.Semantic.DeepEqual(sbs.Status, status) {
		r.statusWrites.unmoved(key)
		return 0, nil
	}
	// Pacing compares with what this manager last wrote while the cache
	// lags it: under a stream of claims it nearly always does.
	stored, known := sbs.Status, seen
	if !seen {
		stored, known = r.statusWrites.lastWritten(key)
	}
	now := time.Now()
	if known && sameStory(stored, status) {
		if wait := r.statusWrites.holdOff(key, now, r.Options.StatusInterval); wait > 0 {
			return wait, nil
		}
	}
	// The whole status, not a diff against the cached copy: a diff against
	// a stale copy leaves out the fields that equal it, and the stored
	// status ends up half old, half new.
	patch, err := json.Marshal(map[string]any{"status": statusPatch{status, status.Autoscaling}})
	if err != nil {
		return 0, fmt.Errorf("encoding SandboxSet status: %w", err)
	}
	patched := &agentsv1alpha1.SandboxSet{ObjectMeta: metav1.ObjectMeta{Namespace: sbs.Namespace, Name: sbs.Name}}
	if err := r.Status().Patch(ctx, patched, client.RawPatch(types.MergePatchType, patch)); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("updating SandboxSet status: %w", err)
	}
	r.statusWrites.wrote(key, patched.ResourceVersion, now, &status)
	return 0, nil
}

func (r *SandboxSetReconciler) recordPoolMetrics(sbs *agentsv1alpha1.SandboxSet, status agentsv1alpha1.SandboxSetStatus) {
	poolSandboxes.WithLabelValues(sbs.Namespace, sbs.Name, string(agentsv1alpha1.StateAvailable)).Set(float64(status.AvailableReplicas))
	poolSandboxes.WithLabelValues(sbs.Namespace, sbs.Name, string(agentsv1alpha1.StateCreating)).Set(float64(status.Replicas - status.AvailableReplicas))
	poolDesired.WithLabelValues(sbs.Namespace, sbs.Name).Set(float64(sbs.Spec.DesiredReplicas()))
	for _, condition := range []string{agentsv1alpha1.ConditionReady, agentsv1alpha1.ConditionReplicaFailure,
		agentsv1alpha1.ConditionReconciling, agentsv1alpha1.ConditionStalled} {
		value := 0.0
		if meta.IsStatusConditionTrue(status.Conditions, condition) {
			value = 1
		}
		poolCondition.WithLabelValues(sbs.Namespace, sbs.Name, condition).Set(value)
	}
}

func (r *SandboxSetReconciler) forget(key types.NamespacedName) {
	r.expectations.forget(key)
	r.refills.forget(key)
	r.demand.forget(key)
	r.statusWrites.forget(key)
	forgetPoolMetrics(key.Namespace, key.Name)
}

// SetupWithManager registers the controller, its Pod index and its watches.
func (r *SandboxSetReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := r.prepare(ctx, mgr.GetCache()); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&agentsv1alpha1.SandboxSet{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Pod{}, &podEventHandler{refills: r.refills, demand: r.demand}).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: r.Options.Workers,
			// Failed passes back off per SandboxSet; healthy ones never wait.
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](firstRetry, maxRetry),
		}).
		Complete(r)
}

// prepare sets up the reconciler's own state over a cache of pool Pods.
func (r *SandboxSetReconciler) prepare(ctx context.Context, c cache.Cache) error {
	r.expectations = newExpectations(r.Options.ExpectationTTL, firstRetry, maxRetry)
	r.refills = newRefillClock()
	r.demand = newDemandTracker()
	r.statusWrites = newStatusWrites()
	r.writeSlots = make(chan struct{}, r.Options.PodWriteParallelism)
	var err error
	r.pods, err = podIndexer(ctx, c)
	return err
}

func ownerReference(sbs *agentsv1alpha1.SandboxSet) *metav1.OwnerReference {
	return metav1.NewControllerRef(sbs, agentsv1alpha1.GroupVersion.WithKind("SandboxSet"))
}

// errNamespaceTerminating stops a creation batch in a namespace being deleted.
var errNamespaceTerminating = errors.New("namespace is terminating")

func resultOf(err error) string {
	var status apierrors.APIStatus
	switch {
	case err == nil:
		return "success"
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return string(corev1.NamespaceTerminatingCause)
	case errors.As(err, &status):
		return string(status.Status().Reason)
	default:
		return "error"
	}
}

// withoutPods returns pods minus those in drop, and minus nils.
func withoutPods(pods, drop []*corev1.Pod) []*corev1.Pod {
	dropped := make(map[types.UID]bool, len(drop))
	for _, pod := range drop {
		dropped[pod.UID] = true
	}
	out := make([]*corev1.Pod, 0, len(pods))
	for _, pod := range pods {
		if pod != nil && !dropped[pod.UID] {
			out = append(out, pod)
		}
	}
	return out
}

// statusPatch is a whole status as a merge patch. It names autoscaling even
// when there is none, as null, since a merge patch removes a field only so;
// this field, shallower than the embedded one, is the one encoding/json
// writes.
type statusPatch struct {
	agentsv1alpha1.SandboxSetStatus
	Autoscaling *agentsv1alpha1.AutoscalingStatus `json:"autoscaling"`
}
