// Package e2e runs the operator end to end on the local cluster of
// test/local: a real kube-apiserver, etcd, kube-scheduler and
// kube-controller-manager (so real scheduling and garbage collection),
// simulated nodes whose Pods turn Ready after a delay, and the manager as a
// separate process under its own ServiceAccount and RBAC, reached by the API
// server through its webhooks.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/podtrack"
	"github.com/sandboxset/warmpool/test/poolcheck"
)

const (
	timeout  = 90 * time.Second
	interval = 100 * time.Millisecond
	holdFor  = 3 * time.Second
)

var (
	// clusterEnv configures test/local/cluster.sh for a cluster of the
	// suite's own, on ports that do not clash with `make up`.
	clusterEnv = []string{
		"CLUSTER_NAME=sandboxset-e2e", "NODES=20", "READY_DELAY_MS=200", "READY_JITTER_MS=800",
		"WEBHOOK_PORT=19443", "METRICS_PORT=18080", "PROBE_PORT=18081",
	}
	kubeconfig string
	cfg        *rest.Config
	k8sClient  client.Client
	scheme     = runtime.NewScheme()
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "End-to-end suite on the local cluster")
}

var _ = BeforeSuite(func() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(agentsv1alpha1.AddToScheme(scheme))
	By("bringing up the local cluster and the operator")
	cluster("up")
	env := strings.TrimSpace(cluster("env"))
	kubeconfig = strings.TrimPrefix(env, "export KUBECONFIG=")
	var err error
	cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	cfg.QPS, cfg.Burst = 1000, 2000
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
})

// On a failure, say what the cluster looked like: the pools, the Pods that
// are not running, which control-plane processes are alive, and the tail of
// each manager's log. A flake is only fixable with these.
var _ = JustAfterEach(func(ctx SpecContext) {
	if !CurrentSpecReport().Failed() {
		return
	}
	for _, args := range [][]string{
		{"get", "sbs", "-A", "-o", "wide"},
		{"get", "pods", "-A", "--field-selector", "status.phase!=Running", "-L", agentsv1alpha1.LabelState},
	} {
		out, _ := kubectl(ctx, args...)
		GinkgoWriter.Printf("\n$ kubectl %s\n%s", strings.Join(args, " "), out)
	}
	// test/local/cluster.sh keeps kwok's work directory beside the state.
	cache := filepath.Dir(filepath.Dir(stateDir()))
	pids, _ := filepath.Glob(filepath.Join(cache, "kwok", "clusters", filepath.Base(stateDir()), "pids", "*.pid"))
	for _, pidfile := range pids {
		data, _ := os.ReadFile(pidfile)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		alive := pid > 0 && syscall.Kill(pid, 0) == nil
		GinkgoWriter.Printf("%s: pid %d alive=%v\n", filepath.Base(pidfile), pid, alive)
	}
	logs, _ := filepath.Glob(filepath.Join(stateDir(), "manager*.log"))
	for _, log := range logs {
		out, _ := exec.CommandContext(ctx, "tail", "-n", "60", log).Output()
		GinkgoWriter.Printf("\n$ tail -n 60 %s\n%s", log, out)
	}
})

var _ = AfterSuite(func() {
	if os.Getenv("E2E_KEEP_CLUSTER") == "true" {
		GinkgoWriter.Printf("keeping the cluster: %s\n", kubeconfig)
		return
	}
	cluster("down")
})

// cluster runs test/local/cluster.sh with the suite's settings.
func cluster(args ...string) string {
	GinkgoHelper()
	cmd := exec.Command(filepath.Join("..", "local", "cluster.sh"), args...)
	cmd.Env = append(os.Environ(), clusterEnv...)
	cmd.Stderr = GinkgoWriter
	out, err := cmd.Output()
	Expect(err).NotTo(HaveOccurred(), "cluster.sh %v", args)
	return string(out)
}

// kubectl runs the real kubectl against the cluster.
func kubectl(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

func newNamespace(ctx context.Context) string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	DeferCleanup(func(ctx context.Context) {
		Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, ns))).To(Succeed())
	})
	return ns.Name
}

// countedNamespace is a fresh namespace and a count of every Pod created in it.
func countedNamespace(ctx context.Context) (string, *podtrack.Creations) {
	GinkgoHelper()
	ns := newNamespace(ctx)
	return ns, countCreations(ns)
}

// countCreations counts every Pod created in ns until the spec ends.
func countCreations(ns string) *podtrack.Creations {
	GinkgoHelper()
	creation, err := podtrack.Count(context.Background(), cfg, ns)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(creation.Stop)
	return creation
}

func newSandboxSet(ns, name string, replicas int32) *agentsv1alpha1.SandboxSet {
	return &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: agentsv1alpha1.SandboxSetSpec{
			Replicas:           ptr.To(replicas),
			PersistentContents: []agentsv1alpha1.PersistentContent{agentsv1alpha1.PersistentContentIP},
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sandbox", Image: "nginx:alpine"}}},
			},
		},
	}
}

// podsOf lists a pool's Pods straight from the API server, optionally only
// those in one state.
func podsOf(ctx context.Context, g Gomega, sbs *agentsv1alpha1.SandboxSet, state ...agentsv1alpha1.SandboxState) []corev1.Pod {
	return poolcheck.Pods(ctx, g, k8sClient, sbs, state...)
}

// expectPool waits until the pool is at replicas/available.
func expectPool(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, replicas, available int32) {
	GinkgoHelper()
	poolcheck.ExpectPool(ctx, k8sClient, sbs, replicas, available, timeout, interval)
}

// managerPID is manager instance i, as test/local/cluster.sh started it.
func managerPID(i int) int {
	GinkgoHelper()
	name := "manager.pid"
	if i > 0 {
		name = fmt.Sprintf("manager-%d.pid", i)
	}
	data, err := os.ReadFile(filepath.Join(stateDir(), name))
	Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

// stateDir is where cluster.sh keeps the suite's cluster state.
func stateDir() string {
	return filepath.Dir(kubeconfig)
}
