package webhooks

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

var (
	podKind         = schema.GroupKind{Kind: "Pod"}
	podResource     = schema.GroupResource{Resource: "pods"}
	labelsPath      = field.NewPath("metadata", "labels")
	annotationsPath = field.NewPath("metadata", "annotations")
	holderPath      = labelsPath.Key(agentsv1alpha1.LabelClaimedBy)
)

// admitPoolPodUpdate decides an update to a pool Pod. It returns
// claim=true when the update is a valid claim, which the caller completes
// with completeClaim in the same write. byManager says whether the request
// comes from the SandboxSet controller's own identity.
//
// The API server runs admission inside its optimistic-concurrency retry, so
// oldPod is always the stored Pod the write would replace: of two agents
// racing for one Pod, the second sees the first's claim here and is refused.
//
// Writes that leave the four pool labels alone never reach this webhook
// (its matchConditions); the pool-pods admission policy (config/policies)
// judges those, and who may write to a claimed Pod at all.
func admitPoolPodUpdate(oldPod, newPod *corev1.Pod, who requester, now time.Time) (claim bool, err error) {
	oldHolder := oldPod.Labels[agentsv1alpha1.LabelClaimedBy]
	newHolder := newPod.Labels[agentsv1alpha1.LabelClaimedBy]
	byManager := who.manager
	switch {
	case oldHolder != "" && newHolder == oldHolder:
		errs := claimedPodChanges(oldPod, newPod, byManager)
		// The holder's renewal is judged here. Anyone else's write is the
		// pool-pods policy's to refuse, after this webhook, by naming the
		// holder; only trusted identities get past it, unjudged.
		holderUser := oldPod.Annotations[agentsv1alpha1.AnnotationClaimedByUser]
		renewed := oldPod.Annotations[agentsv1alpha1.AnnotationShutdownTime] != newPod.Annotations[agentsv1alpha1.AnnotationShutdownTime]
		if renewed && (holderUser == "" || holderUser == who.username) {
			errs = append(errs, validateShutdownTime(newPod, now)...)
		}
		return false, invalid(podKind, newPod.Name, errs)
	case oldHolder != "" && newHolder == "":
		return false, invalid(podKind, newPod.Name, field.ErrorList{field.Forbidden(holderPath, fmt.Sprintf(
			"sandbox %s is claimed by %s and a claim cannot be removed; delete the Pod to release the sandbox", newPod.Name, oldHolder))})
	case oldHolder != "":
		return false, apierrors.NewConflict(podResource, newPod.Name, fmt.Errorf("sandbox %s is already claimed by %s", newPod.Name, oldHolder))
	case newHolder != "":
		return true, invalid(podKind, newPod.Name, validateClaim(oldPod, newPod, newHolder))
	default:
		return false, invalid(podKind, newPod.Name, poolLabelChanges(oldPod, newPod, byManager))
	}
}

// requester is who sent an update, as the Pod webhook judges it.
type requester struct {
	username string
	// manager says it is the SandboxSet controller's own identity.
	manager bool
}

// validateClaim checks an agent's claim of an unclaimed Pod.
func validateClaim(oldPod, newPod *corev1.Pod, holder string) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsValidLabelValue(holder) {
		errs = append(errs, field.Invalid(holderPath, holder, "an agent id must be a valid label value: "+msg))
	}
	if reason := unavailableReason(oldPod); reason != "" {
		errs = append(errs, field.Forbidden(holderPath, fmt.Sprintf("sandbox %s cannot be claimed: %s", newPod.Name, reason)))
	}
	errs = append(errs, protectedLabelChanges(oldPod, newPod, agentsv1alpha1.LabelState, agentsv1alpha1.LabelSandboxSet, agentsv1alpha1.LabelRevision)...)
	return append(errs, operatorAnnotationChanges(oldPod, newPod)...)
}

// unavailableReason says why a Pod cannot be claimed, or "" if it can.
func unavailableReason(pod *corev1.Pod) string {
	switch {
	case pod.DeletionTimestamp != nil:
		return "it is being deleted"
	case pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded:
		return "it has stopped"
	case !isControlledByItsPool(pod):
		return fmt.Sprintf("rule controlled-claim: it is not controlled by SandboxSet %s, so it is not part of its pool",
			pod.Labels[agentsv1alpha1.LabelSandboxSet])
	case !agentsv1alpha1.IsPodReady(pod):
		return "it is still creating (not Ready); claim an available one (agents.kruise.io/state=available)"
	}
	return ""
}

