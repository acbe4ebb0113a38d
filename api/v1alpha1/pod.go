package v1alpha1

import corev1 "k8s.io/api/core/v1"

// IsClaimed reports whether an agent holds the Pod: it has a holder, or its
// state says claimed. A claimed Pod has left its pool for good.
func IsClaimed(pod *corev1.Pod) bool {
	return pod.Labels[LabelClaimedBy] != "" || pod.Labels[LabelState] == string(StateClaimed)
}

// IsPodReady reports whether the Pod's Ready condition is True.
func IsPodReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
