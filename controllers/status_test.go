package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/controllers/sizing"
)

func TestComputeStatus(t *testing.T) {
	unschedulable := testPod("pending", false, "new", 0)
	unschedulable.Status.Conditions = []corev1.PodCondition{{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available",
	}}
	podsGR := schema.GroupResource{Resource: "pods"}
	half := []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", true, "new", 0)}
	tests := []struct {
		name                         string
		pool                         pool
		createErr                    error
		wantReplicas, wantAvail      int32
		wantUpdated                  int32
		wantReady                    metav1.ConditionStatus
		wantReadyReason, wantFailure string
		// wantKstatus is the one of Reconciling and Stalled that is
		// present, if any, with its reason; wantHealth is what kstatus
		// makes of the whole status.
		wantKstatus, wantKstatusReason string
		wantHealth                     kstatus.Status
	}{{
		name:         "seed stage 1: the pool is full",
		pool:         pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", true, "new", 0), testPod("c", true, "new", 0)}},
		wantReplicas: 3, wantAvail: 3, wantUpdated: 3,
		wantReady: metav1.ConditionTrue, wantReadyReason: agentsv1alpha1.ReasonPoolReady, wantFailure: agentsv1alpha1.ReasonCreateSucceeded,
		wantHealth: kstatus.CurrentStatus,
	}, {
		name: "seed stage 2: a claimed Pod no longer counts",
		pool: pool{
			active:  []*corev1.Pod{testPod("b", true, "new", 0), testPod("c", true, "new", 0)},
			claimed: []*corev1.Pod{testPod("a", true, "new", 0)},
		},
		wantReplicas: 2, wantAvail: 2, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonCreateSucceeded,
		wantKstatus: agentsv1alpha1.ConditionReconciling, wantKstatusReason: agentsv1alpha1.ReasonSandboxesCreating, wantHealth: kstatus.InProgressStatus,
	}, {
		name:         "seed stage 3: the replacement is creating",
		pool:         pool{active: []*corev1.Pod{testPod("b", true, "new", 0), testPod("c", true, "new", 0)}, pendingCreates: 1},
		wantReplicas: 3, wantAvail: 2, wantUpdated: 3,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonCreateSucceeded,
		wantKstatus: agentsv1alpha1.ConditionReconciling, wantKstatusReason: agentsv1alpha1.ReasonSandboxesCreating, wantHealth: kstatus.InProgressStatus,
	}, {
		name:         "unschedulable Pods are named, and stall the pool",
		pool:         pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", true, "new", 0), unschedulable}},
		wantReplicas: 3, wantAvail: 2, wantUpdated: 3,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonUnschedulable, wantFailure: agentsv1alpha1.ReasonCreateSucceeded,
		wantKstatus: agentsv1alpha1.ConditionStalled, wantKstatusReason: agentsv1alpha1.ReasonUnschedulable, wantHealth: kstatus.FailedStatus,
	}, {
		name:         "a rollout in progress",
		pool:         pool{active: []*corev1.Pod{testPod("a", true, "old", 0), testPod("b", true, "new", 0), testPod("c", true, "new", 0)}},
		wantReplicas: 3, wantAvail: 3, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonRollingUpdate, wantFailure: agentsv1alpha1.ReasonCreateSucceeded,
		wantKstatus: agentsv1alpha1.ConditionReconciling, wantKstatusReason: agentsv1alpha1.ReasonRollingUpdate, wantHealth: kstatus.InProgressStatus,
	}, {
		name:         "quota refusal",
		pool:         pool{active: half},
		createErr:    apierrors.NewForbidden(podsGR, "demo-x", errors.New("exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2")),
		wantReplicas: 2, wantAvail: 2, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonQuotaExceeded,
		wantKstatus: agentsv1alpha1.ConditionStalled, wantKstatusReason: agentsv1alpha1.ReasonQuotaExceeded, wantHealth: kstatus.FailedStatus,
	}, {
		name:         "a quota refusal outranks an unschedulable Pod",
		pool:         pool{active: []*corev1.Pod{testPod("a", true, "new", 0), unschedulable}},
		createErr:    apierrors.NewForbidden(podsGR, "demo-x", errors.New("exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2")),
		wantReplicas: 2, wantAvail: 1, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonUnschedulable, wantFailure: agentsv1alpha1.ReasonQuotaExceeded,
		wantKstatus: agentsv1alpha1.ConditionStalled, wantKstatusReason: agentsv1alpha1.ReasonQuotaExceeded, wantHealth: kstatus.FailedStatus,
	}, {
		name:         "the API server's PodSecurity admission refuses",
		pool:         pool{active: half},
		createErr:    apierrors.NewForbidden(podsGR, "demo-x", errors.New(`violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false`)),
		wantReplicas: 2, wantAvail: 2, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonPodSecurityViolation,
		wantKstatus: agentsv1alpha1.ConditionStalled, wantKstatusReason: agentsv1alpha1.ReasonPodSecurityViolation, wantHealth: kstatus.FailedStatus,
	}, {
		name: "the Pod webhook refuses below the operator's Pod Security minimum",
		pool: pool{active: half},
		createErr: apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "demo-x", field.ErrorList{field.Forbidden(field.NewPath("spec", "hostNetwork"),
			`rule pod-security: violates PodSecurity "baseline:latest", the operator's minimum, manager flag --pod-security-level: host namespaces`)}),
		wantReplicas: 2, wantAvail: 2, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonPodSecurityViolation,
		wantKstatus: agentsv1alpha1.ConditionStalled, wantKstatusReason: agentsv1alpha1.ReasonPodSecurityViolation, wantHealth: kstatus.FailedStatus,
	}, {
		name:         "another admission refusal",
		pool:         pool{active: half},
		createErr:    apierrors.NewForbidden(podsGR, "demo-x", errors.New(`admission webhook "policy.example.com" denied the request: images must come from registry.example.com`)),
		wantReplicas: 2, wantAvail: 2, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonCreateForbidden,
		wantKstatus: agentsv1alpha1.ConditionStalled, wantKstatusReason: agentsv1alpha1.ReasonCreateForbidden, wantHealth: kstatus.FailedStatus,
	}, {
		name:         "other failures pass: the pool is still progressing",
		pool:         pool{active: half},
		createErr:    errors.New("connection refused"),
		wantReplicas: 2, wantAvail: 2, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonCreateFailed,
		wantKstatus: agentsv1alpha1.ConditionReconciling, wantKstatusReason: agentsv1alpha1.ReasonSandboxesCreating, wantHealth: kstatus.InProgressStatus,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sbs := &agentsv1alpha1.SandboxSet{ObjectMeta: metav1.ObjectMeta{Generation: 4}, Spec: agentsv1alpha1.SandboxSetSpec{Replicas: ptr.To[int32](3)}}
			got := computeStatus(sbs, tt.pool, "new", "sel", tt.createErr)
			if got.Replicas != tt.wantReplicas || got.AvailableReplicas != tt.wantAvail || got.UpdatedReplicas != tt.wantUpdated {
				t.Errorf("replicas/available/updated = %d/%d/%d, want %d/%d/%d",
					got.Replicas, got.AvailableReplicas, got.UpdatedReplicas, tt.wantReplicas, tt.wantAvail, tt.wantUpdated)
			}
			ready := meta.FindStatusCondition(got.Conditions, agentsv1alpha1.ConditionReady)
			if ready.Status != tt.wantReady || ready.Reason != tt.wantReadyReason || ready.ObservedGeneration != 4 {
				t.Errorf("Ready = %s/%s (generation %d), want %s/%s", ready.Status, ready.Reason, ready.ObservedGeneration, tt.wantReady, tt.wantReadyReason)
			}
			failure := meta.FindStatusCondition(got.Conditions, agentsv1alpha1.ConditionReplicaFailure)
			if failure.Reason != tt.wantFailure {
				t.Errorf("ReplicaFailure reason = %s, want %s", failure.Reason, tt.wantFailure)
			}
			if got.UpdateRevision != "new" || got.Selector != "sel" {
				t.Errorf("revision/selector = %s/%s", got.UpdateRevision, got.Selector)
			}
			if diff := cmp.Diff(tt.wantKstatus+" "+tt.wantKstatusReason, kstatusConditions(got.Conditions)); diff != "" {
				t.Errorf("Reconciling/Stalled (-want +got):\n%s", diff)
			}
			if c := meta.FindStatusCondition(got.Conditions, tt.wantKstatus); c != nil {
				if c.Status != metav1.ConditionTrue || c.ObservedGeneration != 4 || !strings.HasPrefix(c.Message, c.Reason+": ") {
					t.Errorf("%s = %s (generation %d) %q, want True at generation 4 with a message that starts with its reason", c.Type, c.Status, c.ObservedGeneration, c.Message)
				}
			}

			sbs.Status = got
			sbs.Status.ObservedGeneration = sbs.Generation
			res := computeKstatus(t, sbs)
			if res.Status != tt.wantHealth || (tt.wantKstatus != "" && !strings.Contains(res.Message, tt.wantKstatusReason)) {
				t.Errorf("kstatus = %s %q, want %s with reason %s", res.Status, res.Message, tt.wantHealth, tt.wantKstatusReason)
			}
		})
	}
}

