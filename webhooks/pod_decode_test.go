package webhooks

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// claimedPodJSON is a pool Pod as the API server sends it in a claim's
// review: scheduled, Ready, written by several managers.
func claimedPodJSON(t testing.TB) []byte {
	at := metav1.NewTime(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	fields := func(manager, raw string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &at,
			FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(raw)}}
	}
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "demo-x7k2p", Namespace: "team-a", UID: "u1", ResourceVersion: "42", CreationTimestamp: at,
			Labels: map[string]string{agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelState: "available",
				agentsv1alpha1.LabelRevision: "5d8f", agentsv1alpha1.LabelClaimedBy: "agent-1"},
			Annotations: map[string]string{agentsv1alpha1.AnnotationPersistentContents: "ip,memory"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "agents.kruise.io/v1alpha1", Kind: "SandboxSet", Name: "demo",
				UID: "s1", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				fields("manager", `{"f:metadata":{"f:labels":{".":{},"f:agents.kruise.io/sandboxset":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"sandbox\"}":{".":{},"f:image":{},"f:name":{},"f:resources":{}}}}}`),
				fields("kwok", `{"f:status":{"f:conditions":{"k:{\"type\":\"Ready\"}":{".":{},"f:status":{},"f:type":{}}},"f:containerStatuses":{},"f:podIP":{}}}`),
				fields("kubectl-label", `{"f:metadata":{"f:labels":{"f:agents.kruise.io/claimed-by":{}}}}`),
			},
		},
		Spec: corev1.PodSpec{
			NodeName: "node-1",
			Containers: []corev1.Container{{Name: "sandbox", Image: "registry.example/sandbox:1.4",
				Env: []corev1.EnvVar{{Name: "MODE", Value: "agent"}, {Name: "LOG", Value: "info"}},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")}}}},
			Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists,
				Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.0.0.7", StartTime: &at,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: at},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: at},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "sandbox", Ready: true, Image: "registry.example/sandbox:1.4",
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}}}},
		},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestDecodePodHead: judging an update reads the same Pod from the head
// as from the whole.
func TestDecodePodHead(t *testing.T) {
	raw := runtime.RawExtension{Raw: claimedPodJSON(t)}
	whole := &corev1.Pod{}
	if err := admission.NewDecoder(clientgoscheme.Scheme).DecodeRaw(raw, whole); err != nil {
		t.Fatal(err)
	}
	if len(whole.ManagedFields) == 0 || whole.Spec.NodeName == "" {
		t.Fatal("the whole Pod decodes without its managed fields or spec: the comparison below proves nothing")
	}
	want := &corev1.Pod{ObjectMeta: whole.ObjectMeta, Status: corev1.PodStatus{Phase: whole.Status.Phase, Conditions: whole.Status.Conditions}}
	want.ManagedFields = nil

	got, err := decodePodHead(raw)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the head differs from the whole Pod (-want +got):\n%s", diff)
	}
	if !agentsv1alpha1.IsPodReady(got) || got.Labels[agentsv1alpha1.LabelClaimedBy] != "agent-1" {
		t.Errorf("the head lost what a claim is judged on: %+v", got)
	}

	for _, bad := range []string{``, `{"metadata":{"labels":["not","a","map"]}}`, `{"Metadata":{"name":"a"},"metadata":7}`} {
		if _, err := decodePodHead(runtime.RawExtension{Raw: []byte(bad)}); err == nil {
			t.Errorf("decoding %q: no error", bad)
		}
	}
}

// BenchmarkDecodeClaimedPod compares the two ways of decoding the Pod a
// claim's review carries twice.
func BenchmarkDecodeClaimedPod(b *testing.B) {
	raw := runtime.RawExtension{Raw: claimedPodJSON(b)}
	decoder := admission.NewDecoder(clientgoscheme.Scheme)
	b.Run("whole", func(b *testing.B) {
		for b.Loop() {
			if err := decoder.DecodeRaw(raw, &corev1.Pod{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("head", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodePodHead(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
