package webhooks

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// Each admission rule's exact errors, by type and field path: a rule that
// moves to another field, or changes its kind of refusal, fails here. The
// messages are pinned through the API server in the envtest suites.
var ignoreDetail = cmpopts.IgnoreFields(field.Error{}, "BadValue", "Detail", "Origin", "CoveredByDeclarative")

func TestValidateSandboxSetErrors(t *testing.T) {
	valid := func() *agentsv1alpha1.SandboxSet {
		sbs := &agentsv1alpha1.SandboxSet{
			ObjectMeta: metav1.ObjectMeta{Name: "demo"},
			Spec: agentsv1alpha1.SandboxSetSpec{
				Replicas: ptr.To[int32](3),
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sandbox", Image: "nginx"}}}},
			},
		}
		defaultSandboxSet(sbs)
		return sbs
	}
	spec := field.NewPath("spec")
	tmpl := spec.Child("template")
	for _, tc := range []struct {
		name   string
		mutate func(*agentsv1alpha1.SandboxSet)
		old    func(*agentsv1alpha1.SandboxSet)
		want   field.ErrorList
	}{
		{name: "valid", mutate: func(*agentsv1alpha1.SandboxSet) {}},
		{name: "a name too long", mutate: func(s *agentsv1alpha1.SandboxSet) { s.Name = strings.Repeat("a", 58) },
			want: field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), nil, "")}},
		{name: "negative replicas", mutate: func(s *agentsv1alpha1.SandboxSet) { s.Spec.Replicas = ptr.To[int32](-1) },
			want: field.ErrorList{field.Invalid(spec.Child("replicas"), nil, "")}},
		{name: "above the ceiling", mutate: func(s *agentsv1alpha1.SandboxSet) { s.Spec.Replicas = ptr.To[int32](11) },
			want: field.ErrorList{field.Invalid(spec.Child("replicas"), nil, "")}},
		{name: "kept above a lowered ceiling", mutate: func(s *agentsv1alpha1.SandboxSet) { s.Spec.Replicas = ptr.To[int32](12) },
			old: func(s *agentsv1alpha1.SandboxSet) { s.Spec.Replicas = ptr.To[int32](12) }},
		{name: "unknown contents, after defaulting sorted them", mutate: func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.PersistentContents = []agentsv1alpha1.PersistentContent{"ip", "gpu", "ip"}
		}, want: field.ErrorList{field.NotSupported[string](spec.Child("persistentContents").Index(0), nil, nil)}},
		{name: "a bad maxUnavailable", mutate: func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.UpdateStrategy.MaxUnavailable = ptr.To(intstr.FromString("150%"))
		}, want: field.ErrorList{field.Invalid(spec.Child("updateStrategy", "maxUnavailable"), nil, "")}},
		{name: "a lifetime default beyond its maximum", mutate: func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.ClaimLifetime = &agentsv1alpha1.ClaimLifetime{Default: &metav1.Duration{Duration: time.Hour}, Max: &metav1.Duration{Duration: time.Minute}}
		}, want: field.ErrorList{field.Invalid(spec.Child("claimLifetime", "default"), nil, "")}},
		{name: "an operator label in the template", mutate: func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.Template.Labels[agentsv1alpha1.LabelState] = "available"
		}, want: field.ErrorList{field.Forbidden(tmpl.Child("metadata", "labels").Key(agentsv1alpha1.LabelState), "")}},
		{name: "an operator annotation in the template", mutate: func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.Template.Annotations = map[string]string{agentsv1alpha1.AnnotationShutdownTime: "x"}
		}, want: field.ErrorList{field.Forbidden(tmpl.Child("metadata", "annotations").Key(agentsv1alpha1.AnnotationShutdownTime), "")}},
		{name: "a restart policy other than Always", mutate: func(s *agentsv1alpha1.SandboxSet) { s.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			want: field.ErrorList{field.NotSupported[string](tmpl.Child("spec", "restartPolicy"), nil, nil)}},
		{name: "no containers", mutate: func(s *agentsv1alpha1.SandboxSet) { s.Spec.Template.Spec.Containers = nil },
			want: field.ErrorList{field.Required(tmpl.Child("spec", "containers"), "")}},
		{name: "a nameless, imageless and a duplicate container", mutate: func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.Template.Spec.Containers = []corev1.Container{{Image: " "}, {Name: "a", Image: "i"}, {Name: "a", Image: "i"}}
		}, want: field.ErrorList{
			field.Required(tmpl.Child("spec", "containers").Index(0).Child("name"), ""),
			field.Required(tmpl.Child("spec", "containers").Index(0).Child("image"), ""),
			field.Duplicate(tmpl.Child("spec", "containers").Index(2).Child("name"), nil),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sbs := valid()
			tc.mutate(sbs)
			defaultSandboxSet(sbs) // as the mutating webhook does first
			var old *agentsv1alpha1.SandboxSet
			if tc.old != nil {
				old = valid()
				tc.old(old)
			}
			got := validateSandboxSet(sbs, old, 10)
			if diff := cmp.Diff(tc.want, got, ignoreDetail, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("validateSandboxSet() errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPoolPodUpdateErrors(t *testing.T) {
	now := time.Now()
	warm := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name:   "demo-x7k2p",
				Labels: map[string]string{agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelState: "available", agentsv1alpha1.LabelRevision: "r1"},
				Annotations: map[string]string{
					agentsv1alpha1.AnnotationPersistentContents: "ip",
				},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "agents.kruise.io/v1alpha1", Kind: "SandboxSet", Name: "demo", UID: "u", Controller: ptr.To(true)}},
			},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		}
	}
	held := func() *corev1.Pod {
		pod := warm()
		pod.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1"
		pod.Labels[agentsv1alpha1.LabelState] = "claimed"
		pod.Annotations[agentsv1alpha1.AnnotationClaimedByUser] = "agent-a"
		pod.Annotations[agentsv1alpha1.AnnotationMaxShutdownTime] = agentsv1alpha1.FormatShutdownTime(now.Add(time.Hour))
		pod.Annotations[agentsv1alpha1.AnnotationShutdownTime] = agentsv1alpha1.FormatShutdownTime(now.Add(time.Minute))
		pod.OwnerReferences = nil
		return pod
	}
	labels := field.NewPath("metadata", "labels")
	shutdown := field.NewPath("metadata", "annotations").Key(agentsv1alpha1.AnnotationShutdownTime)
	agent := requester{username: "agent-a"}
	for _, tc := range []struct {
		name      string
		old       func() *corev1.Pod
		change    func(*corev1.Pod)
		who       requester
		wantClaim bool
		want      field.ErrorList
	}{
		{name: "a claim", old: warm, who: agent, wantClaim: true,
			change: func(p *corev1.Pod) { p.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1" }},
		{name: "a claim with a forged state", old: warm, who: agent, wantClaim: true, change: func(p *corev1.Pod) {
			p.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1"
			p.Labels[agentsv1alpha1.LabelState] = "creating"
		}, want: field.ErrorList{field.Forbidden(labels.Key(agentsv1alpha1.LabelState), "")}},
		{name: "a claim with an operator annotation", old: warm, who: agent, wantClaim: true, change: func(p *corev1.Pod) {
			p.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1"
			p.Annotations[agentsv1alpha1.AnnotationPersistentContents] = "memory"
		}, want: field.ErrorList{field.Forbidden(field.NewPath("metadata", "annotations").Key(agentsv1alpha1.AnnotationPersistentContents), "")}},
		{name: "a claim that removes an empty operator annotation", who: agent, wantClaim: true,
			old: func() *corev1.Pod {
				p := warm()
				p.Annotations[agentsv1alpha1.AnnotationPersistentContents] = ""
				return p
			},
			change: func(p *corev1.Pod) {
				p.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1"
				delete(p.Annotations, agentsv1alpha1.AnnotationPersistentContents)
			}, want: field.ErrorList{field.Forbidden(field.NewPath("metadata", "annotations").Key(agentsv1alpha1.AnnotationPersistentContents), "")}},
		{name: "a claim of a Pod that is not Ready", who: agent, wantClaim: true,
			old: func() *corev1.Pod {
				p := warm()
				p.Status.Conditions = nil
				return p
			},
			change: func(p *corev1.Pod) { p.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1" },
			want:   field.ErrorList{field.Forbidden(holderPath, "")}},
		{name: "a claim of a Pod its pool does not control", who: agent, wantClaim: true,
			old: func() *corev1.Pod {
				p := warm()
				p.OwnerReferences = nil
				return p
			},
			change: func(p *corev1.Pod) { p.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1" },
			want:   field.ErrorList{field.Forbidden(holderPath, "")}},
		{name: "an agent id that is no label value", old: warm, who: agent, wantClaim: true,
			change: func(p *corev1.Pod) { p.Labels[agentsv1alpha1.LabelClaimedBy] = "has space" },
			want:   field.ErrorList{field.Invalid(holderPath, nil, "")}},
		{name: "a forged state on a warm Pod", old: warm, who: agent,
			change: func(p *corev1.Pod) { p.Labels[agentsv1alpha1.LabelState] = "claimed" },
			want:   field.ErrorList{field.Forbidden(labels.Key(agentsv1alpha1.LabelState), "")}},
		{name: "the manager's move to an unknown state", old: warm, who: requester{manager: true},
			change: func(p *corev1.Pod) { p.Labels[agentsv1alpha1.LabelState] = "claimed" },
			want:   field.ErrorList{field.NotSupported[string](labels.Key(agentsv1alpha1.LabelState), nil, nil)}},
		{name: "a moved pool and revision", old: warm, who: agent, change: func(p *corev1.Pod) {
			p.Labels[agentsv1alpha1.LabelSandboxSet] = "other"
			p.Labels[agentsv1alpha1.LabelRevision] = "r2"
		}, want: field.ErrorList{field.Forbidden(labels.Key(agentsv1alpha1.LabelSandboxSet), ""), field.Forbidden(labels.Key(agentsv1alpha1.LabelRevision), "")}},
		{name: "an unclaim", old: held, who: agent,
			change: func(p *corev1.Pod) { delete(p.Labels, agentsv1alpha1.LabelClaimedBy) },
			want:   field.ErrorList{field.Forbidden(holderPath, "")}},
		{name: "a claimed Pod made available", old: held, who: agent,
			change: func(p *corev1.Pod) { p.Labels[agentsv1alpha1.LabelState] = "available" },
			want:   field.ErrorList{field.Forbidden(labels.Key(agentsv1alpha1.LabelState), "")}},
		{name: "a renewal", old: held, who: agent,
			change: func(p *corev1.Pod) {
				p.Annotations[agentsv1alpha1.AnnotationShutdownTime] = agentsv1alpha1.FormatShutdownTime(now.Add(30 * time.Minute))
			}},
		{name: "a renewal past the maximum", old: held, who: agent,
			change: func(p *corev1.Pod) {
				p.Annotations[agentsv1alpha1.AnnotationShutdownTime] = agentsv1alpha1.FormatShutdownTime(now.Add(2 * time.Hour))
			},
			want: field.ErrorList{field.Invalid(shutdown, nil, "")}},
		{name: "a past shutdown time", old: held, who: agent,
			change: func(p *corev1.Pod) {
				p.Annotations[agentsv1alpha1.AnnotationShutdownTime] = agentsv1alpha1.FormatShutdownTime(now.Add(-time.Minute))
			},
			want: field.ErrorList{field.Invalid(shutdown, nil, "")}},
		{name: "a removed shutdown time", old: held, who: agent,
			change: func(p *corev1.Pod) { delete(p.Annotations, agentsv1alpha1.AnnotationShutdownTime) },
			want:   field.ErrorList{field.Required(shutdown, "")}},
		{name: "another identity's renewal, left to the pool-pods policy", old: held, who: requester{username: "agent-b"},
			change: func(p *corev1.Pod) { p.Annotations[agentsv1alpha1.AnnotationShutdownTime] = "not a time" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldPod := tc.old()
			newPod := oldPod.DeepCopy()
			tc.change(newPod)
			claim, err := admitPoolPodUpdate(oldPod, newPod, tc.who, now)
			if claim != tc.wantClaim {
				t.Errorf("claim = %v, want %v", claim, tc.wantClaim)
			}
			var got field.ErrorList
			if err != nil {
				got = causes(t, err)
			}
			if diff := cmp.Diff(tc.want, got, ignoreDetail, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("admitPoolPodUpdate() errors (-want +got):\n%s", diff)
			}
		})
	}
}

// causes turns an Invalid API error back into field errors, by type and
// field; any other error fails the test.
func causes(t *testing.T, err error) field.ErrorList {
	t.Helper()
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) || status.Status().Details == nil {
		t.Fatalf("%v is not an Invalid API error with causes", err)
	}
	var out field.ErrorList
	for _, c := range status.Status().Details.Causes {
		if c.Field == "" {
			t.Fatalf("cause %+v names no field", c)
		}
		out = append(out, &field.Error{Type: field.ErrorType(c.Type), Field: c.Field})
	}
	return out
}
