package webhooks

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// FuzzValidateSandboxSet feeds arbitrary SandboxSets to defaulting and
// validation: neither may panic, defaulting must be idempotent, and every
// refusal must name a field and say what is wrong.
func FuzzValidateSandboxSet(f *testing.F) {
	f.Add("demo", int32(10), "ip,memory", "25%", int32(0), "nginx", "nginx:alpine", "app", "web", "Always")
	f.Add("", int32(-1), "gpu,ip,ip", "150%", int32(-3), "Web_1", " ", "agents.kruise.io/state", "x", "Never")
	f.Add(strings.Repeat("a", 60), int32(1<<30), "", "abc", int32(2), "", "", "bad key!", strings.Repeat("v", 70), "OnFailure")
	f.Fuzz(func(t *testing.T, name string, replicas int32, contents, maxUnavailableStr string, maxUnavailableInt int32,
		container, image, labelKey, labelValue, restartPolicy string) {
		sbs := &agentsv1alpha1.SandboxSet{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: agentsv1alpha1.SandboxSetSpec{
				Replicas: replicas,
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{labelKey: labelValue}, Annotations: map[string]string{labelKey: labelValue}},
					Spec: corev1.PodSpec{
						RestartPolicy: corev1.RestartPolicy(restartPolicy),
						Containers:    []corev1.Container{{Name: container, Image: image}, {Name: container + "-2", Image: image}},
					},
				},
			},
		}
		for _, c := range strings.Split(contents, ",") {
			sbs.Spec.PersistentContents = append(sbs.Spec.PersistentContents, agentsv1alpha1.PersistentContent(c))
		}
		if maxUnavailableStr != "" {
			sbs.Spec.UpdateStrategy.MaxUnavailable = ptr.To(intstr.FromString(maxUnavailableStr))
		} else {
			sbs.Spec.UpdateStrategy.MaxUnavailable = ptr.To(intstr.FromInt32(maxUnavailableInt))
		}

		defaultSandboxSet(sbs)
		once := sbs.DeepCopy()
		defaultSandboxSet(sbs)
		if sbs.Spec.Revision() != once.Spec.Revision() {
			t.Fatalf("defaulting is not idempotent")
		}
		old := sbs.DeepCopy()
		for _, errs := range [][]error{
			toErrors(validateSandboxSet(sbs, nil, 100)),
			toErrors(validateSandboxSet(sbs, old, 100)),
		} {
			for _, err := range errs {
				checkFieldError(t, err)
			}
		}
	})
}

// FuzzAdmitPoolPodUpdate feeds arbitrary label changes to the claim
// decision: it may not panic; a claim it allows must come from an unclaimed,
// Ready Pod and a valid holder and leave the Pod claimed; every refusal must
// be an API status that names the Pod and, if Invalid, the field.
func FuzzAdmitPoolPodUpdate(f *testing.F) {
	f.Add("", "agent-1", "available", "available", "demo", "demo", "r1", "r1", true, false, false)
	f.Add("agent-1", "agent-2", "claimed", "claimed", "demo", "demo", "r1", "r1", true, false, false)
	f.Add("", "", "creating", "available", "demo", "demo", "r1", "r1", true, true, false)
	f.Add("", strings.Repeat("a", 64), "available", "claimed", "demo", "other", "r1", "r2", false, false, true)
	f.Fuzz(func(t *testing.T, oldHolder, newHolder, oldState, newState, oldPool, newPool, oldRev, newRev string, ready, byManager, terminating bool) {
		oldPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "demo-x7k2p", Labels: map[string]string{
			agentsv1alpha1.LabelState: oldState, agentsv1alpha1.LabelSandboxSet: oldPool, agentsv1alpha1.LabelRevision: oldRev,
		}}}
		if oldHolder != "" {
			oldPod.Labels[agentsv1alpha1.LabelClaimedBy] = oldHolder
		}
		if ready {
			oldPod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}
		if terminating {
			oldPod.DeletionTimestamp = ptr.To(metav1.Now())
		}
		newPod := oldPod.DeepCopy()
		newPod.Labels[agentsv1alpha1.LabelState] = newState
		newPod.Labels[agentsv1alpha1.LabelSandboxSet] = newPool
		newPod.Labels[agentsv1alpha1.LabelRevision] = newRev
		delete(newPod.Labels, agentsv1alpha1.LabelClaimedBy)
		if newHolder != "" {
			newPod.Labels[agentsv1alpha1.LabelClaimedBy] = newHolder
		}

		claim, err := admitPoolPodUpdate(oldPod, newPod, requester{username: "agent", manager: byManager}, time.Now())
		if err != nil {
			var status apierrors.APIStatus
			if !errors.As(err, &status) || !strings.Contains(err.Error(), oldPod.Name) {
				t.Fatalf("refusal %q is not an API status naming the Pod", err)
			}
			if apierrors.IsInvalid(err) {
				for _, cause := range status.Status().Details.Causes {
					if cause.Field == "" || cause.Message == "" {
						t.Fatalf("refusal cause %+v has no field or message", cause)
					}
				}
			}
			return
		}
		if !claim {
			return
		}
		if oldHolder != "" || newHolder == "" || !ready || terminating {
			t.Fatalf("allowed a claim by %q of a Pod held by %q (ready=%v, terminating=%v)", newHolder, oldHolder, ready, terminating)
		}
		completeClaim(newPod, time.Now(), "system:serviceaccount:agents:agent-1", nil)
		if newPod.Labels[agentsv1alpha1.LabelState] != string(agentsv1alpha1.StateClaimed) || len(newPod.OwnerReferences) != 0 {
			t.Fatalf("a completed claim left state %q and owners %v", newPod.Labels[agentsv1alpha1.LabelState], newPod.OwnerReferences)
		}
	})
}

func toErrors[T error](list []T) []error {
	out := make([]error, len(list))
	for i, e := range list {
		out[i] = e
	}
	return out
}

func checkFieldError(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if !strings.Contains(msg, "metadata.") && !strings.Contains(msg, "spec.") {
		t.Fatalf("refusal %q names no field", msg)
	}
	if !strings.Contains(msg, ": ") {
		t.Fatalf("refusal %q says nothing about what is wrong", msg)
	}
}
