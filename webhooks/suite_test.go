package webhooks

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/controllers"
)

const (
	timeout  = 30 * time.Second
	interval = 50 * time.Millisecond

	// managerUser is the identity the manager runs as; only it may create
	// warm Pods and move their state.
	managerUser = "system:serviceaccount:sandboxset-system:sandboxset-controller-manager"
	// testMaxReplicas is the pool-size ceiling the suite's webhook enforces.
	testMaxReplicas = 100
)

var (
	testEnv     *envtest.Environment
	adminClient client.Client // cluster admin, as a platform engineer
	scheme      = runtime.NewScheme()
	cancel      context.CancelFunc
	managerDone = make(chan struct{})
)

func TestWebhooks(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Admission webhook suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	Expect(os.Getenv("KUBEBUILDER_ASSETS")).NotTo(BeEmpty(), "KUBEBUILDER_ASSETS is unset: run the tests with 'make test', which builds kube-apiserver and etcd")
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(agentsv1alpha1.AddToScheme(scheme))

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases"), certManagerCRDs()},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join("..", "config", "webhook", "manifests.yaml")}},
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	adminClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	managerCfg := userConfig(managerUser, "system:masters")
	mgr, err := ctrl.NewManager(managerCfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer: webhook.NewServer(webhook.Options{
			Host:    testEnv.WebhookInstallOptions.LocalServingHost,
			Port:    testEnv.WebhookInstallOptions.LocalServingPort,
			CertDir: testEnv.WebhookInstallOptions.LocalServingCertDir,
			TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 }},
		}),
	})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancelFn := context.WithCancel(context.Background())
	cancel = cancelFn
	Expect((&controllers.SandboxSetReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("sandboxset-controller"),
		Options:  controllers.Options{Workers: 4, PodWriteParallelism: 32, ExpectationTTL: time.Minute},
	}).SetupWithManager(ctx, mgr)).To(Succeed())
	Expect((&SandboxSetWebhook{MaxReplicas: testMaxReplicas}).SetupWithManager(mgr)).To(Succeed())
	Expect((&PodWebhook{Reader: mgr.GetClient(), ManagerUsername: managerUser}).SetupWithManager(mgr)).To(Succeed())
	go func() {
		defer GinkgoRecover()
		defer close(managerDone)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()

	By("waiting for the webhook server's TLS port")
	addr := net.JoinHostPort(testEnv.WebhookInstallOptions.LocalServingHost, fmt.Sprint(testEnv.WebhookInstallOptions.LocalServingPort))
	Eventually(func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a readiness probe only
		if err != nil {
			return err
		}
		return conn.Close()
	}, timeout, interval).Should(Succeed())
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
		<-managerDone
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// userConfig is a rest.Config for a user the API server authenticates by
// client certificate, with the given groups.
func userConfig(name string, groups ...string) *rest.Config {
	GinkgoHelper()
	user, err := testEnv.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	Expect(err).NotTo(HaveOccurred())
	cfg := user.Config()
	cfg.QPS, cfg.Burst = 1000, 2000
	return cfg
}

// agentClient is a client for an agent bound to the example agent Role
// (config/rbac/agent_role.yaml) in ns, and nothing else.
func agentClient(ctx context.Context, ns, name string) client.Client {
	GinkgoHelper()
	role := &rbacv1.Role{}
	data, err := os.ReadFile(filepath.Join("..", "config", "rbac", "agent_role.yaml"))
	Expect(err).NotTo(HaveOccurred())
	Expect(yaml.Unmarshal(data, role)).To(Succeed())
	role.Namespace = ns
	if err := adminClient.Create(ctx, role); err != nil {
		Expect(client.IgnoreAlreadyExists(err)).To(Succeed())
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent-" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: name}},
	}
	Expect(adminClient.Create(ctx, binding)).To(Succeed())
	c, err := client.New(userConfig(name), client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

func newNamespace(ctx context.Context) string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "webhook-test-"}}
	Expect(adminClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func newSandboxSet(ns, name string, replicas int32) *agentsv1alpha1.SandboxSet {
	return &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: agentsv1alpha1.SandboxSetSpec{
			Replicas: replicas,
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sandbox", Image: "nginx:alpine"}}},
			},
		},
	}
}

// certManagerCRDs is where cert-manager's module ships its CRDs.
func certManagerCRDs() string {
	GinkgoHelper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	Expect(err).NotTo(HaveOccurred(), "locating the cert-manager module")
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
}
