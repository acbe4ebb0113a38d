package webhooks

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// FuzzValidateSandboxSet feeds arbitrary SandboxSets to defaulting and
// validation: neither may panic, defaulting must be idempotent on the whole
// object, every known-bad input must be refused at its field, and every
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
				Replicas: ptr.To(replicas),
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
		if !equality.Semantic.DeepEqual(sbs, once) {
			t.Fatalf("defaulting is not idempotent: %s", cmp.Diff(once, sbs))
		}
		old := sbs.DeepCopy()
		for _, errs := range []field.ErrorList{validateSandboxSet(sbs, nil, 100), validateSandboxSet(sbs, old, 100)} {
			for _, err := range errs {
				checkFieldError(t, err)
			}
			refused := map[string]bool{}
			for _, err := range errs {
				refused[err.Field] = true
			}
			// What must be refused, whatever else is wrong too.
			for path, bad := range map[string]bool{
				"spec.replicas":                          replicas < 0 || (replicas > 100 && errs != nil && old == nil),
				"spec.template.spec.restartPolicy":       restartPolicy != "" && restartPolicy != string(corev1.RestartPolicyAlways),
				"spec.template.spec.containers[0].image": strings.TrimSpace(image) == "",
				"spec.template.spec.containers[0].name":  container == "",
			} {
				if bad && !refused[path] {
					t.Fatalf("%s was not refused; refusals: %v", path, errs)
				}
			}
			for i, c := range sbs.Spec.PersistentContents {
				if !slices.Contains(supportedContents, string(c)) && !refused[fmt.Sprintf("spec.persistentContents[%d]", i)] {
					t.Fatalf("persistent content %q was not refused; refusals: %v", c, errs)
				}
			}
		}
		if replicas > 100 && !slices.ContainsFunc(validateSandboxSet(sbs, nil, 100), func(e *field.Error) bool { return e.Field == "spec.replicas" }) {
			t.Fatalf("%d replicas, over the ceiling of 100, were not refused at create", replicas)
		}
	})
}

// FuzzAdmitPoolPodUpdate feeds arbitrary changes of the pool labels to the
// claim decision, on Pods in any phase, readiness and ownership. It may not
// panic; every refusal must be an API status that names the Pod and, if
// Invalid, the field; and whatever it admits from anyone but the manager must
// leave the pool labels as they were, or be a valid claim: an unclaimed,
// Ready, running Pod its SandboxSet controls, a valid agent id, nothing else
// of the operator's changed. The manager may only move an unclaimed Pod
// between creating and available.
func FuzzAdmitPoolPodUpdate(f *testing.F) {
	f.Add("", "agent-1", "available", "available", "demo", "demo", "r1", "r1", "Running", true, false, false, "demo")
	f.Add("agent-1", "agent-2", "claimed", "claimed", "demo", "demo", "r1", "r1", "Running", true, false, false, "demo")
	f.Add("", "", "creating", "available", "demo", "demo", "r1", "r1", "Running", true, true, false, "demo")
	f.Add("", "", "available", "claimed", "demo", "demo", "r1", "r1", "Running", true, false, false, "demo")
	f.Add("", "agent-1", "available", "available", "demo", "demo", "r1", "r1", "Failed", true, false, false, "demo")
	f.Add("", "agent-1", "available", "available", "demo", "demo", "r1", "r1", "Running", true, false, false, "other")
	f.Add("", "agent-1", "available", "available", "demo", "demo", "r1", "r1", "Running", true, false, false, "")
	f.Add("", strings.Repeat("a", 64), "available", "claimed", "demo", "other", "r1", "r2", "Pending", false, false, true, "demo")
	f.Fuzz(func(t *testing.T, oldHolder, newHolder, oldState, newState, oldPool, newPool, oldRev, newRev, phase string,
		ready, byManager, terminating bool, owner string) {
		oldPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "demo-x7k2p", Labels: map[string]string{
			agentsv1alpha1.LabelState: oldState, agentsv1alpha1.LabelSandboxSet: oldPool, agentsv1alpha1.LabelRevision: oldRev,
		}}}
		if owner != "" {
			oldPod.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: agentsv1alpha1.GroupVersion.String(), Kind: "SandboxSet", Name: owner, UID: "u1", Controller: ptr.To(true),
			}}
		}
		if oldHolder != "" {
			oldPod.Labels[agentsv1alpha1.LabelClaimedBy] = oldHolder
		}
		oldPod.Status.Phase = corev1.PodPhase(phase)
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
		poolLabelsKept := oldPool == newPool && oldRev == newRev
		switch {
		case claim:
			validHolder := len(validation.IsValidLabelValue(newHolder)) == 0
			claimable := oldHolder == "" && ready && !terminating && phase != string(corev1.PodFailed) && phase != string(corev1.PodSucceeded) &&
				owner != "" && owner == oldPool
			if newHolder == "" || !validHolder || !claimable || !poolLabelsKept || newState != oldState {
				t.Fatalf("admitted as a claim: holder %q→%q, state %q→%q, pool %q→%q, revision %q→%q, phase %q, ready %v, terminating %v, owner %q",
					oldHolder, newHolder, oldState, newState, oldPool, newPool, oldRev, newRev, phase, ready, terminating, owner)
			}
			if errs := completeClaim(newPod, time.Now(), "system:serviceaccount:agents:agent-1", nil); len(errs) > 0 {
				t.Fatalf("completing an admitted claim failed: %v", errs)
			}
			if newPod.Labels[agentsv1alpha1.LabelState] != string(agentsv1alpha1.StateClaimed) || len(newPod.OwnerReferences) != 0 {
				t.Fatalf("a completed claim left state %q and owners %v", newPod.Labels[agentsv1alpha1.LabelState], newPod.OwnerReferences)
			}
		case !poolLabelsKept || oldHolder != newHolder:
			t.Fatalf("admitted a change of pool %q→%q, revision %q→%q or holder %q→%q that is no claim", oldPool, newPool, oldRev, newRev, oldHolder, newHolder)
		case oldState == newState:
		case !byManager:
			t.Fatalf("admitted a state change %q→%q by an agent", oldState, newState)
		case oldHolder == "" && newState != string(agentsv1alpha1.StateCreating) && newState != string(agentsv1alpha1.StateAvailable):
			t.Fatalf("admitted the manager's move of an unclaimed Pod to state %q", newState)
		case oldHolder != "" && newState != string(agentsv1alpha1.StateClaimed):
			t.Fatalf("admitted the manager's move of a claimed Pod to state %q", newState)
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
