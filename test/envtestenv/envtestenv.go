// Package envtestenv starts what every API-server test suite of this project
// shares: a real kube-apiserver and etcd (envtest) with the SandboxSet CRD and
// the admission webhooks installed, and the manager (controller and webhooks)
// running in-process under its own identity, as it runs in a cluster.
package envtestenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/controllers"
)

// ManagerUser is the identity the manager runs as; only it may create warm
// Pods and move their state, so it must not be the suite's admin. It holds
// exactly the manager's RBAC (config/rbac/role.yaml), as in a cluster.
const ManagerUser = "system:serviceaccount:sandboxset-system:sandboxset-controller-manager"

// AdmissionParams is where the suites install the admission policies'
// parameters: config/policies as written, before kustomize names them.
var AdmissionParams = types.NamespacedName{Namespace: "system", Name: "admission-params"}

// Options say what a suite adds to the shared environment.
type Options struct {
	// RegisterWebhooks registers the admission webhooks with the manager.
	// The suite supplies it because package webhooks' own suite uses this
	// package, which therefore cannot import it.
	RegisterWebhooks func(mgr ctrl.Manager) error
	// ExtraCRDPaths are more CRD files or directories to install.
	ExtraCRDPaths []string
}

// Env is a running API server with the manager attached.
type Env struct {
	// Environment is the envtest environment, for AddUser and the like.
	Environment *envtest.Environment
	// Scheme knows the built-in kinds and SandboxSets.
	Scheme *runtime.Scheme
	// Admin is a cluster-admin client straight to the API server, no cache.
	Admin client.WithWatch
	// Root is the repository root, where config/ lives.
	Root string

	stopManager context.CancelFunc
	managerDone chan struct{}
	managerErr  error
}

// Start starts the API server, installs the CRDs and webhook configurations,
// and runs the manager until its webhook server answers TLS. KUBEBUILDER_ASSETS
// must name the kube-apiserver and etcd binaries.
func Start(opts Options) (*Env, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is unset: run the tests with 'make test', which builds kube-apiserver and etcd")
	}
	if opts.RegisterWebhooks == nil {
		return nil, errors.New("envtestenv: Options.RegisterWebhooks is required: the webhook configurations fail closed")
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	e := &Env{Scheme: runtime.NewScheme(), Root: root}
	utilruntime.Must(clientgoscheme.AddToScheme(e.Scheme))
	utilruntime.Must(agentsv1alpha1.AddToScheme(e.Scheme))
	e.Environment = &envtest.Environment{
		CRDDirectoryPaths:     append([]string{filepath.Join(root, "config", "crd", "bases")}, opts.ExtraCRDPaths...),
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join(root, "config", "webhook", "manifests.yaml")}},
	}
	cfg, err := e.Environment.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	if e.Admin, err = client.NewWithWatch(cfg, client.Options{Scheme: e.Scheme}); err != nil {
		return nil, errors.Join(fmt.Errorf("creating the admin client: %w", err), e.Environment.Stop())
	}
	if err := e.install(); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	if err := e.startManager(opts); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	if err := e.waitForPolicies(); err != nil {
		return nil, errors.Join(err, e.Stop())
	}
	return e, nil
}

// install applies what config/default adds beside the CRD and webhooks: the
// manager's RBAC, bound to ManagerUser, and the admission policies with
// their parameters naming ManagerUser.
func (e *Env) install() error {
	ctx := context.Background()
	if err := e.Admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: AdmissionParams.Namespace}}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", AdmissionParams.Namespace, err)
	}
	var objs []*unstructured.Unstructured
	for _, file := range []string{"rbac/role.yaml", "policies/params.yaml", "policies/pool_label.yaml", "policies/pool_pods.yaml", "policies/pool_objects.yaml", "policies/claim_ledger.yaml", "policies/manager_scope.yaml"} {
		decoded, err := decodeYAML(filepath.Join(e.Root, "config", file))
		if err != nil {
			return err
		}
		objs = append(objs, decoded...)
	}
	for _, obj := range objs {
		switch obj.GetKind() {
		case "ConfigMap":
			if err := unstructured.SetNestedField(obj.Object, ManagerUser, "data", "managerUsername"); err != nil {
				return err
			}
		case "ClusterRole", "Role":
			if err := e.bindToManager(ctx, obj); err != nil {
				return err
			}
		}
		if err := e.Admin.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	return nil
}