// isControlledByItsPool reports whether the Pod's controller is the
// SandboxSet its pool label names: only a Pod in a pool can be claimed from it.
func isControlledByItsPool(pod *corev1.Pod) bool {
	ref := metav1.GetControllerOfNoCopy(pod)
	return ref != nil && isSandboxSetRef(ref.APIVersion, ref.Kind) && ref.Name == pod.Labels[agentsv1alpha1.LabelSandboxSet]
}

// operatorAnnotationChanges refuses an agent's change to any agents.kruise.io/
// annotation but the shutdown time: the claim webhook stamps them itself.
func operatorAnnotationChanges(oldPod, newPod *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	for _, key := range operatorKeys(oldPod.Annotations, newPod.Annotations) {
		if key != agentsv1alpha1.AnnotationShutdownTime && entryChanged(oldPod.Annotations, newPod.Annotations, key) {
			errs = append(errs, field.Forbidden(annotationsPath.Key(key), "rule claim-keys: set by the operator and cannot be changed"))
		}
	}
	return errs
}

// operatorKeys lists, sorted, the agents.kruise.io/ keys in either map.
func operatorKeys(a, b map[string]string) []string {
	keys := sets.New[string]()
	for _, m := range []map[string]string{a, b} {
		for key := range m {
			if strings.HasPrefix(key, agentsv1alpha1.KeyPrefix) {
				keys.Insert(key)
			}
		}
	}
	return sets.List(keys)
}

// claimedPodChanges allows a claimed Pod's holder anything but touching the
// operator's labels; the manager may only mark it claimed.
func claimedPodChanges(oldPod, newPod *corev1.Pod, byManager bool) field.ErrorList {
	errs := protectedLabelChanges(oldPod, newPod, agentsv1alpha1.LabelSandboxSet, agentsv1alpha1.LabelRevision)
	if state := newPod.Labels[agentsv1alpha1.LabelState]; state != oldPod.Labels[agentsv1alpha1.LabelState] &&
		!(byManager && state == string(agentsv1alpha1.StateClaimed)) {
		errs = append(errs, field.Forbidden(labelsPath.Key(agentsv1alpha1.LabelState), "a claimed sandbox stays claimed"))
	}
	return errs
}

// poolLabelChanges allows only the manager to move an unclaimed Pod's state
// between creating and available, and nobody to change its pool or revision.
func poolLabelChanges(oldPod, newPod *corev1.Pod, byManager bool) field.ErrorList {
	errs := protectedLabelChanges(oldPod, newPod, agentsv1alpha1.LabelSandboxSet, agentsv1alpha1.LabelRevision)
	oldState, newState := oldPod.Labels[agentsv1alpha1.LabelState], newPod.Labels[agentsv1alpha1.LabelState]
	if oldState == newState {
		return errs
	}
	statePath := labelsPath.Key(agentsv1alpha1.LabelState)
	switch {
	case !byManager:
		errs = append(errs, field.Forbidden(statePath,
			"only the SandboxSet controller sets a sandbox's state; to claim it, set agents.kruise.io/claimed-by=<agent-id>"))
	case newState != string(agentsv1alpha1.StateCreating) && newState != string(agentsv1alpha1.StateAvailable):
		errs = append(errs, field.NotSupported(statePath, newState, []agentsv1alpha1.SandboxState{agentsv1alpha1.StateCreating, agentsv1alpha1.StateAvailable}))
	}
	return errs
}

// protectedLabelChanges refuses any change to the given operator labels.
func protectedLabelChanges(oldPod, newPod *corev1.Pod, keys ...string) field.ErrorList {
	var errs field.ErrorList
	for _, key := range keys {
		if entryChanged(oldPod.Labels, newPod.Labels, key) {
			errs = append(errs, field.Forbidden(labelsPath.Key(key), "set by the operator and cannot be changed"))
		}
	}
	return errs
}

