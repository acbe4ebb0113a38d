package controllers

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// BenchmarkPassAfterClaim is the controller's in-memory work on a claim
// event in a full pool of 5,000 (the default ceiling): settle the
// expectations against the pool, classify every Pod and plan one
// creation. It is what a claim costs beyond its single write, and it must
// stay far below one API call (milliseconds).
func BenchmarkPassAfterClaim(b *testing.B) {
	const size = 5000
	pods := make([]*corev1.Pod, 0, size)
	for i := range size {
		pods = append(pods, testPod(fmt.Sprintf("p-%d", i), true, "r1", time.Duration(i)*time.Second))
	}
	pods = pods[1:] // the claimed Pod has left the pool
	key := types.NamespacedName{Namespace: "ns", Name: "pool"}
	e := newExpectations(time.Minute, time.Second, time.Minute)
	for b.Loop() {
		// The replacement the last pass created is not cached yet.
		e.expectCreations(key, []string{"replacement"})
		_, deletes, _ := e.observe(key, pods)
		p := classify(ownerUID, pods, deletes)
		if plan := computePlan(p, size, 1, "r1"); plan.create != 1 {
			b.Fatalf("planned %d creations, want 1", plan.create)
		}
	}
}

// BenchmarkPassBesideClaimed is a pass's reads in a pool of 100 that has
// served 5,000 claims still running: the listing through the pool index,
// the expectations and the classification. Released claimed sandboxes stay
// cached but out of the index, so the pass costs what the pool holds.
func BenchmarkPassBesideClaimed(b *testing.B) {
	const size, claimed = 100, 5000
	indexer := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{poolIndex: poolIndexKeys})
	for i := range size + claimed {
		pod := testPod(fmt.Sprintf("p-%d", i), true, "r1", time.Duration(i)*time.Second)
		pod.Namespace = "ns"
		if i >= size {
			pod.Labels[agentsv1alpha1.LabelClaimedBy] = "agent"
			pod.Labels[agentsv1alpha1.LabelState] = string(agentsv1alpha1.StateClaimed)
			pod.OwnerReferences = nil
		}
		if err := indexer.Add(pod); err != nil {
			b.Fatal(err)
		}
	}
	r := &SandboxSetReconciler{pods: indexer}
	sbs := &agentsv1alpha1.SandboxSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "demo", UID: ownerUID}}
	key := types.NamespacedName{Namespace: "ns", Name: "demo"}
	e := newExpectations(time.Minute, time.Second, time.Minute)
	for b.Loop() {
		pods, err := r.listPods(sbs)
		if err != nil {
			b.Fatal(err)
		}
		_, deletes, _ := e.observe(key, pods)
		if p := classify(ownerUID, pods, deletes); len(p.active) != size {
			b.Fatalf("classified %d active sandboxes, want %d", len(p.active), size)
		}
	}
}
