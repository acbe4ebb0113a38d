// Package kubelet plays the kubelet's part in tests that run on a bare
// kube-apiserver: it moves Pods through their lifecycle by patching Pod
// status through the API, exactly as a kubelet would.
package kubelet

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// SetReady reports the Pod Running, with its Ready condition set to ready.
func SetReady(ctx context.Context, c client.Client, pod *corev1.Pod, ready bool) error {
	readiness := corev1.ConditionFalse
	if ready {
		readiness = corev1.ConditionTrue
	}
	return setStatus(ctx, c, pod, corev1.PodRunning, corev1.PodCondition{Type: corev1.PodReady, Status: readiness})
}

// SetFailed reports the Pod Failed, as after a crash or an eviction.
func SetFailed(ctx context.Context, c client.Client, pod *corev1.Pod, reason string) error {
	patched := pod.DeepCopy()
	patched.Status.Reason = reason
	return setStatus(ctx, c, patched, corev1.PodFailed, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse})
}

// SetUnschedulable reports that the scheduler found no node for the Pod.
func SetUnschedulable(ctx context.Context, c client.Client, pod *corev1.Pod, message string) error {
	return setStatus(ctx, c, pod, corev1.PodPending, corev1.PodCondition{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: message,
	})
}

func setStatus(ctx context.Context, c client.Client, pod *corev1.Pod, phase corev1.PodPhase, cond corev1.PodCondition) error {
	patched := pod.DeepCopy()
	patched.Status.Phase = phase
	if phase == corev1.PodRunning {
		patched.Status.PodIP = "10.0.0.1"
		patched.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.1"}}
	}
	cond.LastTransitionTime = metav1.Now()
	replaced := false
	for i := range patched.Status.Conditions {
		if patched.Status.Conditions[i].Type == cond.Type {
			patched.Status.Conditions[i] = cond
			replaced = true
		}
	}
	if !replaced {
		patched.Status.Conditions = append(patched.Status.Conditions, cond)
	}
	if err := c.Status().Patch(ctx, patched, client.MergeFrom(pod)); err != nil {
		return fmt.Errorf("patching status of Pod %s: %w", pod.Name, err)
	}
	return nil
}
