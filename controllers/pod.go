package controllers

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// isFinished reports whether the Pod's containers have stopped for good,
// which covers failed and evicted Pods.
func isFinished(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded
}

// isTerminating reports whether the Pod is being deleted.
func isTerminating(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp != nil
}

// isUnschedulable reports whether the scheduler has found no node for the Pod.
func isUnschedulable(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable
		}
	}
	return false
}

// readinessState is the state label a pool Pod should carry.
func readinessState(pod *corev1.Pod) agentsv1alpha1.SandboxState {
	if agentsv1alpha1.IsPodReady(pod) {
		return agentsv1alpha1.StateAvailable
	}
	return agentsv1alpha1.StateCreating
}

// isAvailable reports whether a pool Pod can be claimed now.
func isAvailable(pod *corev1.Pod) bool {
	return readinessState(pod) == agentsv1alpha1.StateAvailable
}

// isControlledBy reports whether the Pod's controller is the SandboxSet with uid.
func isControlledBy(pod *corev1.Pod, uid types.UID) bool {
	ref := metav1.GetControllerOfNoCopy(pod)
	return ref != nil && ref.UID == uid
}

func revisionOf(pod *corev1.Pod) string {
	return pod.Labels[agentsv1alpha1.LabelRevision]
}

// newPod builds a pool Pod named name from the SandboxSet's template. The
// caller chooses the name (podName) so that it can expect the creation
// before it requests it.
func newPod(sbs *agentsv1alpha1.SandboxSet, name, revision string) *corev1.Pod {
	tmpl := sbs.Spec.Template.DeepCopy()
	labels := tmpl.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	labels[agentsv1alpha1.LabelSandboxSet] = sbs.Name
	labels[agentsv1alpha1.LabelState] = string(agentsv1alpha1.StateCreating)
	labels[agentsv1alpha1.LabelRevision] = revision
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       sbs.Namespace,
			Labels:          labels,
			Annotations:     tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{*ownerReference(sbs)},
		},
		Spec: tmpl.Spec,
	}
}

// podName is the SandboxSet's name and a random suffix, e.g. demo-x7k2p.
func podName(sandboxSet string) string {
	return sandboxSet + "-" + utilrand.String(podNameSuffixLength)
}

const podNameSuffixLength = 5
