package controllers

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
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
