package controllers

import (
	"errors"
	"fmt"
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

	meta.SetStatusCondition(&status.Conditions, replicaFailureCondition(createErr, sbs.Generation))
	meta.SetStatusCondition(&status.Conditions, readyCondition(sbs, status, unschedulable))
	return status
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

// createFailureReason tells a quota refusal from other refusals, because
// each needs a different fix: raise the quota, or fix the admission policy.
func createFailureReason(err error) string {
	var status apierrors.APIStatus
	switch {
	case apierrors.IsForbidden(err) && errors.As(err, &status) && isQuotaMessage(status.Status().Message):
		return agentsv1alpha1.ReasonQuotaExceeded
	case apierrors.IsForbidden(err), apierrors.IsInvalid(err):
		return agentsv1alpha1.ReasonCreateForbidden
	default:
		return agentsv1alpha1.ReasonCreateFailed
	}
}

// isQuotaMessage recognises the ResourceQuota admission plugin's refusals.
func isQuotaMessage(msg string) bool {
	return strings.Contains(msg, "exceeded quota") || strings.Contains(msg, "status unknown for quota")
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
