package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// podEventHandler wakes a Pod's SandboxSet, found by the pool label rather
// than the owner reference: a claimed Pod may already have been released by
// the time its event arrives, and its claim is exactly what must trigger the
// refill. Updates that change nothing the controller reads are dropped.
type podEventHandler struct {
	refills *refillClock
	demand  *demandTracker
}

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

func (h *podEventHandler) Create(_ context.Context, e event.TypedCreateEvent[client.Object], q queue) {
	// A Pod created already claimed, after the manager started, is a cold
	// claim: count it like any claim.
	pod, ok := e.Object.(*corev1.Pod)
	switch {
	case !ok:
	case !e.IsInInitialList && agentsv1alpha1.IsClaimed(pod):
		key := poolOf(pod)
		at := claimTime(pod)
		h.refills.claimedCold(key, claim{pod: pod.Name, agent: pod.Labels[agentsv1alpha1.LabelClaimedBy], at: at})
		h.demand.observeClaim(key, at, false)
		claimsTotal.WithLabelValues(key.Namespace, key.Name).Inc()
	case e.IsInInitialList && !agentsv1alpha1.IsClaimed(pod) && agentsv1alpha1.IsPodReady(pod):
		// What the pool took to start before the manager did.
		h.observeRefill(pod)
	}
	enqueuePool(e.Object, q)
}

func (h *podEventHandler) Update(_ context.Context, e event.TypedUpdateEvent[client.Object], q queue) {
	oldPod, okOld := e.ObjectOld.(*corev1.Pod)
	newPod, okNew := e.ObjectNew.(*corev1.Pod)
	if !okOld || !okNew || !poolRelevantChange(oldPod, newPod) {
		return
	}
	if !agentsv1alpha1.IsClaimed(oldPod) && agentsv1alpha1.IsClaimed(newPod) {
		key := poolOf(newPod)
		at := claimTime(newPod)
		claimStages.WithLabelValues(stageSeen).Observe(time.Since(at).Seconds())
		h.refills.claimed(key, claim{pod: newPod.Name, agent: newPod.Labels[agentsv1alpha1.LabelClaimedBy], at: at})
		h.demand.observeClaim(key, at, true)
		claimsTotal.WithLabelValues(key.Namespace, key.Name).Inc()
	}
	if !agentsv1alpha1.IsPodReady(oldPod) && agentsv1alpha1.IsPodReady(newPod) && !agentsv1alpha1.IsClaimed(newPod) {
		h.observeRefill(newPod)
	}
	enqueuePool(newPod, q)
}

// observeRefill records how long a pool Pod took from creation to Ready,
// as the Pod's own timestamps say (the API server's creation, the
// kubelet's Ready): whole seconds each, so the error averages out over many
// Pods rather than adding the watch's delay.
func (h *podEventHandler) observeRefill(pod *corev1.Pod) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			h.demand.observeRefill(poolOf(pod), pod.CreationTimestamp.Time, c.LastTransitionTime.Time)
			return
		}
	}
}

func poolOf(pod *corev1.Pod) types.NamespacedName {
	return types.NamespacedName{Namespace: pod.Namespace, Name: pod.Labels[agentsv1alpha1.LabelSandboxSet]}
}

func (h *podEventHandler) Delete(_ context.Context, e event.TypedDeleteEvent[client.Object], q queue) {
	enqueuePool(e.Object, q)
}

func (h *podEventHandler) Generic(_ context.Context, e event.TypedGenericEvent[client.Object], q queue) {
	enqueuePool(e.Object, q)
}

func enqueuePool(obj client.Object, q queue) {
	if name := obj.GetLabels()[agentsv1alpha1.LabelSandboxSet]; name != "" {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}})
	}
}

// poolRelevantChange reports whether an update touches what the controller
// decides on: labels, owners, deletion, phase or readiness.
func poolRelevantChange(oldPod, newPod *corev1.Pod) bool {
	return !equality.Semantic.DeepEqual(oldPod.Labels, newPod.Labels) ||
		!equality.Semantic.DeepEqual(oldPod.OwnerReferences, newPod.OwnerReferences) ||
		(oldPod.DeletionTimestamp == nil) != (newPod.DeletionTimestamp == nil) ||
		oldPod.Status.Phase != newPod.Status.Phase ||
		agentsv1alpha1.IsPodReady(oldPod) != agentsv1alpha1.IsPodReady(newPod) ||
		isUnschedulable(oldPod) != isUnschedulable(newPod)
}

// claimTime is when the Pod was claimed: the admission-stamped annotation
// when present, otherwise now, when the controller first sees the claim.
func claimTime(pod *corev1.Pod) time.Time {
	if at, err := time.Parse(time.RFC3339Nano, pod.Annotations[agentsv1alpha1.AnnotationClaimedAt]); err == nil {
		return at
	}
	return time.Now()
}
