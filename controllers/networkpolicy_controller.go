package controllers

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// NetworkPolicyReconciler keeps each SandboxSet's NetworkPolicy
// (buildNetworkPolicy) as its spec, the Services it names and the API
// server's addresses say. The policy is owned by the SandboxSet, so the
// garbage collector deletes it with the pool.
type NetworkPolicyReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// BlockedCIDRs are the addresses the internet rule leaves out.
	BlockedCIDRs []netip.Prefix

	// apiReader reads what the cache does not hold: a NetworkPolicy without
	// the pool label. SetupWithManager sets it.
	apiReader client.Reader
}

// conflictRecheck is how soon a pool whose policy name another
// NetworkPolicy holds is looked at again. That policy's deletion wakes
// nothing: the cache holds only labelled policies, and an owner's watch
// only those the pool controls.
const conflictRecheck = 30 * time.Second

// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch

// Reconcile writes the pool's NetworkPolicy if it differs from what the
// SandboxSet asks for, and deletes it if the SandboxSet turned it off.
func (r *NetworkPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sbs := &agentsv1alpha1.SandboxSet{}
	if err := r.Get(ctx, req.NamespacedName, sbs); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if sbs.DeletionTimestamp != nil {
		return ctrl.Result{}, nil // the garbage collector takes the policy with it
	}
	current := &networkingv1.NetworkPolicy{}
	key := types.NamespacedName{Namespace: sbs.Namespace, Name: networkPolicyName(sbs.Name)}
	err := r.Get(ctx, key, current)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("getting NetworkPolicy %s: %w", key.Name, err)
	}
	if err != nil {
		current = nil
	}
	if current != nil && !metav1.IsControlledBy(current, sbs) {
		return r.conflict(ctx, sbs, current), nil
	}
	if !sbs.Spec.Network.NetworkPolicyEnabled() {
		return ctrl.Result{}, r.deletePolicy(ctx, sbs, current)
	}

	inputs, err := r.inputs(ctx, sbs)
	if err != nil {
		return ctrl.Result{}, err
	}
	desired, unresolved := buildNetworkPolicy(sbs, inputs)
	if len(unresolved) > 0 {
		r.Recorder.Eventf(sbs, nil, corev1.EventTypeWarning, "EgressServiceUnresolved", "Reconcile",
			"Sandboxes cannot reach what these name until they can be followed: %s", strings.Join(unresolved, "; "))
	}
	if current == nil {
		return r.createPolicy(ctx, sbs, desired)
	}
	return ctrl.Result{}, r.updatePolicy(ctx, sbs, current, desired)
}

// conflict reports a NetworkPolicy that holds the pool's policy name and is
// not the SandboxSet's. The manager leaves it alone (manager-scope would
// refuse it an unlabelled one anyway) and looks again after conflictRecheck.
func (r *NetworkPolicyReconciler) conflict(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, theirs *networkingv1.NetworkPolicy) ctrl.Result {
	ctrl.LoggerFrom(ctx).Info("The pool's NetworkPolicy name is taken by one that is not the pool's; the sandboxes are not isolated",
		"networkPolicy", theirs.Name, "labelled", theirs.Labels[agentsv1alpha1.LabelSandboxSet] != "", "recheckAfter", conflictRecheck)
	r.Recorder.Eventf(sbs, theirs, corev1.EventTypeWarning, "NetworkPolicyConflict", "Reconcile",
		"NetworkPolicy %s exists and is not this SandboxSet's; the pool's sandboxes are not isolated until it is deleted or renamed", theirs.Name)
	return ctrl.Result{RequeueAfter: conflictRecheck}
}

