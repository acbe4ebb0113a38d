package webhooks

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// EvictionWebhook holds evictions of pool Pods to the rules that deletes
// follow (config/policies/pool_pods.yaml): a warm sandbox is evicted only by
// trusted identities, a claimed one also by its holder. An eviction deletes
// its Pod without the Pod's own admission, and carries none of the Pod's
// labels, so no policy can tell a pool Pod's eviction from any other: this
// webhook looks the Pod up.
type EvictionWebhook struct {
	// APIReader reads Pods and the admission parameters uncached: an
	// eviction is rare, and must not be judged on a cache that lags.
	APIReader client.Reader
	// ManagerUsername is the manager's own identity.
	ManagerUsername string
	// Params is the ConfigMap the pool-pods policy reads its adminGroups from.
	Params types.NamespacedName

	trust *trust
}

var _ admission.Validator[*policyv1.Eviction] = &EvictionWebhook{}

// The matchConditions skip the cluster's own evictions (node drains by the
// control plane, the kubelets, cluster admins) so that they never wait on
// this webhook. config/default and config/local write the manager's
// ServiceAccount into the last one.
//
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get,namespace=system
// +kubebuilder:rbac:groups="",resources=pods,verbs=get
//
// +kubebuilder:webhook:path=/validate-policy-v1-eviction,mutating=false,failurePolicy=fail,sideEffects=None,groups="",resources=pods/eviction,verbs=create,versions=v1,name=vpod-eviction.agents.kruise.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"not-the-control-plane","expression":"!request.userInfo.username.startsWith('system:serviceaccount:kube-system:') && !(request.userInfo.username in ['system:kube-controller-manager', 'system:kube-scheduler']) && !request.userInfo.groups.exists(g, g in ['system:masters', 'system:nodes'])"},{"name":"not-the-manager","expression":"request.userInfo.username != 'system:serviceaccount:' + 'sandboxset-system' + ':' + 'sandboxset-controller-manager'"}]}`

// ValidateCreate admits an eviction unless it would take a warm sandbox or
// another agent's sandbox.
func (w *EvictionWebhook) ValidateCreate(ctx context.Context, eviction *policyv1.Eviction) (admission.Warnings, error) {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("reading admission request: %w", err))
	}
	pod := &metav1.PartialObjectMetadata{}
	pod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	if err := w.APIReader.Get(ctx, types.NamespacedName{Namespace: req.Namespace, Name: req.Name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil // the eviction itself will say so
		}
		return nil, apierrors.NewInternalError(fmt.Errorf("reading Pod %s: %w", req.Name, err))
	}
	pool := pod.Labels[agentsv1alpha1.LabelSandboxSet]
	if pool == "" {
		return nil, nil
	}
	holder, holderUser := pod.Labels[agentsv1alpha1.LabelClaimedBy], pod.Annotations[agentsv1alpha1.AnnotationClaimedByUser]
	if holder != "" && (holderUser == "" || holderUser == req.UserInfo.Username) {
		return nil, nil
	}
	if req.UserInfo.Username == w.ManagerUsername {
		return nil, nil
	}
	if admin, err := w.trust.isAdmin(ctx, req.UserInfo); err != nil || admin {
		return nil, err
	}
	if holder != "" {
		return nil, apierrors.NewForbidden(podResource, pod.Name, fmt.Errorf(
			"rule holder-only: sandbox %s is claimed by %s (%s); only that identity may evict it, not %s",
			pod.Name, holder, holderUser, req.UserInfo.Username))
	}
	return nil, apierrors.NewForbidden(podResource, pod.Name, fmt.Errorf(
		"rule warm-delete: %s is a warm sandbox of SandboxSet %s; only the SandboxSet controller and the cluster's own controllers evict warm sandboxes",
		pod.Name, pool))
}

// ValidateUpdate is never called: the webhook is registered for CREATE.
func (w *EvictionWebhook) ValidateUpdate(context.Context, *policyv1.Eviction, *policyv1.Eviction) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete is never called: the webhook is registered for CREATE.
func (w *EvictionWebhook) ValidateDelete(context.Context, *policyv1.Eviction) (admission.Warnings, error) {
	return nil, nil
}

// SetupWithManager registers the eviction webhook.
func (w *EvictionWebhook) SetupWithManager(mgr ctrl.Manager) error {
	w.trust = &trust{apiReader: w.APIReader, params: w.Params}
	return ctrl.NewWebhookManagedBy(mgr, &policyv1.Eviction{}).WithValidator(w).Complete()
}
