package webhooks

import (
	"context"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// ConnectWebhook holds exec, attach, port-forward and proxy requests to
// pool Pods to the holder: nobody but the cluster's admins gets into a warm
// sandbox, which the next agent gets, and only its holder and the admins
// into a claimed one. These are CONNECT requests on subresources, which
// carry none of the Pod's labels, so no policy can tell a pool Pod's from
// any other's: the webhook looks the Pod up.
//
// Its matchConditions skip the cluster's own components and cluster
// admins, so they never wait on it. Every other identity's exec into any
// Pod in the cluster does: while the webhook is down, it fails closed.
// The manager is not trusted here: it never needs a shell in a sandbox.
type ConnectWebhook struct {
	// APIReader reads Pods uncached: a warm Pod the cache has not seen yet
	// must not pass for a Pod outside any pool.
	APIReader client.Reader
	// Params is the ConfigMap the pool-pods policy reads its adminGroups from.
	Params types.NamespacedName

	trust *trust
}

var _ admission.Handler = &ConnectWebhook{}

// +kubebuilder:webhook:path=/validate--v1-pod-connect,mutating=false,failurePolicy=fail,sideEffects=None,groups="",resources=pods/exec;pods/attach;pods/portforward;pods/proxy,verbs=connect,versions=v1,name=vpod-connect.agents.kruise.io,admissionReviewVersions=v1,timeoutSeconds=5,patch=`{"matchConditions":[{"name":"not-the-control-plane","expression":"!request.userInfo.username.startsWith('system:serviceaccount:kube-system:') && !(request.userInfo.username in ['system:kube-controller-manager', 'system:kube-scheduler']) && !request.userInfo.groups.exists(g, g in ['system:masters', 'system:nodes'])"}]}`

// Handle admits a connection unless its Pod is a warm sandbox or another
// identity's sandbox.
func (w *ConnectWebhook) Handle(ctx context.Context, req admission.Request) admission.Response {
	pod := &metav1.PartialObjectMetadata{}
	pod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	if err := w.APIReader.Get(ctx, types.NamespacedName{Namespace: req.Namespace, Name: req.Name}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return admission.Allowed("no such Pod; the request fails on its own")
		}
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading Pod %s: %w", req.Name, err))
	}
	pool := pod.Labels[agentsv1alpha1.LabelSandboxSet]
	if pool == "" {
		return admission.Allowed("not a sandbox")
	}
	holder, holderUser := pod.Labels[agentsv1alpha1.LabelClaimedBy], pod.Annotations[agentsv1alpha1.AnnotationClaimedByUser]
	// A sandbox claimed before claims recorded their identity has no
	// holder to compare: the rules let anyone act on it (docs/security.md).
	if holder != "" && (holderUser == "" || holderUser == req.UserInfo.Username) {
		return admission.Allowed("the holder")
	}
	if admin, err := w.trust.isAdmin(ctx, req.UserInfo); err != nil || admin {
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		return admission.Allowed("an admin")
	}
	action := connectActions[req.SubResource]
	if holder != "" {
		return admission.Denied(fmt.Sprintf("rule holder-only: sandbox %s is claimed by %s (%s); only that identity may %s it, not %s",
			pod.Name, holder, holderUser, action, req.UserInfo.Username))
	}
	return admission.Denied(fmt.Sprintf(
		"rule warm-connect: %s is a warm sandbox of SandboxSet %s, and what runs in it is what the next agent gets; nobody but the cluster's admins may %s it: claim it first (agents.kruise.io/claimed-by=<agent-id>), then use your own sandbox",
		pod.Name, pool, action))
}

// connectActions says what each subresource does to a Pod, for refusals.
var connectActions = map[string]string{
	"exec":        "exec into",
	"attach":      "attach to",
	"portforward": "port-forward to",
	"proxy":       "proxy to",
}

// SetupWithManager registers the webhook.
func (w *ConnectWebhook) SetupWithManager(mgr ctrl.Manager) error {
	w.trust = &trust{apiReader: w.APIReader, params: w.Params}
	mgr.GetWebhookServer().Register("/validate--v1-pod-connect", &webhook.Admission{Handler: w})
	return nil
}
