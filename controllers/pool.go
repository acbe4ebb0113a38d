package controllers

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// pool is a SandboxSet's Pods, sorted by what the controller must do with them.
type pool struct {
	// active Pods are the pool: creating or available, unclaimed, not terminating.
	active []*corev1.Pod
	// pendingCreates counts Pods created but not yet in the cache; they are
	// creating Pods at the update revision.
	pendingCreates int
	// claimed Pods still controlled by the SandboxSet; they must be released.
	claimed []*corev1.Pod
	// finished Pods failed or were evicted; they are deleted and replaced.
	finished []*corev1.Pod
	// orphans carry the pool label but no controller; they are adopted.
	orphans []*corev1.Pod
}

// classify sorts the Pods labelled for a SandboxSet. Pods controlled by
// another object, terminating Pods, Pods being deleted by this manager,
// and claimed Pods already released are left out: none of them is the
// controller's business.
func classify(uid types.UID, pods []*corev1.Pod, deleting sets.Set[types.UID]) pool {
	var p pool
	for _, pod := range pods {
		if deleting.Has(pod.UID) || isTerminating(pod) {
			continue
		}
		owned := isControlledBy(pod, uid)
		switch {
		case agentsv1alpha1.IsClaimed(pod):
			if owned {
				p.claimed = append(p.claimed, pod)
			}
		case !owned:
			if metav1.GetControllerOfNoCopy(pod) == nil {
				p.orphans = append(p.orphans, pod)
			}
		case isFinished(pod):
			p.finished = append(p.finished, pod)
		default:
			p.active = append(p.active, pod)
		}
	}
	return p
}

// plan is what one reconcile changes.
type plan struct {
	create  int
	delete  []*corev1.Pod
	relabel []*corev1.Pod // Pods whose state label no longer matches readiness
}

// computePlan diffs the pool against the spec. It creates every missing Pod
// at once, deletes any excess (creating before available, old revisions
// before new, newest first), and rolls old-revision Pods to updateRevision
// no faster than maxUnavailable allows.
func computePlan(p pool, replicas int32, maxUnavailable int, updateRevision string) plan {
	var out plan
	out.delete = append(out.delete, p.finished...)

	desired := int(replicas)
	keep := p.active
	excess := len(p.active) + p.pendingCreates - desired
	if excess > 0 || hasOldRevision(p.active, updateRevision) {
		// Ordering is only needed to choose victims; a steady pool skips
		// it, which matters when every Pod event of a large pool costs a pass.
		keep = sortForDeletion(p.active, updateRevision)
	}
	if excess > 0 {
		n := min(excess, len(keep))
		out.delete = append(out.delete, keep[:n]...)
		keep = keep[n:]
	} else {
		out.create = -excess
	}

	// Roll old revisions. A creating Pod can go at once: it is not available
	// anyway. An available one costs one unit of the unavailability budget.
	available := 0
	for _, pod := range keep {
		if isAvailable(pod) {
			available++
		}
	}
	budget := maxUnavailable - max(0, desired-available)
	var stay []*corev1.Pod
	for _, pod := range keep {
		if revisionOf(pod) == updateRevision {
			stay = append(stay, pod)
			continue
		}
		if isAvailable(pod) {
			if budget <= 0 {
				stay = append(stay, pod)
				continue
			}
			budget--
		}
		out.delete = append(out.delete, pod)
		out.create++
	}

	for _, pod := range stay {
		if pod.Labels[agentsv1alpha1.LabelState] != string(readinessState(pod)) {
			out.relabel = append(out.relabel, pod)
		}
	}
	return out
}

// sortForDeletion orders Pods so that the cheapest to lose come first:
// creating before available, old revisions before the update revision, then
// the newest first. The keys are computed once per Pod, not per comparison.
func sortForDeletion(pods []*corev1.Pod, updateRevision string) []*corev1.Pod {
	type keyed struct {
		pod                *corev1.Pod
		available, updated bool
	}
	keys := make([]keyed, len(pods))
	for i, pod := range pods {
		keys[i] = keyed{pod: pod, available: isAvailable(pod), updated: revisionOf(pod) == updateRevision}
	}
	sort.SliceStable(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.available != b.available {
			return !a.available
		}
		if a.updated != b.updated {
			return !a.updated
		}
		return b.pod.CreationTimestamp.Before(&a.pod.CreationTimestamp)
	})
	sorted := make([]*corev1.Pod, len(keys))
	for i, k := range keys {
		sorted[i] = k.pod
	}
	return sorted
}

func hasOldRevision(pods []*corev1.Pod, updateRevision string) bool {
	for _, pod := range pods {
		if revisionOf(pod) != updateRevision {
			return true
		}
	}
	return false
}

// resolveMaxUnavailable turns the update strategy into a Pod count. A
// percentage rounds up, and at least one Pod may always be replaced, so a
// rollout can never wedge.
func resolveMaxUnavailable(v *intstr.IntOrString, replicas int32) int {
	if v == nil {
		return 1
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, int(replicas), true)
	if err != nil || n < 1 {
		return 1 // the schema and the webhook refuse bad values; stay safe anyway
	}
	return n
}