// kstatusConditions lists the Reconciling and Stalled conditions present, as
// "type reason", " " for none.
func kstatusConditions(conditions []metav1.Condition) string {
	var found []string
	for _, c := range conditions {
		if c.Type == agentsv1alpha1.ConditionReconciling || c.Type == agentsv1alpha1.ConditionStalled {
			found = append(found, c.Type+" "+c.Reason)
		}
	}
	if len(found) == 0 {
		return " "
	}
	return strings.Join(found, ", ")
}

// computeKstatus runs kstatus on the SandboxSet as it would be stored.
func computeKstatus(t *testing.T, sbs *agentsv1alpha1.SandboxSet) *kstatus.Result {
	t.Helper()
	res, err := kstatus.Compute(toUnstructured(t, sbs))
	if err != nil {
		t.Fatalf("kstatus: %v", err)
	}
	return res
}

// toUnstructured is the SandboxSet as the API server would serve it.
func toUnstructured(t *testing.T, sbs *agentsv1alpha1.SandboxSet) *unstructured.Unstructured {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(sbs)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetGroupVersionKind(agentsv1alpha1.GroupVersion.WithKind("SandboxSet"))
	return u
}

// TestKstatusConditionsThroughALife walks one pool through filling, a
// quota, filling again and full: Reconciling and Stalled are never both
// present, each keeps its lastTransitionTime while it stays, and each is
// gone once it is False.
func TestKstatusConditionsThroughALife(t *testing.T) {
	sbs := &agentsv1alpha1.SandboxSet{ObjectMeta: metav1.ObjectMeta{Generation: 1}, Spec: agentsv1alpha1.SandboxSetSpec{Replicas: ptr.To[int32](3)}}
	quota := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "demo-x", errors.New("exceeded quota: pods"))
	steps := []struct {
		name      string
		pool      pool
		createErr error
		want      string
		// keepsTime: the condition was there before, so its
		// lastTransitionTime must not move.
		keepsTime bool
	}{
		{name: "filling", pool: pool{pendingCreates: 3}, want: agentsv1alpha1.ConditionReconciling + " " + agentsv1alpha1.ReasonSandboxesCreating},
		{name: "one available", pool: pool{active: []*corev1.Pod{testPod("a", true, "new", 0)}, pendingCreates: 2},
			want: agentsv1alpha1.ConditionReconciling + " " + agentsv1alpha1.ReasonSandboxesCreating, keepsTime: true},
		{name: "quota", pool: pool{active: []*corev1.Pod{testPod("a", true, "new", 0)}}, createErr: quota,
			want: agentsv1alpha1.ConditionStalled + " " + agentsv1alpha1.ReasonQuotaExceeded},
		{name: "quota, another probe refused", pool: pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", false, "new", 0)}}, createErr: quota,
			want: agentsv1alpha1.ConditionStalled + " " + agentsv1alpha1.ReasonQuotaExceeded, keepsTime: true},
		{name: "quota raised", pool: pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", false, "new", 0)}, pendingCreates: 1},
			want: agentsv1alpha1.ConditionReconciling + " " + agentsv1alpha1.ReasonSandboxesCreating},
		{name: "full", pool: pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", true, "new", 0), testPod("c", true, "new", 0)}},
			want: " "},
	}
	past := metav1.Unix(1, 0)
	for _, step := range steps {
		sbs.Status = computeStatus(sbs, step.pool, "new", "sel", step.createErr)
		if got := kstatusConditions(sbs.Status.Conditions); got != step.want {
			t.Fatalf("%s: Reconciling/Stalled = %q, want %q", step.name, got, step.want)
		}
		for i := range sbs.Status.Conditions {
			c := &sbs.Status.Conditions[i]
			if c.Type != agentsv1alpha1.ConditionReconciling && c.Type != agentsv1alpha1.ConditionStalled {
				continue
			}
			if moved := !c.LastTransitionTime.Equal(&past); moved == step.keepsTime {
				t.Errorf("%s: %s lastTransitionTime %v, kept from before: %v", step.name, c.Type, c.LastTransitionTime, step.keepsTime)
			}
			c.LastTransitionTime = past // so the next step can tell whether it moved
		}
	}
}

