package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// poolIndex indexes the cached Pods by the SandboxSet they were created by,
// as namespace/name, on the Pod informer itself.
const poolIndex = "sandboxset"

// PoolPodSelector selects the Pods the manager caches: those of any pool,
// claimed or not. Every other Pod in the cluster stays out of memory, and so
// does a Pod with an empty pool label, which names no pool (admission
// refuses that label anyway: config/policies/pool_label.yaml).
func PoolPodSelector() labels.Selector {
	exists, err := labels.NewRequirement(agentsv1alpha1.LabelSandboxSet, selection.Exists, nil)
	if err != nil {
		panic(fmt.Sprintf("pool selector: %v", err)) // constant input; cannot fail
	}
	notEmpty, err := labels.NewRequirement(agentsv1alpha1.LabelSandboxSet, selection.NotEquals, []string{""})
	if err != nil {
		panic(fmt.Sprintf("pool selector: %v", err))
	}
	return labels.NewSelector().Add(*exists, *notEmpty)
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

// CacheOptions returns the cache settings the controllers rely on: only
// pool Pods, each trimmed to what the controllers read; only the pools'
// NetworkPolicies; only the API server's own EndpointSlices; and Services
// trimmed to their selectors and ports.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                 {Label: PoolPodSelector(), Transform: TrimPod},
			&networkingv1.NetworkPolicy{}: {Label: PoolPodSelector()},
			&discoveryv1.EndpointSlice{}: {
				Namespaces: map[string]cache.Config{metav1.NamespaceDefault: {}},
				Label:      labels.SelectorFromSet(labels.Set(apiServerSliceLabels)),
			},
			&corev1.Service{}: {Transform: trimService},
		},
	}
}

// trimService keeps what a pool's NetworkPolicy reads of a Service: its
// identity, selector and ports.
func trimService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	meta := metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID, ResourceVersion: svc.ResourceVersion}
	return &corev1.Service{TypeMeta: svc.TypeMeta, ObjectMeta: meta, Spec: corev1.ServiceSpec{Selector: svc.Spec.Selector, Ports: svc.Spec.Ports}}, nil
}

// TrimPod keeps only the Pod fields the controller reads: identity, the
// operator's own labels and annotations, owners and readiness. At 10,000
// pool Pods the spec and the rest of the status are most of the cache's
// memory, and a holder may put up to 256 KiB of its own metadata on its
// sandbox: none of it is kept. The controller only ever patches Pods, so a
// trimmed copy is never written back.
func TrimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone; leave it alone
	}
	meta := pod.ObjectMeta
	meta.ManagedFields = nil
	meta.Labels = operatorKeys(pod.Labels)
	meta.Annotations = operatorKeys(pod.Annotations)
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
				// When it turned Ready: the autoscaler's refill time. Inline, so
				// it costs the cache no allocation.
				LastTransitionTime: c.LastTransitionTime,
			})
		}
	}
	return trimmed, nil
}

// operatorKeys returns the agents.kruise.io/ entries of a label or
// annotation map, or nil if there are none.
func operatorKeys(m map[string]string) map[string]string {
	var out map[string]string
	for key, value := range m {
		if strings.HasPrefix(key, agentsv1alpha1.KeyPrefix) {
			if out == nil {
				out = make(map[string]string, 4)
			}
			out[key] = value
		}
	}
	return out
}

// poolIndexKeys is the poolIndex extractor.
func poolIndexKeys(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	if name := pod.Labels[agentsv1alpha1.LabelSandboxSet]; name != "" {
		return []string{poolKey(pod.Namespace, name)}, nil
	}
	return nil, nil
}

func poolKey(namespace, sandboxSet string) string { return namespace + "/" + sandboxSet }

// podIndexer returns the cache's Pod informer's own store and indexes. Reading a
// pool from it returns pointers to the cached Pods: a list through the
// cache's client copies every Pod struct into the result, which for a pool
// of thousands, listed on every pass, was most of a pass's cost and garbage.
func podIndexer(ctx context.Context, c cache.Cache) (toolscache.Indexer, error) {
	informer, err := c.GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return nil, fmt.Errorf("getting the Pod informer: %w", err)
	}
	if err := informer.AddIndexers(toolscache.Indexers{poolIndex: poolIndexKeys}); err != nil {
		return nil, fmt.Errorf("indexing Pods by SandboxSet: %w", err)
	}
	indexed, ok := informer.(interface{ GetIndexer() toolscache.Indexer })
	if !ok {
		return nil, fmt.Errorf("the cache's Pod informer (%T) does not expose its store", informer)
	}
	return indexed.GetIndexer(), nil
}
