package controllers

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

func TestComputeStatus(t *testing.T) {
	unschedulable := testPod("pending", false, "new", 0)
	unschedulable.Status.Conditions = []corev1.PodCondition{{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available",
	}}
	podsGR := schema.GroupResource{Resource: "pods"}
	tests := []struct {
		name                         string
		pool                         pool
		createErr                    error
		wantReplicas, wantAvail      int32
		wantUpdated                  int32
		wantReady                    metav1.ConditionStatus
		wantReadyReason, wantFailure string
	}{{
		name:         "seed stage 1: the pool is full",
		pool:         pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", true, "new", 0), testPod("c", true, "new", 0)}},
		wantReplicas: 3, wantAvail: 3, wantUpdated: 3,
		wantReady: metav1.ConditionTrue, wantReadyReason: agentsv1alpha1.ReasonPoolReady, wantFailure: agentsv1alpha1.ReasonCreateSucceeded,
	}, {
		name: "seed stage 2: a claimed Pod no longer counts",
		pool: pool{
			active:  []*corev1.Pod{testPod("b", true, "new", 0), testPod("c", true, "new", 0)},
			claimed: []*corev1.Pod{testPod("a", true, "new", 0)},
		},
		wantReplicas: 2, wantAvail: 2, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonCreateSucceeded,
	}, {
		name:         "seed stage 3: the replacement is creating",
		pool:         pool{active: []*corev1.Pod{testPod("b", true, "new", 0), testPod("c", true, "new", 0)}, pendingCreates: 1},
		wantReplicas: 3, wantAvail: 2, wantUpdated: 3,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonCreateSucceeded,
	}, {
		name:         "unschedulable Pods are named",
		pool:         pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", true, "new", 0), unschedulable}},
		wantReplicas: 3, wantAvail: 2, wantUpdated: 3,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonUnschedulable, wantFailure: agentsv1alpha1.ReasonCreateSucceeded,
	}, {
		name:         "a rollout in progress",
		pool:         pool{active: []*corev1.Pod{testPod("a", true, "old", 0), testPod("b", true, "new", 0), testPod("c", true, "new", 0)}},
		wantReplicas: 3, wantAvail: 3, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonRollingUpdate, wantFailure: agentsv1alpha1.ReasonCreateSucceeded,
	}, {
		name:         "quota refusal",
		pool:         pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", true, "new", 0)}},
		createErr:    apierrors.NewForbidden(podsGR, "demo-x", errors.New("exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2")),
		wantReplicas: 2, wantAvail: 2, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonQuotaExceeded,
	}, {
		name:         "admission refusal",
		pool:         pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", true, "new", 0)}},
		createErr:    apierrors.NewForbidden(podsGR, "demo-x", errors.New("violates PodSecurity")),
		wantReplicas: 2, wantAvail: 2, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonCreateForbidden,
	}, {
		name:         "other failures",
		pool:         pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", true, "new", 0)}},
		createErr:    errors.New("connection refused"),
		wantReplicas: 2, wantAvail: 2, wantUpdated: 2,
		wantReady: metav1.ConditionFalse, wantReadyReason: agentsv1alpha1.ReasonSandboxesCreating, wantFailure: agentsv1alpha1.ReasonCreateFailed,
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
			if failure := meta.FindStatusCondition(got.Conditions, agentsv1alpha1.ConditionReplicaFailure); failure.Reason != tt.wantFailure {
				t.Errorf("ReplicaFailure reason = %s, want %s", failure.Reason, tt.wantFailure)
			}
			if got.UpdateRevision != "new" || got.Selector != "sel" {
				t.Errorf("revision/selector = %s/%s", got.UpdateRevision, got.Selector)
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