// createPolicy creates the policy. AlreadyExists means the cache does not
// hold the one of that name: either it lags, or that policy has no pool
// label (anyone who may create NetworkPolicies can take the name before the
// pool exists). The API server says which.
func (r *NetworkPolicyReconciler) createPolicy(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, desired *networkingv1.NetworkPolicy) (ctrl.Result, error) {
	err := r.Create(ctx, desired)
	if apierrors.IsAlreadyExists(err) {
		existing := &networkingv1.NetworkPolicy{}
		if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(desired), existing); err != nil {
			return ctrl.Result{}, fmt.Errorf("reading NetworkPolicy %s, which exists but is not in the cache: %w", desired.Name, err)
		}
		if !metav1.IsControlledBy(existing, sbs) {
			return r.conflict(ctx, sbs, existing), nil
		}
		return ctrl.Result{}, nil // the pool's own: the cache will catch up and wake the pool
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("creating NetworkPolicy %s: %w", desired.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Created the pool's NetworkPolicy", "networkPolicy", desired.Name)
	r.Recorder.Eventf(sbs, desired, corev1.EventTypeNormal, "NetworkPolicyCreated", "Create",
		"Created NetworkPolicy %s: sandboxes admit %s and reach %s", desired.Name, describeIngress(sbs), describeEgress(sbs))
	return ctrl.Result{}, nil
}

// updatePolicy updates the policy from the copy the cache holds: the
// update's resourceVersion makes a concurrent change a conflict, retried with
// backoff.
func (r *NetworkPolicyReconciler) updatePolicy(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, current, desired *networkingv1.NetworkPolicy) error {
	if equality.Semantic.DeepEqual(current.Spec, desired.Spec) && equality.Semantic.DeepEqual(current.Labels, desired.Labels) {
		return nil
	}
	updated := current.DeepCopy()
	updated.Labels, updated.Spec = desired.Labels, desired.Spec
	if err := r.Update(ctx, updated); err != nil {
		return fmt.Errorf("updating NetworkPolicy %s: %w", desired.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Updated the pool's NetworkPolicy", "networkPolicy", desired.Name)
	r.Recorder.Eventf(sbs, updated, corev1.EventTypeNormal, "NetworkPolicyUpdated", "Update",
		"Updated NetworkPolicy %s: sandboxes admit %s and reach %s", desired.Name, describeIngress(sbs), describeEgress(sbs))
	return nil
}

// deletePolicy deletes the policy the operator made, exactly as read.
func (r *NetworkPolicyReconciler) deletePolicy(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, current *networkingv1.NetworkPolicy) error {
	if current == nil {
		return nil
	}
	err := r.Delete(ctx, current, client.Preconditions{UID: &current.UID, ResourceVersion: &current.ResourceVersion})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting NetworkPolicy %s: %w", current.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Deleted the pool's NetworkPolicy: spec.network.policy is None", "networkPolicy", current.Name)
	r.Recorder.Eventf(sbs, current, corev1.EventTypeNormal, "NetworkPolicyDeleted", "Delete",
		"Deleted NetworkPolicy %s: spec.network.policy is None, so nothing the operator makes limits the sandboxes' network", current.Name)
	return nil
}

// inputs gathers, from the cache, what the policy depends on beside the
// SandboxSet.
func (r *NetworkPolicyReconciler) inputs(ctx context.Context, sbs *agentsv1alpha1.SandboxSet) (networkInputs, error) {
	in := networkInputs{blocked: r.BlockedCIDRs, services: map[agentsv1alpha1.ServiceReference]*corev1.Service{}}
	apiSlices := &discoveryv1.EndpointSliceList{}
	if err := r.List(ctx, apiSlices, client.InNamespace(metav1.NamespaceDefault), apiServerSliceLabels); err != nil {
		return in, fmt.Errorf("listing the API server's EndpointSlices: %w", err)
	}
	for _, slice := range apiSlices.Items {
		for _, endpoint := range slice.Endpoints {
			for _, address := range endpoint.Addresses {
				if addr, err := netip.ParseAddr(address); err == nil {
					in.apiServer = append(in.apiServer, addr)
				}
			}
		}
	}
	for _, ref := range sbs.Spec.Network.EgressToServices {
		svc := &corev1.Service{}
		err := r.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, svc)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return in, fmt.Errorf("getting Service %s/%s: %w", ref.Namespace, ref.Name, err)
		default:
			in.services[ref] = svc
		}
	}
	return in, nil
}

// The default/kubernetes Service's EndpointSlices: the API server keeps
// its own addresses there.
var apiServerSliceLabels = client.MatchingLabels{discoveryv1.LabelServiceName: "kubernetes"}

func describeIngress(sbs *agentsv1alpha1.SandboxSet) string {
	if n := len(sbs.Spec.Network.Ingress); n > 0 {
		return fmt.Sprintf("traffic from spec.network.ingress (%d rules) only", n)
	}
	return "no traffic"
}

func describeEgress(sbs *agentsv1alpha1.SandboxSet) string {
	parts := []string{"cluster DNS"}
	if sbs.Spec.Network.InternetAllowed() {
		parts = append(parts, "the internet (not private, link-local or metadata addresses, nor the API server)")
	}
	if n := len(sbs.Spec.Network.EgressToServices); n > 0 {
		parts = append(parts, fmt.Sprintf("%d named Services", n))
	}
	if n := len(sbs.Spec.Network.Egress); n > 0 {
		parts = append(parts, fmt.Sprintf("spec.network.egress (%d rules)", n))
	}
	return strings.Join(parts, ", ")
}

// serviceIndex indexes SandboxSets by the Services they name, as
// namespace/name, so a Service's change wakes only the pools that name it.
const serviceIndex = "spec.network.egressToServices"

func serviceIndexKeys(obj client.Object) []string {
	sbs, ok := obj.(*agentsv1alpha1.SandboxSet)
	if !ok {
		return nil
	}
	keys := make([]string, 0, len(sbs.Spec.Network.EgressToServices))
	for _, ref := range sbs.Spec.Network.EgressToServices {
		keys = append(keys, ref.Namespace+"/"+ref.Name)
	}
	return keys
}

// SetupWithManager registers the controller and its watches.
func (r *NetworkPolicyReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, workers int) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &agentsv1alpha1.SandboxSet{}, serviceIndex, serviceIndexKeys); err != nil {
		return fmt.Errorf("indexing SandboxSets by the Services they name: %w", err)
	}
	r.apiReader = mgr.GetAPIReader()
	return ctrl.NewControllerManagedBy(mgr).
		Named("networkpolicy").
		For(&agentsv1alpha1.SandboxSet{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&networkingv1.NetworkPolicy{}).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.namingPools)).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(r.allPools)).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

// namingPools wakes the SandboxSets that name the Service.
func (r *NetworkPolicyReconciler) namingPools(ctx context.Context, svc client.Object) []reconcile.Request {
	list := &agentsv1alpha1.SandboxSetList{}
	if err := r.List(ctx, list, client.MatchingFields{serviceIndex: svc.GetNamespace() + "/" + svc.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing the SandboxSets that name a Service", "service", client.ObjectKeyFromObject(svc))
		return nil
	}
	return requestsFor(list)
}

// allPools wakes every SandboxSet: the API server's addresses changed.
// The cache only holds the default/kubernetes EndpointSlices (CacheOptions).
func (r *NetworkPolicyReconciler) allPools(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &agentsv1alpha1.SandboxSetList{}
	if err := r.List(ctx, list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing SandboxSets after the API server's addresses changed")
		return nil
	}
	return requestsFor(list)
}

func requestsFor(list *agentsv1alpha1.SandboxSetList) []reconcile.Request {
	requests := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return requests
}
