package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/envtestenv"
	"github.com/sandboxset/warmpool/test/kubelet"
	"github.com/sandboxset/warmpool/webhooks"
)

const (
	timeout  = 30 * time.Second
	interval = 50 * time.Millisecond
)

var env *envtestenv.Env

func TestKubectlSbs(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "kubectl-sbs suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	env, err = envtestenv.Start(envtestenv.Options{RegisterWebhooks: func(mgr ctrl.Manager) error {
		return webhooks.SetupWithManager(mgr, webhooks.Options{MaxReplicas: 100, ManagerUsername: envtestenv.ManagerUser, AdmissionParams: envtestenv.AdmissionParams})
	}})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// agentKubeconfig writes a kubeconfig file for a new agent holding the
// agent Role in ns, whose context's namespace is ns.
func agentKubeconfig(ctx context.Context, ns, agent string) string {
	GinkgoHelper()
	Expect(env.BindAgentRole(ctx, ns, agent)).To(Succeed())
	data, err := env.Kubeconfig(agent)
	Expect(err).NotTo(HaveOccurred())
	cfg, err := clientcmd.Load(data)
	Expect(err).NotTo(HaveOccurred())
	cfg.Contexts[cfg.CurrentContext].Namespace = ns
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(clientcmd.WriteToFile(*cfg, path)).To(Succeed())
	return path
}

// newPool creates a SandboxSet of n and waits until the status counts its
// Pods; with ready, it plays kubelet until all are available.
func newPool(ctx context.Context, ns, name string, n int32, ready bool) {
	GinkgoHelper()
	sbs := &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: agentsv1alpha1.SandboxSetSpec{
			Replicas: ptr.To(n),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sandbox", Image: "nginx:alpine"}}}},
		},
	}
	Expect(env.Admin.Create(ctx, sbs)).To(Succeed())
	pods := &corev1.PodList{}
	Eventually(func(g Gomega) {
		g.Expect(env.Admin.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{agentsv1alpha1.LabelSandboxSet: name})).To(Succeed())
		g.Expect(pods.Items).To(HaveLen(int(n)))
	}, timeout, interval).Should(Succeed())
	if ready {
		for _, pod := range pods.Items {
			Expect(kubelet.SetReady(ctx, env.Admin, &pod, true)).To(Succeed())
		}
	}
	Eventually(func(g Gomega) {
		g.Expect(env.Admin.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		g.Expect(sbs.Status.Replicas).To(Equal(n))
		if ready {
			g.Expect(sbs.Status.AvailableReplicas).To(Equal(n))
		}
	}, timeout, interval).Should(Succeed())
}

// sbs runs the command line and returns what it printed.
func sbs(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	err = run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}
