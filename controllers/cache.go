package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// poolIndex indexes the cached Pods of each pool, by the SandboxSet named in
// their pool label, as namespace/name, on the Pod informer itself.
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

// TrimPod keeps only the Pod fields the manager reads: identity, owners,
// the operator's labels, the annotations in cachedAnnotations, the phase,
// when the Pod turned Ready, and why the scheduler cannot place it. At
// 20,000 pool Pods the cache is most of the manager's memory: the spec, the
// rest of the status and a holder's own metadata (up to 256 KiB) are not
// kept, and the strings pool Pods share (namespace, pool, state, revision,
// owner, keys) are kept once, not once per Pod. The manager only ever
// patches Pods, so a trimmed copy is never written back.
func TrimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone; leave it alone
	}
	trimmed := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              pod.Name,
			Namespace:         intern(pod.Namespace),
			UID:               pod.UID,
			ResourceVersion:   pod.ResourceVersion,
			CreationTimestamp: pod.CreationTimestamp,
			DeletionTimestamp: pod.DeletionTimestamp,
			Labels:            internKeys(pod.Labels, isOperatorKey),
			Annotations:       internKeys(pod.Annotations, isCachedAnnotation),
			OwnerReferences:   internOwners(pod.OwnerReferences),
		},
		Status: corev1.PodStatus{Phase: corev1.PodPhase(intern(string(pod.Status.Phase)))},
	}
	for _, c := range pod.Status.Conditions {
		switch {
		case c.Type == corev1.PodReady:
			// When it turned Ready is the autoscaler's refill time.
			trimmed.Status.Conditions = append(trimmed.Status.Conditions, corev1.PodCondition{
				Type: corev1.PodReady, Status: corev1.ConditionStatus(intern(string(c.Status))), LastTransitionTime: c.LastTransitionTime,
			})
		case c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue:
			// The pool's Unschedulable condition quotes the scheduler.
			trimmed.Status.Conditions = append(trimmed.Status.Conditions, corev1.PodCondition{
				Type: corev1.PodScheduled, Status: c.Status, Reason: c.Reason, Message: c.Message,
			})
		}
	}
	return trimmed, nil
}

// cachedAnnotations are the annotations the manager reads from cached Pods:
// the claim's time and holder (the claim metrics, the held limit) and the
// shutdown time (expiry). Any other is left out of the cache.
var cachedAnnotations = []string{
	agentsv1alpha1.AnnotationClaimedAt,
	agentsv1alpha1.AnnotationClaimedByUser,
	agentsv1alpha1.AnnotationShutdownTime,
}

func isOperatorKey(key string) bool { return strings.HasPrefix(key, agentsv1alpha1.KeyPrefix) }

func isCachedAnnotation(key string) bool { return slices.Contains(cachedAnnotations, key) }

// internKeys returns the entries of a label or annotation map whose keys
// keep accepts, with shared strings, or nil if there are none.
func internKeys(m map[string]string, keep func(string) bool) map[string]string {
	var out map[string]string
	for key, value := range m {
		if keep(key) {
			if out == nil {
				out = make(map[string]string, len(m))
			}
			out[intern(key)] = intern(value)
		}
	}
	return out
}

// internOwners copies owner references with shared strings: a pool's Pods
// all name the same SandboxSet.
func internOwners(refs []metav1.OwnerReference) []metav1.OwnerReference {
	if len(refs) == 0 {
		return nil
	}
	out := make([]metav1.OwnerReference, len(refs))
	for i, ref := range refs {
		out[i] = metav1.OwnerReference{
			APIVersion: intern(ref.APIVersion), Kind: intern(ref.Kind), Name: intern(ref.Name),
			UID: types.UID(intern(string(ref.UID))), Controller: internBool(ref.Controller), BlockOwnerDeletion: internBool(ref.BlockOwnerDeletion),
		}
	}
	return out
}

// intern returns the one copy of s that every cached Pod shares.
func intern(s string) string { return unique.Make(s).Value() }

var yes, no = true, false

// internBool points at one shared true or false: nothing writes through a
// cached object.
func internBool(b *bool) *bool {
	switch {
	case b == nil:
		return nil
	case *b:
		return &yes
	default:
		return &no
	}
}

// poolIndexKeys is the poolIndex extractor. A claimed sandbox with no
// controller, released by its pool or created claimed, is in no pool: it
// stays cached for the webhooks and for expiry, but out of the index every
// pass lists, or each pass would cost as much as all the pool's live claimed
// sandboxes, which outnumber its warm ones in any pool that serves.
func poolIndexKeys(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	name := pod.Labels[agentsv1alpha1.LabelSandboxSet]
	if name == "" || (agentsv1alpha1.IsClaimed(pod) && metav1.GetControllerOfNoCopy(pod) == nil) {
		return nil, nil
	}
	return []string{poolKey(pod.Namespace, name)}, nil
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
