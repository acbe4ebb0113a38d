package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// autoscaleResync is how soon an autoscaled pool is sized again when no
// event wakes it: rates decay, scale-down delays run out and schedules
// open without a Pod event to say so.
const autoscaleResync = 5 * time.Second

// autoscale sizes an autoscaled pool. It writes the demand tracker's
// recommendation to spec.replicas when it differs, and returns the
// SandboxSet as the rest of the pass should size the pool by (a copy, at
// its new size) and the status.autoscaling to report. A pool that is not
// autoscaled comes back as it is, with no autoscaling status.
func (r *SandboxSetReconciler) autoscale(ctx context.Context, sbs *agentsv1alpha1.SandboxSet) (*agentsv1alpha1.SandboxSet, *agentsv1alpha1.AutoscalingStatus, error) {
	key := client.ObjectKeyFromObject(sbs)
	if sbs.Spec.Autoscaling == nil {
		if sbs.Status.Autoscaling != nil {
			// Turned off: start afresh if it is turned on again, rather
			// than hold the pool to sizes from before.
			r.demand.forget(key)
			forgetAutoscalingMetrics(sbs.Namespace, sbs.Name)
		}
		return sbs, nil, nil
	}
	var lastScale *metav1.Time
	if sbs.Status.Autoscaling != nil {
		lastScale = sbs.Status.Autoscaling.LastScaleTime
	}
	now := time.Now()
	current := sbs.Spec.DesiredReplicas()
	snap, err := r.demand.snapshot(key, sbs.Spec.Autoscaling, current, now)
	if err != nil {
		return sbs, sbs.Status.Autoscaling, err
	}
	sized := sbs
	if want := snap.recommendation.Replicas; want != current {
		err := r.scale(ctx, sbs, want)
		if apierrors.IsConflict(err) {
			// The cache is behind the SandboxSet, most likely our own last
			// scale: its update event wakes the pool to size it again.
			ctrl.LoggerFrom(ctx).V(1).Info("SandboxSet changed before the autoscaler's write; sizing again on its event", "want", want)
			return sbs, sbs.Status.Autoscaling, nil
		}
		if err != nil {
			r.Recorder.Eventf(sbs, nil, corev1.EventTypeWarning, "FailedAutoscale", "Scale",
				"Cannot scale the pool from %d to %d sandboxes: %v", current, want, err)
			return sbs, sbs.Status.Autoscaling, err
		}
		sized = sbs.DeepCopy()
		sized.Spec.Replicas = ptr.To(want)
		lastScale = &metav1.Time{Time: now}
		ctrl.LoggerFrom(ctx).Info("Autoscaled the pool", "from", current, "to", want, "reason", snap.recommendation.Reason,
			"arrivalRate", snap.rate, "refill", snap.refill, "target", snap.target)
		r.Recorder.Eventf(sbs, nil, corev1.EventTypeNormal, "Autoscaled", "Scale",
			"Scaled the pool from %d to %d sandboxes (%s): %s claims/s, %ss to refill, target %s served warm",
			current, want, snap.recommendation.Reason, decimal(snap.rate), decimal(snap.refill.Seconds()), sbs.Spec.Autoscaling.TargetWarmRatio)
	}
	status := snap.status(lastScale)
	recordAutoscalingMetrics(sbs, snap)
	return sized, &status, nil
}

// scale writes spec.replicas as the autoscaler, the one identity the
// SandboxSet webhook lets change an autoscaled pool's size. The optimistic
// lock keeps it from overwriting a spec changed since the cache saw it.
func (r *SandboxSetReconciler) scale(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, replicas int32) error {
	patched := sbs.DeepCopy()
	patched.Spec.Replicas = ptr.To(replicas)
	err := r.Patch(ctx, patched, client.MergeFromWithOptions(sbs, client.MergeFromWithOptimisticLock{}))
	switch {
	case err == nil || apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return err
	default:
		return fmt.Errorf("setting spec.replicas to %d for autoscaling: %w", replicas, err)
	}
}
