package v1alpha1

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

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

// FormatShutdownTime writes a shutdown time as the annotations carry it:
// RFC 3339 in UTC, to the millisecond.
func FormatShutdownTime(t time.Time) string {
	return t.UTC().Format(shutdownTimeLayout)
}

const shutdownTimeLayout = "2006-01-02T15:04:05.000Z"

// ParseShutdownTime reads an RFC 3339 UTC time, as AnnotationShutdownTime
// and AnnotationMaxShutdownTime hold, e.g. 2026-12-01T10:00:00Z.
func ParseShutdownTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !strings.HasSuffix(s, "Z") {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 UTC time such as 2026-12-01T10:00:00Z", s)
	}
	return t, nil
}

// ShutdownTime returns the Pod's shutdown time, if it has a valid one.
func ShutdownTime(pod *corev1.Pod) (time.Time, bool) {
	value, ok := pod.Annotations[AnnotationShutdownTime]
	if !ok {
		return time.Time{}, false
	}
	t, err := ParseShutdownTime(value)
	return t, err == nil
}
