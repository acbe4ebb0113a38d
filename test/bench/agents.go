package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Who the agents claim as (-agents-as): a ServiceAccount holding the
// example agent Role, as in production, so that claims pay for the
// admission rules agents are held to; or the benchmark's cluster admin,
// whom those rules trust and skip.
const (
	agentsAsServiceAccount = "serviceaccount"
	agentsAsAdmin          = "admin"
)

// agentClients returns clients for the agents of one system's namespace:
// the admin's with -agents-as admin, otherwise a ServiceAccount's bound to
// config/rbac/agent_role.yaml there.
func agentClients(ctx context.Context, e *env, ns string) (client.WithWatch, kubernetes.Interface, error) {
	if e.p.AgentsAs == agentsAsAdmin {
		return e.c, e.cs, nil
	}
	data, err := os.ReadFile(filepath.Join(e.repo, "config", "rbac", "agent_role.yaml"))
	if err != nil {
		return nil, nil, err
	}
	role := &rbacv1.Role{}
	if err := yaml.Unmarshal(data, role); err != nil {
		return nil, nil, fmt.Errorf("decoding the agent Role: %w", err)
	}
	role.Namespace = ns
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent"}}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa.Name}},
	}
	for _, obj := range []client.Object{role, sa, binding} {
		if err := e.c.Create(ctx, obj); err != nil {
			return nil, nil, fmt.Errorf("creating the agents' %T in %s: %w", obj, ns, err)
		}
	}
	token, err := e.cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("creating a token for the agents of %s: %w", ns, err)
	}
	cfg := rest.AnonymousClientConfig(e.cfg)
	cfg.BearerToken = token.Status.Token
	cfg.QPS, cfg.Burst = e.cfg.QPS, e.cfg.Burst
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: e.c.Scheme()})
	return c, cs, err
}
