package controllers

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// computeStatus derives a SandboxSet's status from its pool after a
// reconcile. createErr is the first Pod creation error of that reconcile, if
// any. It only fills in counts and conditions; the caller decides whether
// the pass was clean enough to stamp observedGeneration.
func computeStatus(sbs *agentsv1alpha1.SandboxSet, p pool, updateRevision, selector string, createErr error) agentsv1alpha1.SandboxSetStatus {
	status := *sbs.Status.DeepCopy()
	status.UpdateRevision = updateRevision
	status.Selector = selector
	status.Replicas = int32(len(p.active) + p.pendingCreates)
	status.AvailableReplicas = 0
	status.UpdatedReplicas = int32(p.pendingCreates)
	var unschedulable *corev1.Pod
	for _, pod := range p.active {
		if isAvailable(pod) {
			status.AvailableReplicas++
		}
		if revisionOf(pod) == updateRevision {
			status.UpdatedReplicas++
		}
		if unschedulable == nil && isUnschedulable(pod) {
			unschedulable = pod
		}
	}

	failure := replicaFailureCondition(createErr, sbs.Generation)
	ready := readyCondition(sbs, status, unschedulable)
	meta.SetStatusCondition(&status.Conditions, failure)
	meta.SetStatusCondition(&status.Conditions, ready)
	setKstatusCondition(&status.Conditions, kstatusCondition(failure, ready))
	return status
}

// kstatusCondition is the condition GitOps tools read the pool's health
// from (kstatus): Stalled while only a person can unblock the pool,
// Reconciling while it fills or rolls out, none once it is Ready. Its
// message starts with the reason, because Argo CD and Flux show only the
// message.
func kstatusCondition(failure, ready metav1.Condition) *metav1.Condition {
	var c metav1.Condition
	switch {
	case failure.Status == metav1.ConditionTrue && blocksCreation(failure.Reason):
		c = failure
		c.Type = agentsv1alpha1.ConditionStalled
	case ready.Reason == agentsv1alpha1.ReasonUnschedulable:
		c = ready
		c.Type = agentsv1alpha1.ConditionStalled
	case ready.Status == metav1.ConditionTrue:
		return nil
	default:
		c = ready
		c.Type = agentsv1alpha1.ConditionReconciling
	}
	c.Status = metav1.ConditionTrue
	c.Message = c.Reason + ": " + c.Message
	return &c
}

// blocksCreation says whether a creation failure lasts until someone acts:
// a refusal does, an error on the way to the API server does not.
func blocksCreation(reason string) bool {
	switch reason {
	case agentsv1alpha1.ReasonQuotaExceeded, agentsv1alpha1.ReasonPodSecurityViolation, agentsv1alpha1.ReasonCreateForbidden:
		return true
	default:
		return false
	}
}

// setKstatusCondition keeps at most one of Reconciling and Stalled, c, and
// only while True: kstatus reads their absence as False.
func setKstatusCondition(conditions *[]metav1.Condition, c *metav1.Condition) {
	for _, t := range []string{agentsv1alpha1.ConditionReconciling, agentsv1alpha1.ConditionStalled} {
		if c == nil || c.Type != t {
			meta.RemoveStatusCondition(conditions, t)
		}
	}
	if c != nil {
		meta.SetStatusCondition(conditions, *c)
	}
}

// stampsGeneration says whether a pass may set observedGeneration to the
// SandboxSet's generation: after a pass without errors, and after one whose
// only error is a refusal that stalls the pool, so that a generation that
// cannot be satisfied reads Failed, not InProgress forever. A pass that
// only waits out an earlier refusal has not tried this generation.
func stampsGeneration(status agentsv1alpha1.SandboxSetStatus, createErr, otherErr error, deferred bool) bool {
	if otherErr != nil || deferred {
		return false
	}
	return createErr == nil || meta.IsStatusConditionTrue(status.Conditions, agentsv1alpha1.ConditionStalled)
}

func replicaFailureCondition(createErr error, generation int64) metav1.Condition {
	c := metav1.Condition{
		Type:               agentsv1alpha1.ConditionReplicaFailure,
		Status:             metav1.ConditionFalse,
		Reason:             agentsv1alpha1.ReasonCreateSucceeded,
		Message:            "sandbox Pods are being created normally",
		ObservedGeneration: generation,
	}
	if createErr == nil {
		return c
	}
	c.Status = metav1.ConditionTrue
	c.Reason = createFailureReason(createErr)
	c.Message = fmt.Sprintf("cannot create sandbox Pods: %v", createErr)
	return c
}

