package controllers

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

func TestPoolPodSelector(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"a pool Pod", map[string]string{agentsv1alpha1.LabelSandboxSet: "demo"}, true},
		{"an empty pool label, which names no pool", map[string]string{agentsv1alpha1.LabelSandboxSet: ""}, false},
		{"any other Pod", map[string]string{"app": "web"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PoolPodSelector().Matches(labels.Set(tc.labels)); got != tc.want {
				t.Errorf("PoolPodSelector() matches %v = %v, want %v", tc.labels, got, tc.want)
			}
		})
	}
}

// TestTrimPodKeepsOnlyWhatTheControllerReads: a holder may put its own
// labels and up to 256 KiB of annotations on its sandbox, and none of it
// may reach the manager's memory.
func TestTrimPodKeepsOnlyWhatTheControllerReads(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "demo-x7k2p", Namespace: "ns", UID: "u1", ResourceVersion: "7",
			Labels: map[string]string{
				agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelState: "claimed", agentsv1alpha1.LabelClaimedBy: "agent-1",
				"task": "build",
			},
			Annotations: map[string]string{
				agentsv1alpha1.AnnotationClaimedAt: "2026-12-01T00:00:00Z", "flood": strings.Repeat("x", 150*1024),
			},
			OwnerReferences: []metav1.OwnerReference{{Kind: "SandboxSet", Name: "demo", UID: "s1"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "sandbox", Image: "nginx"}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.0.0.1",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue}},
		},
	}
	got, err := TrimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "demo-x7k2p", Namespace: "ns", UID: "u1", ResourceVersion: "7",
			Labels:          map[string]string{agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelState: "claimed", agentsv1alpha1.LabelClaimedBy: "agent-1"},
			Annotations:     map[string]string{agentsv1alpha1.AnnotationClaimedAt: "2026-12-01T00:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "SandboxSet", Name: "demo", UID: "s1"}},
		},
		Spec:   corev1.PodSpec{NodeName: "node-1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TrimPod() (-want +got):\n%s", diff)
	}
}