// bindToManager binds the (Cluster)Role to ManagerUser.
func (e *Env) bindToManager(ctx context.Context, role *unstructured.Unstructured) error {
	subjects := []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: ManagerUser}}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: role.GetKind(), Name: role.GetName()}
	var binding client.Object = &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.GetName()}, RoleRef: ref, Subjects: subjects}
	if role.GetKind() == "Role" {
		binding = &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: role.GetNamespace(), Name: role.GetName()}, RoleRef: ref, Subjects: subjects}
	}
	if err := e.Admin.Create(ctx, binding); err != nil {
		return fmt.Errorf("binding %s %s to the manager: %w", role.GetKind(), role.GetName(), err)
	}
	return nil
}

// waitForPolicies waits until the API server enforces the pool-pods policy
// with its parameters: it loads policies asynchronously, and a spec that
// expects a refusal must not run before. It probes with a warm Pod of a
// pool of one, which an agent may not annotate.
func (e *Env) waitForPolicies() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := e.NewNamespace(ctx, "policy-probe-")
	if err != nil {
		return err
	}
	const agent = "policy-probe-agent"
	if err := e.BindAgentRole(ctx, ns, agent); err != nil {
		return err
	}
	agentClient, err := e.UserClient(agent)
	if err != nil {
		return err
	}
	probe := &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"},
		Spec: agentsv1alpha1.SandboxSetSpec{Replicas: ptr.To[int32](1), Template: corev1.PodTemplateSpec{
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
		}},
	}
	if err := e.Admin.Create(ctx, probe); err != nil {
		return fmt.Errorf("creating the policy probe's SandboxSet: %w", err)
	}
	var last error
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := e.Admin.List(ctx, pods, client.InNamespace(ns)); err != nil || len(pods.Items) == 0 {
			last = fmt.Errorf("no probe Pod yet: %v", err)
			return false, nil
		}
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"probe":"x"}}}`))
		last = agentClient.Patch(ctx, &pods.Items[0], patch, client.DryRunAll)
		return last != nil && strings.Contains(last.Error(), "rule warm-metadata"), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the API server to enforce the admission policies (last probe: %v): %w", last, err)
	}
	return nil
}

// decodeYAML reads every object in a multi-document YAML file.
func decodeYAML(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(string(data), "\n---\n") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
	return objs, nil
}

// startManager runs the controller and webhooks the way cmd/manager does.
func (e *Env) startManager(opts Options) error {
	managerCfg, err := e.UserConfig(ManagerUser)
	if err != nil {
		return err
	}
	install := e.Environment.WebhookInstallOptions
	mgr, err := ctrl.NewManager(managerCfg, ctrl.Options{
		Scheme:  e.Scheme,
		Cache:   controllers.CacheOptions(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		// A test binary may start an environment more than once (a Ginkgo
		// suite and a plain test in one package).
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		HealthProbeBindAddress: "0",
		WebhookServer: webhook.NewServer(webhook.Options{
			Host:    install.LocalServingHost,
			Port:    install.LocalServingPort,
			CertDir: install.LocalServingCertDir,
			TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 }},
		}),
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stopManager, e.managerDone = cancel, make(chan struct{})
	if err := controllers.SetupWithManager(ctx, mgr, controllers.Options{Workers: 4, PodWriteParallelism: 32, ExpectationTTL: time.Minute, StatusInterval: time.Second}); err != nil {
		close(e.managerDone)
		return err
	}
	if err := opts.RegisterWebhooks(mgr); err != nil {
		close(e.managerDone)
		return fmt.Errorf("registering the webhooks: %w", err)
	}
	go func() {
		defer close(e.managerDone)
		e.managerErr = mgr.Start(ctx)
	}()

	// The webhooks fail closed: no spec may run before they answer.
	started := mgr.GetWebhookServer().StartedChecker()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return started(nil) == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the webhook server: %w", errors.Join(err, started(nil)))
	}
	return nil
}

// Stop stops the manager, then the API server. It returns the manager's
// error too, if it stopped on one.
func (e *Env) Stop() error {
	var errs []error
	if e.stopManager != nil {
		e.stopManager()
		<-e.managerDone
		if e.managerErr != nil {
			errs = append(errs, fmt.Errorf("manager: %w", e.managerErr))
		}
	}
	if err := e.Environment.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("stopping envtest: %w", err))
	}
	return errors.Join(errs...)
}

// UserConfig is a rest.Config for a user the API server authenticates by
// client certificate, in the given groups, and nothing else: it holds no
// admin credential. It asks the API server who it is (a SelfSubjectReview)
// before it returns, so a test that acts as an agent cannot run as an
// admin by mistake.
func (e *Env) UserConfig(name string, groups ...string) (*rest.Config, error) {
	user, err := e.Environment.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding envtest user %s: %w", name, err)
	}
	cfg := user.Config()
	cfg.QPS, cfg.Burst = 1000, 2000
	if err := ExpectIdentity(context.Background(), cfg, name); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ExpectIdentity asks the API server whom cfg authenticates as, and fails
// unless it is username.
func ExpectIdentity(ctx context.Context, cfg *rest.Config, username string) error {
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating a clientset: %w", err)
	}
	review, err := clientset.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("asking the API server who %s is: %w", username, err)
	}
	if got := review.Status.UserInfo.Username; got != username {
		return fmt.Errorf("the credentials for %s authenticate as %q (groups %v)", username, got, review.Status.UserInfo.Groups)
	}
	return nil
}

// UserClient is a client, straight to the API server, acting as the user.
func (e *Env) UserClient(name string, groups ...string) (client.WithWatch, error) {
	cfg, err := e.UserConfig(name, groups...)
	if err != nil {
		return nil, err
	}
	return client.NewWithWatch(cfg, client.Options{Scheme: e.Scheme})
}

// Kubeconfig is a kubeconfig file's contents for the user, as a CLI reads it.
func (e *Env) Kubeconfig(name string, groups ...string) ([]byte, error) {
	user, err := e.Environment.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding envtest user %s: %w", name, err)
	}
	return user.KubeConfig()
}

// BindAgentRole grants the user the example agent Role
// (config/rbac/agent_role.yaml) in ns, creating the Role if needed: agents
// in tests hold exactly what the docs tell operators to grant.
func (e *Env) BindAgentRole(ctx context.Context, ns, user string) error {
	data, err := os.ReadFile(filepath.Join(e.Root, "config", "rbac", "agent_role.yaml"))
	if err != nil {
		return err
	}
	role := &rbacv1.Role{}
	if err := yaml.Unmarshal(data, role); err != nil {
		return fmt.Errorf("decoding the agent Role: %w", err)
	}
	role.Namespace = ns
	if err := client.IgnoreAlreadyExists(e.Admin.Create(ctx, role)); err != nil {
		return fmt.Errorf("creating the agent Role: %w", err)
	}
	return e.BindRole(ctx, ns, role.Name, user)
}

// WideAgentRules are what a careless platform grants an agent beside the
// built-in edit ClusterRole (which already grants most Pod writes, exec,
// attach, port-forward and proxy): every Pod subresource, explicitly, so
// that RBAC is never what refuses an attack.
var WideAgentRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods/status", "pods/ephemeralcontainers", "pods/resize", "pods/binding"}, Verbs: []string{"get", "create", "update", "patch"}},
	{APIGroups: []string{""}, Resources: []string{"pods/eviction", "pods/exec", "pods/attach", "pods/portforward", "pods/proxy"}, Verbs: []string{"get", "create"}},
	{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
}

// BindWideAgentRoles grants the user, in ns, the example agent Role, the
// built-in edit ClusterRole and WideAgentRules. The specs then see that
// admission, not RBAC, refuses an attack.
func (e *Env) BindWideAgentRoles(ctx context.Context, ns, user string) error {
	if err := e.BindAgentRole(ctx, ns, user); err != nil {
		return err
	}
	wide := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wide-agent"}, Rules: WideAgentRules}
	if err := client.IgnoreAlreadyExists(e.Admin.Create(ctx, wide)); err != nil {
		return fmt.Errorf("creating the wide agent Role: %w", err)
	}
	if err := e.BindRole(ctx, ns, wide.Name, user); err != nil {
		return err
	}
	return e.BindEdit(ctx, ns, user)
}

// BindEdit grants the user the built-in edit ClusterRole in ns. envtest runs
// no controller-manager to aggregate edit's rules into it, so the roles it
// aggregates are bound too.
func (e *Env) BindEdit(ctx context.Context, ns, user string) error {
	for _, role := range []string{"edit", "system:aggregate-to-edit", "system:aggregate-to-view"} {
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: strings.ReplaceAll(role, ":", "-") + "-" + user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
		}
		if err := e.Admin.Create(ctx, binding); err != nil {
			return fmt.Errorf("binding the %s ClusterRole to %s: %w", role, user, err)
		}
	}
	edit := &rbacv1.ClusterRole{}
	if err := e.Admin.Get(ctx, client.ObjectKey{Name: "system:aggregate-to-edit"}, edit); err != nil {
		return fmt.Errorf("reading the system:aggregate-to-edit ClusterRole: %w", err)
	}
	return e.waitAuthorized(ctx, ns, user, edit.Rules)
}

// BindRole binds the Role named role in ns to the user, unless it is already.
func (e *Env) BindRole(ctx context.Context, ns, role, user string) error {
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: role + "-" + user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
	}
	if err := client.IgnoreAlreadyExists(e.Admin.Create(ctx, binding)); err != nil {
		return fmt.Errorf("binding Role %s to %s: %w", role, user, err)
	}
	granted := &rbacv1.Role{}
	if err := e.Admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: role}, granted); err != nil {
		return fmt.Errorf("reading Role %s: %w", role, err)
	}
	return e.waitAuthorized(ctx, ns, user, granted.Rules)
}

// waitAuthorized waits until the API server's authorizer lets the user do
// the first verb of each rule in ns. The authorizer reads RBAC objects from
// an informer, so a binding just created may not hold for the next request.
func (e *Env) waitAuthorized(ctx context.Context, ns, user string, rules []rbacv1.PolicyRule) error {
	for _, rule := range rules {
		if len(rule.Verbs) == 0 || len(rule.APIGroups) == 0 || len(rule.Resources) == 0 {
			continue
		}
		resource, subresource, _ := strings.Cut(rule.Resources[0], "/")
		attrs := &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: rule.Verbs[0], Group: rule.APIGroups[0], Resource: resource, Subresource: subresource,
		}
		if len(rule.ResourceNames) > 0 {
			attrs.Name = rule.ResourceNames[0]
		}
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: attrs}}
			if err := e.Admin.Create(ctx, review); err != nil {
				return false, err
			}
			return review.Status.Allowed, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for %s to be allowed to %s %s in %s: %w", user, attrs.Verb, rule.Resources[0], ns, err)
		}
	}
	return nil
}

// NewNamespace creates a namespace named after prefix. envtest has no
// namespace controller, so it is never cleaned up: specs isolate by namespace.
func (e *Env) NewNamespace(ctx context.Context, prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	if err := e.Admin.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("creating a namespace: %w", err)
	}
	return ns.Name, nil
}

// repoRoot is the nearest directory above the working directory (a test's
// package directory) that holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from inside the repository")
		}
		dir = parent
	}
}