// createFailureReason tells a quota refusal and a Pod Security refusal from
// other refusals, because each needs a different fix: raise the quota, fix
// the template or the namespace's level, or fix the admission policy.
func createFailureReason(err error) string {
	var status apierrors.APIStatus
	refused := apierrors.IsForbidden(err) || apierrors.IsInvalid(err)
	switch {
	case apierrors.IsForbidden(err) && errors.As(err, &status) && isQuotaMessage(status.Status().Message):
		return agentsv1alpha1.ReasonQuotaExceeded
	case refused && errors.As(err, &status) && isPodSecurityMessage(status.Status().Message):
		return agentsv1alpha1.ReasonPodSecurityViolation
	case refused:
		return agentsv1alpha1.ReasonCreateForbidden
	default:
		return agentsv1alpha1.ReasonCreateFailed
	}
}

// isQuotaMessage recognises the ResourceQuota admission plugin's refusals.
func isQuotaMessage(msg string) bool {
	return strings.Contains(msg, "exceeded quota") || strings.Contains(msg, "status unknown for quota")
}

// isPodSecurityMessage recognises Pod Security refusals: the API server's
// PodSecurity admission (403) and the Pod webhook's check of the operator's
// minimum (422, "rule pod-security") both say "violates PodSecurity".
func isPodSecurityMessage(msg string) bool {
	return strings.Contains(msg, "violates PodSecurity")
}

func readyCondition(sbs *agentsv1alpha1.SandboxSet, status agentsv1alpha1.SandboxSetStatus, unschedulable *corev1.Pod) metav1.Condition {
	desired := sbs.Spec.DesiredReplicas()
	c := metav1.Condition{
		Type:               agentsv1alpha1.ConditionReady,
		Status:             metav1.ConditionFalse,
		ObservedGeneration: sbs.Generation,
	}
	switch {
	case unschedulable != nil:
		c.Reason = agentsv1alpha1.ReasonUnschedulable
		c.Message = fmt.Sprintf("sandbox Pod %s cannot be scheduled: %s", unschedulable.Name, scheduledMessage(unschedulable))
	case status.UpdatedReplicas < status.Replicas:
		c.Reason = agentsv1alpha1.ReasonRollingUpdate
		c.Message = fmt.Sprintf("%d of %d sandboxes are at revision %s", status.UpdatedReplicas, desired, status.UpdateRevision)
	case status.AvailableReplicas < desired || status.Replicas != desired:
		c.Reason = agentsv1alpha1.ReasonSandboxesCreating
		c.Message = fmt.Sprintf("%d of %d sandboxes are available", status.AvailableReplicas, desired)
	default:
		c.Status = metav1.ConditionTrue
		c.Reason = agentsv1alpha1.ReasonPoolReady
		c.Message = fmt.Sprintf("all %d sandboxes are available", desired)
	}
	return c
}

func scheduledMessage(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Message != "" {
			return c.Message
		}
	}
	return "no node fits it"
}

// sameStory says whether two statuses differ at most in what every claim
// and its refill change: the counts, the conditions' messages (which quote
// them), the autoscaler's rate figures, and Ready's flip between
// SandboxesCreating and PoolReady with the Reconciling condition that
// follows it. These wait for the status interval, so a pool that refills
// within it never shows the flip. Readers act on the rest (a rollout, a
// refusal, a sandbox no node fits, the generation, the revision, the
// autoscaler's decision), which is written at once.
func sameStory(old, updated agentsv1alpha1.SandboxSetStatus) bool {
	if old.ObservedGeneration != updated.ObservedGeneration || old.UpdateRevision != updated.UpdateRevision ||
		old.Selector != updated.Selector || !maps.Equal(conditionStory(old.Conditions), conditionStory(updated.Conditions)) {
		return false
	}
	switch a, b := old.Autoscaling, updated.Autoscaling; {
	case a == nil || b == nil:
		return a == b
	default:
		return a.DesiredReplicas == b.DesiredReplicas && a.Reason == b.Reason && a.LastScaleTime.Equal(b.LastScaleTime)
	}
}

// conditionState is what a reader acts on in a condition.
type conditionState struct {
	status     metav1.ConditionStatus
	reason     string
	generation int64
}

// conditionStory is the state of each condition, with Ready's refill flip
// folded into one state and the Reconciling condition that follows it left
// out.
func conditionStory(conditions []metav1.Condition) map[string]conditionState {
	story := make(map[string]conditionState, len(conditions))
	for _, c := range conditions {
		state := conditionState{c.Status, c.Reason, c.ObservedGeneration}
		switch {
		case c.Type == agentsv1alpha1.ConditionReconciling && c.Reason == agentsv1alpha1.ReasonSandboxesCreating:
			continue
		case c.Type == agentsv1alpha1.ConditionReady && (c.Reason == agentsv1alpha1.ReasonSandboxesCreating || c.Reason == agentsv1alpha1.ReasonPoolReady):
			state.status, state.reason = "", "refill"
		}
		story[c.Type] = state
	}
	return story
}