func TestStampsGeneration(t *testing.T) {
	stalled := agentsv1alpha1.SandboxSetStatus{Conditions: []metav1.Condition{{Type: agentsv1alpha1.ConditionStalled, Status: metav1.ConditionTrue}}}
	reconciling := agentsv1alpha1.SandboxSetStatus{Conditions: []metav1.Condition{{Type: agentsv1alpha1.ConditionReconciling, Status: metav1.ConditionTrue}}}
	refused, failed := errors.New("refused"), errors.New("failed")
	tests := []struct {
		name      string
		status    agentsv1alpha1.SandboxSetStatus
		createErr error
		otherErr  error
		deferred  bool
		want      bool
	}{
		{name: "a pass without errors", status: reconciling, want: true},
		{name: "a refusal that stalls the pool", status: stalled, createErr: refused, want: true},
		{name: "a creation error that does not stall it", status: reconciling, createErr: failed, want: false},
		{name: "a stalled pool whose pass failed elsewhere", status: stalled, createErr: refused, otherErr: failed, want: false},
		{name: "an unschedulable pool whose pass failed elsewhere", status: stalled, otherErr: failed, want: false},
		{name: "a pass that waits out an earlier refusal", status: stalled, deferred: true, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stampsGeneration(tt.status, tt.createErr, tt.otherErr, tt.deferred); got != tt.want {
				t.Errorf("stampsGeneration = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConditionTransitionTimeMovesOnlyOnFlip(t *testing.T) {
	sbs := &agentsv1alpha1.SandboxSet{Spec: agentsv1alpha1.SandboxSetSpec{Replicas: ptr.To[int32](1)}}
	creating := pool{active: []*corev1.Pod{testPod("a", false, "new", 0)}}
	sbs.Status = computeStatus(sbs, creating, "new", "sel", nil)
	first := meta.FindStatusCondition(sbs.Status.Conditions, agentsv1alpha1.ConditionReady).LastTransitionTime
	meta.FindStatusCondition(sbs.Status.Conditions, agentsv1alpha1.ConditionReady).LastTransitionTime = metav1.Unix(1, 0)

	sbs.Status = computeStatus(sbs, creating, "new", "sel", nil)
	if got := meta.FindStatusCondition(sbs.Status.Conditions, agentsv1alpha1.ConditionReady).LastTransitionTime; !got.Equal(ptrTime(metav1.Unix(1, 0))) {
		t.Errorf("unchanged status moved lastTransitionTime from %v to %v", first, got)
	}
	sbs.Status = computeStatus(sbs, pool{active: []*corev1.Pod{testPod("a", true, "new", 0)}}, "new", "sel", nil)
	if got := meta.FindStatusCondition(sbs.Status.Conditions, agentsv1alpha1.ConditionReady).LastTransitionTime; got.Equal(ptrTime(metav1.Unix(1, 0))) {
		t.Error("a flip to True kept the old lastTransitionTime")
	}
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

func TestSameStory(t *testing.T) {
	creating := func(available int32) agentsv1alpha1.SandboxSetStatus {
		return agentsv1alpha1.SandboxSetStatus{
			ObservedGeneration: 2, Replicas: 10, AvailableReplicas: available, UpdatedReplicas: 10, UpdateRevision: "r1",
			Conditions: []metav1.Condition{{
				Type: agentsv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: agentsv1alpha1.ReasonSandboxesCreating,
				Message: fmt.Sprintf("%d of 10 sandboxes are available", available), ObservedGeneration: 2,
			}, {
				Type: agentsv1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: agentsv1alpha1.ReasonSandboxesCreating,
				Message: fmt.Sprintf("SandboxesCreating: %d of 10 sandboxes are available", available), ObservedGeneration: 2,
			}},
			Autoscaling: &agentsv1alpha1.AutoscalingStatus{DesiredReplicas: 10, ArrivalRate: "2", Reason: sizing.ReasonDemand},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*agentsv1alpha1.SandboxSetStatus)
		want   bool
	}{
		{"nothing", func(*agentsv1alpha1.SandboxSetStatus) {}, true},
		{"the counts and the message that quotes them", func(s *agentsv1alpha1.SandboxSetStatus) { *s = creating(7) }, true},
		{"the autoscaler's rate", func(s *agentsv1alpha1.SandboxSetStatus) { s.Autoscaling.ArrivalRate = "3.5" }, true},
		{"Ready refilled, and Reconciling gone", func(s *agentsv1alpha1.SandboxSetStatus) {
			s.Conditions[0].Status, s.Conditions[0].Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonPoolReady
			s.Conditions = s.Conditions[:1]
		}, true},
		{"Ready's generation", func(s *agentsv1alpha1.SandboxSetStatus) { s.Conditions[0].ObservedGeneration = 3 }, false},
		{"Ready rolling out", func(s *agentsv1alpha1.SandboxSetStatus) { s.Conditions[0].Reason = agentsv1alpha1.ReasonRollingUpdate }, false},
		{"Ready unschedulable", func(s *agentsv1alpha1.SandboxSetStatus) {
			s.Conditions[0].Reason = agentsv1alpha1.ReasonUnschedulable
			s.Conditions[1] = metav1.Condition{Type: agentsv1alpha1.ConditionStalled, Status: metav1.ConditionTrue, Reason: agentsv1alpha1.ReasonUnschedulable}
		}, false},
		{"a refusal", func(s *agentsv1alpha1.SandboxSetStatus) {
			s.Conditions = append(s.Conditions, metav1.Condition{Type: agentsv1alpha1.ConditionReplicaFailure, Status: metav1.ConditionTrue, Reason: agentsv1alpha1.ReasonQuotaExceeded})
		}, false},
		{"the generation", func(s *agentsv1alpha1.SandboxSetStatus) { s.ObservedGeneration = 3 }, false},
		{"the revision", func(s *agentsv1alpha1.SandboxSetStatus) { s.UpdateRevision = "r2" }, false},
		{"the autoscaler's decision", func(s *agentsv1alpha1.SandboxSetStatus) { s.Autoscaling.DesiredReplicas = 12 }, false},
		{"autoscaling turned off", func(s *agentsv1alpha1.SandboxSetStatus) { s.Autoscaling = nil }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			updated := creating(8)
			tc.change(&updated)
			if got := sameStory(creating(8), updated); got != tc.want {
				t.Errorf("sameStory = %v, want %v", got, tc.want)
			}
		})
	}
}