// entryChanged says whether a key was added, removed or given another
// value. An empty value is not the same as none: removing an empty
// persistent-contents annotation changes what the sandbox runtime reads.
func entryChanged(oldMap, newMap map[string]string, key string) bool {
	oldValue, had := oldMap[key]
	newValue, has := newMap[key]
	return had != has || oldValue != newValue
}

// completeClaim makes the claim whole in the same write: the Pod is marked
// claimed, stamped with the time and the identity that claimed it, given
// its pool's lifetime, and released from its SandboxSet, so the garbage
// collector never deletes a sandbox an agent holds. It refuses a shutdown
// time the claim chose beyond what the pool allows.
func completeClaim(pod *corev1.Pod, now time.Time, username string, lifetime *agentsv1alpha1.ClaimLifetime) field.ErrorList {
	pod.Labels[agentsv1alpha1.LabelState] = string(agentsv1alpha1.StateClaimed)
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[agentsv1alpha1.AnnotationClaimedAt] = now.UTC().Format(time.RFC3339Nano)
	pod.Annotations[agentsv1alpha1.AnnotationClaimedByUser] = username
	if lifetime != nil && lifetime.Max != nil {
		pod.Annotations[agentsv1alpha1.AnnotationMaxShutdownTime] = agentsv1alpha1.FormatShutdownTime(now.Add(lifetime.Max.Duration))
	}
	if _, set := pod.Annotations[agentsv1alpha1.AnnotationShutdownTime]; !set && lifetime != nil {
		// Without a default, a pool with a maximum gives the maximum.
		if d := cmp.Or(lifetime.Default, lifetime.Max); d != nil {
			pod.Annotations[agentsv1alpha1.AnnotationShutdownTime] = agentsv1alpha1.FormatShutdownTime(now.Add(d.Duration))
		}
	}
	refs := pod.OwnerReferences[:0]
	for _, ref := range pod.OwnerReferences {
		if !isSandboxSetRef(ref.APIVersion, ref.Kind) {
			refs = append(refs, ref)
		}
	}
	pod.OwnerReferences = refs
	if len(refs) == 0 {
		pod.OwnerReferences = nil
	}
	return validateShutdownTime(pod, now)
}

var shutdownTimePath = annotationsPath.Key(agentsv1alpha1.AnnotationShutdownTime)

// validateShutdownTime checks a claimed Pod's shutdown time: a valid time,
// in the future, no later than its maximum, and not removed if it has one.
func validateShutdownTime(pod *corev1.Pod, now time.Time) field.ErrorList {
	value, set := pod.Annotations[agentsv1alpha1.AnnotationShutdownTime]
	maxValue, hasMax := pod.Annotations[agentsv1alpha1.AnnotationMaxShutdownTime]
	if !set {
		if hasMax {
			return field.ErrorList{field.Required(shutdownTimePath, fmt.Sprintf(
				"rule shutdown-time: sandbox %s may live until %s at the latest, so its shutdown time cannot be removed; move it instead", pod.Name, maxValue))}
		}
		return nil
	}
	at, err := agentsv1alpha1.ParseShutdownTime(value)
	switch {
	case err != nil:
		return field.ErrorList{field.Invalid(shutdownTimePath, value, "rule shutdown-time: must be an RFC 3339 UTC time, e.g. 2026-12-01T10:00:00Z")}
	case !at.After(now):
		return field.ErrorList{field.Invalid(shutdownTimePath, value, fmt.Sprintf(
			"rule shutdown-time: must be in the future (it is now %s); to end the sandbox now, delete it", agentsv1alpha1.FormatShutdownTime(now)))}
	}
	if !hasMax {
		return nil
	}
	limit, err := agentsv1alpha1.ParseShutdownTime(maxValue)
	if err == nil && at.After(limit) {
		return field.ErrorList{field.Invalid(shutdownTimePath, value, fmt.Sprintf(
			"rule shutdown-time: must be no later than %s, the claim time plus its SandboxSet's claimLifetime.max", maxValue))}
	}
	return nil
}

func isSandboxSetRef(apiVersion, kind string) bool {
	gv, err := schema.ParseGroupVersion(apiVersion)
	return err == nil && gv.Group == agentsv1alpha1.GroupVersion.Group && kind == "SandboxSet"
}
