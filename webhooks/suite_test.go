package webhooks

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/envtestenv"
	"github.com/sandboxset/warmpool/test/kubelet"
)

const (
	timeout  = 30 * time.Second
	interval = 50 * time.Millisecond

	// testMaxReplicas is the pool-size ceiling the suite's webhook enforces.
	testMaxReplicas = 100
)

var (
	env         *envtestenv.Env
	testEnv     *envtest.Environment
	adminClient client.Client // cluster admin, as a platform engineer
)

func TestWebhooks(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Admission webhook suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	env, err = envtestenv.Start(envtestenv.Options{
		RegisterWebhooks: func(mgr ctrl.Manager) error {
			return SetupWithManager(mgr, Options{MaxReplicas: testMaxReplicas, ManagerUsername: envtestenv.ManagerUser, AdmissionParams: envtestenv.AdmissionParams})
		},
		ExtraCRDPaths: []string{certManagerCRDs()},
	})
	Expect(err).NotTo(HaveOccurred())
	testEnv, adminClient = env.Environment, env.Admin
})

var _ = AfterSuite(func() {
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// agentClient is a client for an agent bound to the example agent Role
// (config/rbac/agent_role.yaml) in ns, and nothing else.
func agentClient(ctx context.Context, ns, name string) client.Client {
	GinkgoHelper()
	Expect(env.BindAgentRole(ctx, ns, name)).To(Succeed())
	c, err := env.UserClient(name)
	Expect(err).NotTo(HaveOccurred())
	return c
}

// wideAgentClient is a client for an agent that also holds the built-in
// edit ClusterRole and every Pod subresource in ns (envtestenv.WideAgentRules),
// so that RBAC is never what refuses it.
func wideAgentClient(ctx context.Context, ns, name string) client.Client {
	GinkgoHelper()
	Expect(env.BindWideAgentRoles(ctx, ns, name)).To(Succeed())
	c, err := env.UserClient(name)
	Expect(err).NotTo(HaveOccurred())
	return c
}

func newNamespace(ctx context.Context) string {
	GinkgoHelper()
	ns, err := env.NewNamespace(ctx, "webhook-test-")
	Expect(err).NotTo(HaveOccurred())
	return ns
}

func newSandboxSet(ns, name string, replicas int32) *agentsv1alpha1.SandboxSet {
	return &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: agentsv1alpha1.SandboxSetSpec{
			Replicas: ptr.To(replicas),
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "sandbox", Image: "nginx:alpine",
					// Burstable, so that a resize need not change the QoS class.
					Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")},
						Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
					},
				}}},
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

// warmPool creates SandboxSet demo of n in ns, with persistentContents
// memory and ip, and plays kubelet until all n Pods are available.
func warmPool(ctx context.Context, ns string, n int32) []corev1.Pod {
	GinkgoHelper()
	sbs := newSandboxSet(ns, "demo", n)
	sbs.Spec.PersistentContents = []agentsv1alpha1.PersistentContent{"memory", "ip"}
	return warmPoolOf(ctx, sbs)
}

// warmPoolOf creates the SandboxSet, alone in its namespace, and plays
// kubelet until all its Pods are available.
func warmPoolOf(ctx context.Context, sbs *agentsv1alpha1.SandboxSet) []corev1.Pod {
	GinkgoHelper()
	ns, n := sbs.Namespace, sbs.Spec.DesiredReplicas()
	Expect(adminClient.Create(ctx, sbs)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(pods(ctx, g, ns, agentsv1alpha1.StateCreating)).To(HaveLen(int(n)))
	}, timeout, interval).Should(Succeed())
	for _, pod := range pods(ctx, Default, ns, agentsv1alpha1.StateCreating) {
		Expect(kubelet.SetReady(ctx, adminClient, &pod, true)).To(Succeed())
	}
	var available []corev1.Pod
	Eventually(func(g Gomega) {
		available = pods(ctx, g, ns, agentsv1alpha1.StateAvailable)
		g.Expect(available).To(HaveLen(int(n)))
	}, timeout, interval).Should(Succeed())
	return available
}
