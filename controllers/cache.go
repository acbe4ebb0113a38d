package controllers

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// IndexSandboxSet indexes cached Pods by the SandboxSet they were created by.
const IndexSandboxSet = "pod.sandboxset"

// PoolPodSelector selects the Pods the manager caches: those of any pool,
// claimed or not. Every other Pod in the cluster stays out of memory.
func PoolPodSelector() labels.Selector {
	req, err := labels.NewRequirement(agentsv1alpha1.LabelSandboxSet, selection.Exists, nil)
	if err != nil {
		panic(fmt.Sprintf("pool selector: %v", err)) // constant input; cannot fail
	}
	return labels.NewSelector().Add(*req)
}

// poolSelector selects the Pods in one SandboxSet's pool: its own, unclaimed.
// It is the status selector, so an HPA sees the pool and not the sandboxes
// agents hold.
func poolSelector(sandboxSet string) labels.Selector {
	sbs, err := labels.NewRequirement(agentsv1alpha1.LabelSandboxSet, selection.Equals, []string{sandboxSet})
	if err != nil {
		// Names of SandboxSets are valid label values (the API server
		// checks them), so this cannot happen for a stored object.
		return labels.Nothing()
	}
	// "in", not "!= claimed": clients such as kubectl scale parse the
	// selector as a metav1.LabelSelector, which has no != operator.
	unclaimed, _ := labels.NewRequirement(agentsv1alpha1.LabelState, selection.In,
		[]string{string(agentsv1alpha1.StateAvailable), string(agentsv1alpha1.StateCreating)})
	return labels.NewSelector().Add(*sbs, *unclaimed)
}

// CacheOptions returns the cache settings the controller relies on: only pool
// Pods, each trimmed to what the controller reads.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: PoolPodSelector(), Transform: TrimPod},
		},
	}
}

// TrimPod keeps only the Pod fields the controller reads: identity, labels,
// annotations, owners and readiness. At 10,000 pool Pods the spec and the
// rest of the status are most of the cache's memory. The controller only
// ever patches Pods, so a trimmed copy is never written back.
func TrimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone; leave it alone
	}
	meta := pod.ObjectMeta
	meta.ManagedFields = nil
	trimmed := &corev1.Pod{
		TypeMeta:   pod.TypeMeta,
		ObjectMeta: meta,
		Spec:       corev1.PodSpec{NodeName: pod.Spec.NodeName},
		Status: corev1.PodStatus{
			Phase:  pod.Status.Phase,
			Reason: pod.Status.Reason,
			PodIP:  pod.Status.PodIP,
		},
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady || c.Type == corev1.PodScheduled {
			trimmed.Status.Conditions = append(trimmed.Status.Conditions, corev1.PodCondition{
				Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message,
			})
		}
	}
	return trimmed, nil
}

// indexBySandboxSet is the IndexSandboxSet extractor.
func indexBySandboxSet(obj client.Object) []string {
	if name := obj.GetLabels()[agentsv1alpha1.LabelSandboxSet]; name != "" {
		return []string{name}
	}
	return nil
}
