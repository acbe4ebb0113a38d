package controllers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/utils/ptr"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

const ownerUID = types.UID("sbs-uid")

// testPod builds a pool Pod named name: ready or not, at revision rev,
// created age ago, with labels matching its readiness.
func testPod(name string, ready bool, rev string, age time.Duration) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, UID: types.UID(name),
			CreationTimestamp: metav1.NewTime(time.Unix(1_000_000, 0).Add(-age)),
			Labels: map[string]string{
				agentsv1alpha1.LabelSandboxSet: "demo",
				agentsv1alpha1.LabelRevision:   rev,
				agentsv1alpha1.LabelState:      string(agentsv1alpha1.StateCreating),
			},
			OwnerReferences: []metav1.OwnerReference{{UID: ownerUID, Controller: ptr.To(true)}},
		},
	}
	if ready {
		pod.Labels[agentsv1alpha1.LabelState] = string(agentsv1alpha1.StateAvailable)
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	return pod
}

func names(pods []*corev1.Pod) []string {
	out := []string{}
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

func TestClassify(t *testing.T) {
	claimed := testPod("claimed", true, "r1", 0)
	claimed.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1"
	released := testPod("released", true, "r1", 0)
	released.Labels[agentsv1alpha1.LabelState] = string(agentsv1alpha1.StateClaimed)
	released.OwnerReferences = nil
	failed := testPod("failed", false, "r1", 0)
	failed.Status.Phase = corev1.PodFailed
	terminating := testPod("terminating", true, "r1", 0)
	terminating.DeletionTimestamp = ptr.To(metav1.Now())
	orphan := testPod("orphan", true, "r1", 0)
	orphan.OwnerReferences = nil
	foreign := testPod("foreign", true, "r1", 0)
	foreign.OwnerReferences[0].UID = "other"
	deleting := testPod("deleting", true, "r1", 0)
	active := testPod("active", false, "r1", 0)

	got := classify(ownerUID, []*corev1.Pod{claimed, released, failed, terminating, orphan, foreign, deleting, active}, sets.New[types.UID]("deleting"))
	want := map[string][]string{"active": {"active"}, "claimed": {"claimed"}, "finished": {"failed"}, "orphans": {"orphan"}}
	gotNames := map[string][]string{"active": names(got.active), "claimed": names(got.claimed), "finished": names(got.finished), "orphans": names(got.orphans)}
	if diff := cmp.Diff(want, gotNames); diff != "" {
		t.Errorf("classify (-want +got):\n%s", diff)
	}
}

func TestComputePlan(t *testing.T) {
	relabelled := testPod("lost-readiness", false, "new", 0)
	relabelled.Labels[agentsv1alpha1.LabelState] = string(agentsv1alpha1.StateAvailable)
	failed := testPod("failed", false, "new", 0)
	failed.Status.Phase = corev1.PodFailed

	tests := []struct {
		name           string
		pool           pool
		replicas       int32
		maxUnavailable int
		wantCreate     int
		wantDelete     []string
		wantRelabel    []string
	}{{
		name: "empty pool creates every replica at once", replicas: 1000, maxUnavailable: 1,
		wantCreate: 1000,
	}, {
		name:     "pending creations count as creating Pods",
		pool:     pool{active: []*corev1.Pod{testPod("a", true, "new", 0)}, pendingCreates: 2},
		replicas: 3, maxUnavailable: 1,
	}, {
		name:     "a claim leaves one missing",
		pool:     pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", true, "new", 0)}},
		replicas: 3, maxUnavailable: 1, wantCreate: 1,
	}, {
		name: "scale-down removes creating before available, then the newest",
		pool: pool{active: []*corev1.Pod{
			testPod("old-ready", true, "new", 3*time.Hour), testPod("young-ready", true, "new", time.Hour),
			testPod("creating", false, "new", 2*time.Hour),
		}},
		replicas: 1, maxUnavailable: 1, wantDelete: []string{"creating", "young-ready"},
	}, {
		name: "scale-down removes old revisions before new",
		pool: pool{active: []*corev1.Pod{
			testPod("new-rev", true, "new", 3*time.Hour), testPod("old-rev", true, "old", time.Hour),
		}},
		replicas: 1, maxUnavailable: 1, wantDelete: []string{"old-rev"},
	}, {
		name: "rollout replaces available old Pods within maxUnavailable",
		pool: pool{active: []*corev1.Pod{
			testPod("a", true, "old", 0), testPod("b", true, "old", 0), testPod("c", true, "old", 0), testPod("d", true, "old", 0),
		}},
		replicas: 4, maxUnavailable: 2, wantCreate: 2, wantDelete: []string{"a", "b"},
	}, {
		name: "rollout waits while replacements are not yet available",
		pool: pool{active: []*corev1.Pod{
			testPod("a", true, "old", 0), testPod("b", true, "old", 0), testPod("c", true, "old", 0), testPod("new", false, "new", 0),
		}},
		replicas: 4, maxUnavailable: 1,
	}, {
		name: "rollout replaces old creating Pods at once, at no cost to availability",
		pool: pool{active: []*corev1.Pod{
			testPod("a", true, "old", 0), testPod("b", false, "old", 0), testPod("c", false, "old", 0),
		}},
		replicas: 3, maxUnavailable: 1, wantCreate: 2, wantDelete: []string{"b", "c"},
	}, {
		name:     "failed Pods are deleted and replaced",
		pool:     pool{active: []*corev1.Pod{testPod("a", true, "new", 0)}, finished: []*corev1.Pod{failed}},
		replicas: 2, maxUnavailable: 1, wantCreate: 1, wantDelete: []string{"failed"},
	}, {
		name:     "state labels follow readiness",
		pool:     pool{active: []*corev1.Pod{relabelled, testPod("ok", true, "new", 0)}},
		replicas: 2, maxUnavailable: 1, wantRelabel: []string{"lost-readiness"},
	}, {
		name: "scale to zero deletes the whole pool", replicas: 0, maxUnavailable: 1,
		pool:       pool{active: []*corev1.Pod{testPod("a", true, "new", 0), testPod("b", false, "new", 0)}},
		wantDelete: []string{"b", "a"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := computePlan(tt.pool, tt.replicas, tt.maxUnavailable, "new")
			if got.create != tt.wantCreate {
				t.Errorf("create = %d, want %d", got.create, tt.wantCreate)
			}
			if diff := cmp.Diff(append([]string{}, tt.wantDelete...), names(got.delete)); diff != "" {
				t.Errorf("delete (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(append([]string{}, tt.wantRelabel...), names(got.relabel)); diff != "" {
				t.Errorf("relabel (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolveMaxUnavailable(t *testing.T) {
	tests := []struct {
		value    *intstr.IntOrString
		replicas int32
		want     int
	}{
		{nil, 10, 1},
		{ptr.To(intstr.FromInt32(3)), 10, 3},
		{ptr.To(intstr.FromInt32(0)), 10, 1},
		{ptr.To(intstr.FromString("25%")), 10, 3},
		{ptr.To(intstr.FromString("25%")), 3, 1},
		{ptr.To(intstr.FromString("100%")), 7, 7},
		{ptr.To(intstr.FromString("0%")), 7, 1},
		{ptr.To(intstr.FromString("bogus")), 7, 1},
	}
	for _, tt := range tests {
		if got := resolveMaxUnavailable(tt.value, tt.replicas); got != tt.want {
			t.Errorf("resolveMaxUnavailable(%v, %d) = %d, want %d", tt.value, tt.replicas, got, tt.want)
		}
	}
}
