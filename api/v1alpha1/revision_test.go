package v1alpha1

import (
	"regexp"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestRevision(t *testing.T) {
	base := func() SandboxSetSpec {
		return SandboxSetSpec{
			Replicas:           ptr.To[int32](10),
			PersistentContents: []PersistentContent{PersistentContentIP},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine"}},
			}},
		}
	}
	rev := base()
	want := rev.Revision()
	if !regexp.MustCompile(`^[bcdfghjklmnpqrstvwxz2456789]{6,10}$`).MatchString(want) {
		t.Fatalf("revision %q is not a short pod-template-hash-style string", want)
	}

	tests := []struct {
		name   string
		change func(*SandboxSetSpec)
		same   bool
	}{
		{"replicas do not take part", func(s *SandboxSetSpec) { s.Replicas = ptr.To[int32](3) }, true},
		{"the update strategy does not take part", func(s *SandboxSetSpec) {
			v := intstr.FromInt32(2)
			s.UpdateStrategy.MaxUnavailable = &v
		}, true},
		{"the image does", func(s *SandboxSetSpec) { s.Template.Spec.Containers[0].Image = "nginx:1.29" }, false},
		{"template metadata does", func(s *SandboxSetSpec) { s.Template.Annotations = map[string]string{"foo": "bar"} }, false},
		{"persistentContents do", func(s *SandboxSetSpec) {
			s.PersistentContents = append(s.PersistentContents, PersistentContentMemory)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := base()
			tt.change(&spec)
			if got := spec.Revision(); (got == want) != tt.same {
				t.Errorf("revision %q vs base %q: same = %v, want %v", got, want, got == want, tt.same)
			}
		})
	}
}
