package webhooks

import (
	"encoding/json"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// TestMetadataPatch: the Pod webhook's patch, applied by the API server to
// the Pod as it was sent, must give the metadata Default left, and leave
// the rest of the Pod alone.
func TestMetadataPatch(t *testing.T) {
	owner := metav1.OwnerReference{APIVersion: "agents.kruise.io/v1alpha1", Kind: "SandboxSet", Name: "demo", UID: "s1", Controller: ptr.To(true)}
	for _, tc := range []struct {
		name   string
		sent   metav1.ObjectMeta
		mutate func(*metav1.ObjectMeta)
	}{
		{"stamp a new Pod that has no annotations", metav1.ObjectMeta{Name: "demo-1", Labels: map[string]string{agentsv1alpha1.LabelSandboxSet: "demo"}},
			func(m *metav1.ObjectMeta) {
				m.Annotations = map[string]string{agentsv1alpha1.AnnotationPersistentContents: ""}
				m.Labels[agentsv1alpha1.LabelState] = "creating"
			}},
		{"stamp a new Pod that has empty annotations", metav1.ObjectMeta{Name: "demo-1", Annotations: map[string]string{}},
			func(m *metav1.ObjectMeta) { m.Annotations[agentsv1alpha1.AnnotationPersistentContents] = "ip,memory" }},
		{"complete a claim: stamps, and the controller reference dropped", metav1.ObjectMeta{
			Name: "demo-1", Labels: map[string]string{agentsv1alpha1.LabelClaimedBy: "agent-1", "task": "build"},
			Annotations: map[string]string{"note": "x", "a/b~c": "escaped"}, OwnerReferences: []metav1.OwnerReference{owner},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1",
				FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{"f:task":{}}}}`)}}},
		}, func(m *metav1.ObjectMeta) {
			m.Annotations[agentsv1alpha1.AnnotationClaimedAt] = "2026-12-07T10:00:00Z"
			m.Annotations[agentsv1alpha1.AnnotationClaimedByUser] = "system:serviceaccount:ns:agent"
			m.Labels[agentsv1alpha1.LabelState] = "claimed"
			m.OwnerReferences = nil
		}},
		{"name a generateName Pod", metav1.ObjectMeta{GenerateName: "demo-template-"},
			func(m *metav1.ObjectMeta) { m.Name = "demo-template-x7k2p" }},
		{"change nothing", metav1.ObjectMeta{Name: "demo-1", Labels: map[string]string{"a": "b"}}, func(*metav1.ObjectMeta) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: tc.sent,
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "sandbox", Image: "nginx"}}},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning},
			}
			raw, err := json.Marshal(sent)
			if err != nil {
				t.Fatal(err)
			}
			want := sent.DeepCopy()
			tc.mutate(&want.ObjectMeta)
			ops, err := metadataPatch(&sent.ObjectMeta, &want.ObjectMeta)
			if err != nil {
				t.Fatal(err)
			}
			patched := raw
			if len(ops) > 0 {
				encoded, err := json.Marshal(ops)
				if err != nil {
					t.Fatal(err)
				}
				patch, err := jsonpatchapply.DecodePatch(encoded)
				if err != nil {
					t.Fatal(err)
				}
				if patched, err = patch.Apply(raw); err != nil {
					t.Fatalf("applying %s: %v", encoded, err)
				}
			}
			got := &corev1.Pod{}
			if err := json.Unmarshal(patched, got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("the patched Pod differs (-want +got):\n%s", diff)
			}
		})
	}
}
