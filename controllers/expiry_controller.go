package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// ExpiryReconciler deletes claimed sandboxes at their shutdown time
// (agents.kruise.io/shutdown-time). It owns claimed Pods, not SandboxSets:
// a claimed sandbox outlives its pool and must still expire. Everything it
// needs is on the Pod, so a restarted manager picks up every pending expiry
// from its first list. Each Pod waits in the work queue until its own
// shutdown time: nothing polls.
type ExpiryReconciler struct {
	client.Client
	Recorder events.EventRecorder

	now func() time.Time
}

// Reconcile deletes the Pod if its shutdown time has come, or schedules
// itself for that time.
func (r *ExpiryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pod := &corev1.Pod{}
	if err := r.Get(ctx, req.NamespacedName, pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	at, ok := agentsv1alpha1.ShutdownTime(pod)
	if !ok || !agentsv1alpha1.IsClaimed(pod) || pod.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	if wait := at.Sub(r.now()); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	return ctrl.Result{}, r.expire(ctx, pod, at)
}

// expire deletes the Pod exactly as read: the UID and resourceVersion
// preconditions make the API server refuse the delete if the holder renewed
// (or changed anything) since, and the renewal wins.
func (r *ExpiryReconciler) expire(ctx context.Context, pod *corev1.Pod, at time.Time) error {
	log := ctrl.LoggerFrom(ctx)
	err := r.Delete(ctx, pod, client.Preconditions{UID: &pod.UID, ResourceVersion: &pod.ResourceVersion})
	podOperations.WithLabelValues("expire", resultOf(err)).Inc()
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		// The Pod changed since the cache saw it; its update event brings
		// it back here, with the shutdown time it has now.
		log.V(2).Info("Sandbox changed before it could expire; deciding again", "pod", pod.Name)
		return nil
	case err != nil:
		return fmt.Errorf("deleting expired sandbox %s: %w", pod.Name, err)
	}
	lateness := r.now().Sub(at)
	pool := pod.Labels[agentsv1alpha1.LabelSandboxSet]
	expirations.WithLabelValues(pod.Namespace, pool).Inc()
	expiryLateness.Observe(lateness.Seconds())
	holder := pod.Labels[agentsv1alpha1.LabelClaimedBy]
	holderUser := pod.Annotations[agentsv1alpha1.AnnotationClaimedByUser]
	log.Info("Sandbox expired", "pod", pod.Name, "holder", holder, "holderUser", holderUser, "lateness", lateness)
	r.Recorder.Eventf(r.regarding(ctx, pod), pod, corev1.EventTypeNormal, "SandboxExpired", "Expire",
		"Sandbox %s claimed by %s (%s) reached its shutdown time %s and was deleted %s later",
		pod.Name, holder, holderUser, agentsv1alpha1.FormatShutdownTime(at), lateness.Round(time.Millisecond))
	return nil
}

// regarding is what an expiry's event is about: the sandbox's SandboxSet,
// where kubectl describe shows it, or the Pod if the SandboxSet is gone.
func (r *ExpiryReconciler) regarding(ctx context.Context, pod *corev1.Pod) runtime.Object {
	sbs := &agentsv1alpha1.SandboxSet{}
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Labels[agentsv1alpha1.LabelSandboxSet]}
	if err := r.Get(ctx, key, sbs); err != nil {
		return pod
	}
	return sbs
}

// SetupWithManager watches the claimed Pods that have a shutdown time, in
// the cache the SandboxSet controller shares. Only creations and changes of
// labels or annotations can move a Pod's expiry.
func (r *ExpiryReconciler) SetupWithManager(mgr ctrl.Manager, workers int) error {
	if r.now == nil {
		r.now = time.Now
	}
	hasShutdownTime := predicate.NewPredicateFuncs(func(obj client.Object) bool {
		_, ok := obj.GetAnnotations()[agentsv1alpha1.AnnotationShutdownTime]
		return ok
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("sandbox-expiry").
		For(&corev1.Pod{}, builder.WithPredicates(hasShutdownTime,
			predicate.Or(predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}
