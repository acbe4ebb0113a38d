package controllers

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

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

// TestPoolIndexKeys: a pass lists its pool through the index, so what the
// index leaves out no pass sees. A claimed sandbox leaves it once released.
func TestPoolIndexKeys(t *testing.T) {
	claimed := func(pod *corev1.Pod) *corev1.Pod {
		pod.Labels[agentsv1alpha1.LabelClaimedBy] = "agent-1"
		pod.Labels[agentsv1alpha1.LabelState] = string(agentsv1alpha1.StateClaimed)
		return pod
	}
	released := func(pod *corev1.Pod) *corev1.Pod {
		pod.OwnerReferences = nil
		return pod
	}
	noPool := testPod("other", true, "r1", 0)
	delete(noPool.Labels, agentsv1alpha1.LabelSandboxSet)
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want []string
	}{
		{"a warm sandbox", testPod("a", true, "r1", 0), []string{"/demo"}},
		{"a creating sandbox", testPod("a", false, "r1", 0), []string{"/demo"}},
		{"a claimed sandbox its pool has yet to release", claimed(testPod("a", true, "r1", 0)), []string{"/demo"}},
		{"an unclaimed Pod with no controller, to adopt", released(testPod("a", true, "r1", 0)), []string{"/demo"}},
		{"a released claimed sandbox", released(claimed(testPod("a", true, "r1", 0))), nil},
		{"a Pod with no pool label", noPool, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := poolIndexKeys(tc.pod)
			if err != nil {
				t.Fatalf("poolIndexKeys: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("poolIndexKeys (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTrimPodKeepsOnlyWhatTheControllerReads: a holder may put its own
// labels and up to 256 KiB of annotations on its sandbox, and none of it
// may reach the manager's memory; nor may the parts of a Pod the manager
// never reads.
func TestTrimPodKeepsOnlyWhatTheControllerReads(t *testing.T) {
	created := metav1.NewTime(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	ready := metav1.NewTime(created.Add(2 * time.Second))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "demo-x7k2p", GenerateName: "demo-", Namespace: "ns", UID: "u1", ResourceVersion: "7", CreationTimestamp: created,
			Labels: map[string]string{
				agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelState: "claimed", agentsv1alpha1.LabelClaimedBy: "agent-1",
				"task": "build",
			},
			Annotations: map[string]string{
				agentsv1alpha1.AnnotationClaimedAt: "2026-12-01T00:00:00Z", agentsv1alpha1.AnnotationClaimedByUser: "system:serviceaccount:ns:agent",
				agentsv1alpha1.AnnotationShutdownTime: "2026-12-01T01:00:00Z", agentsv1alpha1.AnnotationMaxShutdownTime: "2026-12-01T02:00:00Z",
				agentsv1alpha1.AnnotationPersistentContents: "ip", "flood": strings.Repeat("x", 150*1024),
			},
			OwnerReferences: []metav1.OwnerReference{{Kind: "SandboxSet", Name: "demo", UID: "s1", Controller: ptr.To(true)}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "sandbox", Image: "nginx"}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: "10.0.0.1",
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, Reason: "r", Message: "m", LastTransitionTime: ready},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: created},
			},
		},
	}
	want := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "demo-x7k2p", Namespace: "ns", UID: "u1", ResourceVersion: "7", CreationTimestamp: created,
			Labels: map[string]string{agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelState: "claimed", agentsv1alpha1.LabelClaimedBy: "agent-1"},
			Annotations: map[string]string{
				agentsv1alpha1.AnnotationClaimedAt: "2026-12-01T00:00:00Z", agentsv1alpha1.AnnotationClaimedByUser: "system:serviceaccount:ns:agent",
				agentsv1alpha1.AnnotationShutdownTime: "2026-12-01T01:00:00Z",
			},
			OwnerReferences: []metav1.OwnerReference{{Kind: "SandboxSet", Name: "demo", UID: "s1", Controller: ptr.To(true)}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: ready},
		}},
	}
	if diff := cmp.Diff(want, trim(t, pod)); diff != "" {
		t.Errorf("TrimPod() (-want +got):\n%s", diff)
	}

	// A Pod no node fits keeps why: the pool's Unschedulable condition
	// quotes it.
	unschedulable := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available"}
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{unschedulable}}
	if got := trim(t, pod).Status.Conditions; !cmp.Equal(got, []corev1.PodCondition{unschedulable}) {
		t.Errorf("TrimPod() of an unschedulable Pod keeps conditions %+v, want %+v", got, unschedulable)
	}
}

func trim(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := TrimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	return got.(*corev1.Pod)
}

// cachedPodBytesCeiling is what a trimmed pool Pod may cost the manager's
// heap, with the strings its pool shares counted once. A corev1.Pod struct
// alone is about 1.2 KiB; before the shared strings and the narrower copy
// it was 2.7 KiB.
const cachedPodBytesCeiling = 2048

// TestCachedPodFootprint measures what the cache holds per pool Pod, as
// the Pod arrives from a watch (decoded JSON, every string its own), and
// fails if it grows past cachedPodBytesCeiling: at 20,000 pool Pods the
// cache is most of the manager's memory.
func TestCachedPodFootprint(t *testing.T) {
	const n = 10000
	wire := make([][]byte, n)
	for i := range wire {
		var err error
		if wire[i], err = json.Marshal(storedPoolPod(i)); err != nil {
			t.Fatal(err)
		}
	}
	cached := make([]any, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range wire {
		pod := &corev1.Pod{}
		if err := json.Unmarshal(wire[i], pod); err != nil {
			t.Fatal(err)
		}
		cached[i], _ = TrimPod(pod)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perPod := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	runtime.KeepAlive(cached)
	runtime.KeepAlive(wire) // or its collection would count against the cache
	t.Logf("a cached pool Pod holds %d bytes of heap", perPod)
	if perPod > cachedPodBytesCeiling {
		t.Errorf("a cached pool Pod holds %d bytes of heap, more than %d: does TrimPod keep more than the manager reads?", perPod, cachedPodBytesCeiling)
	}
}

// storedPoolPod is pool Pod i of a pool as the API server stores it once
// it is available.
func storedPoolPod(i int) *corev1.Pod {
	created := metav1.NewTime(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("pool-3-%05d", i), Namespace: "bench-rss-x7k2p", UID: types.UID(fmt.Sprintf("0d6f7c9e-2b1a-4c3d-9e8f-%012d", i)),
			ResourceVersion: strconv.Itoa(100000 + i), CreationTimestamp: created,
			Labels:      map[string]string{agentsv1alpha1.LabelSandboxSet: "pool-3", agentsv1alpha1.LabelState: "available", agentsv1alpha1.LabelRevision: "5d8c7b9f6"},
			Annotations: map[string]string{agentsv1alpha1.AnnotationPersistentContents: ""},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "agents.kruise.io/v1alpha1", Kind: "SandboxSet", Name: "pool-3",
				UID: "4a1b2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kwok", Operation: metav1.ManagedFieldsOperationUpdate, Subresource: "status"}},
		},
		Spec: corev1.PodSpec{
			NodeName:                     fmt.Sprintf("kwok-node-%d", i%200),
			Containers:                   []corev1.Container{{Name: "sandbox", Image: "nginx:alpine", TerminationMessagePath: "/dev/termination-log"}},
			AutomountServiceAccountToken: ptr.To(false), RestartPolicy: corev1.RestartPolicyAlways, SchedulerName: "default-scheduler",
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.0.%d.%d", i/250, i%250), HostIP: "10.1.0.1",
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: created},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: created},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: created},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: created},
			},
		},
	}
}
