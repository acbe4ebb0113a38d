package webhooks

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// trust tells the identities the pool-pods policy exempts
// (config/policies/pool_pods.yaml, its not-trusted condition) from the rest,
// for the webhooks that apply its rules where no policy can: evictions and
// exec, attach, port-forward and proxy requests.
type trust struct {
	// apiReader reads the admission parameters uncached: they change by
	// hand (kubectl edit), and a cache would trail the API server's view.
	apiReader client.Reader
	// params is the ConfigMap holding adminGroups.
	params types.NamespacedName
}

// isAdmin says whether user is a cluster component, a cluster admin, or in
// one of the adminGroups. The manager is not among them: callers that
// trust it say so.
func (t *trust) isAdmin(ctx context.Context, user authenticationv1.UserInfo) (bool, error) {
	if isControlPlane(user) {
		return true, nil
	}
	params := &corev1.ConfigMap{}
	if err := t.apiReader.Get(ctx, t.params, params); err != nil {
		return false, apierrors.NewInternalError(fmt.Errorf("reading the admission parameters %s: %w", t.params, err))
	}
	admins := strings.Split(params.Data["adminGroups"], ",")
	return slices.ContainsFunc(user.Groups, func(g string) bool { return slices.Contains(admins, g) }), nil
}

// isControlPlane reports whether the user is one of the cluster's own
// components or a cluster admin.
func isControlPlane(user authenticationv1.UserInfo) bool {
	return strings.HasPrefix(user.Username, "system:serviceaccount:kube-system:") ||
		user.Username == "system:kube-controller-manager" || user.Username == "system:kube-scheduler" ||
		slices.Contains(user.Groups, "system:masters") || slices.Contains(user.Groups, "system:nodes")
}
