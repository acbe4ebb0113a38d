// Package install tests the operator installed as a platform team installs
// it: config/default, with cert-manager's own controllers issuing the
// webhook certificate and injecting its CA, and the API server reaching the
// webhooks through their Service.
//
// The local cluster (test/local/cluster.sh) runs no containers, so the
// manager is a local process, under its ServiceAccount, that serves the
// certificate from the issued Secret as its mounted volume would. The suite
// first installs the previous release and holds sandboxes under it, then
// upgrades to this checkout, and runs its specs on the upgraded install. The only
// changes to config/default are the ones that makes necessary: the webhook
// Service is an ExternalName for localhost (the API server resolves it to
// localhost:<the webhook's port>, and still verifies the certificate
// against the Service's DNS name), the webhooks' Service port is the
// manager's, and the Deployment runs no replicas.
package install

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/certmanager"
)

const (
	timeout  = 90 * time.Second
	interval = 100 * time.Millisecond

	// Where config/default puts the operator, as kustomize names it.
	operatorNamespace = "sandboxset-system"
	managerAccount    = "sandboxset-controller-manager"
	webhookService    = "sandboxset-webhook-service"
	servingCert       = "sandboxset-serving-cert"
	caCert            = "sandboxset-ca"
	servingSecret     = "webhook-server-cert"

	// The local manager's ports on 127.0.0.1.
	webhookPort = 19643
	metricsPort = 19644
	probePort   = 19645
)

var (
	// clusterEnv configures test/local/cluster.sh for a cluster of the
	// suite's own, with no operator: the suite installs it.
	clusterEnv = []string{"CLUSTER_NAME=sandboxset-install", "NODES=10", "READY_DELAY_MS=100", "READY_JITTER_MS=300", "OPERATOR=none"}
	kubeconfig string
	cfg        *rest.Config
	k8sClient  client.WithWatch
	scheme     = runtime.NewScheme()
	manager    *localManager
	repoRoot   = filepath.Join("..", "..")
	// before is what agents held under the previous release.
	before []corev1.Pod
)

// previousRelease is the install the suite upgrades from: the first commit
// whose config/default cert-manager could issue a certificate for. Move it
// to each release as it is cut.
const previousRelease = "61353b1ba0aece24bea90f9cac73d68f9b9f5d0c"

func TestInstall(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Install suite: config/default with cert-manager on the local cluster")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(agentsv1alpha1.AddToScheme(scheme))
	utilruntime.Must(cmapi.AddToScheme(scheme))

	By("bringing up a local cluster with no operator")
	cluster("up")
	DeferCleanup(func() {
		if os.Getenv("E2E_KEEP_CLUSTER") != "true" {
			cluster("down")
		}
	})
	kubeconfig = strings.TrimPrefix(strings.TrimSpace(cluster("env")), "export KUBECONFIG=")
	var err error
	cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	cfg.QPS, cfg.Burst = 1000, 2000
	k8sClient, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	By("running cert-manager's controllers and CA injector")
	Expect(certmanager.InstallCRDs(ctx, cfg)).To(Succeed())
	cmCtx, stopCertManager := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- certmanager.Run(cmCtx, cfg) }()
	DeferCleanup(func() {
		stopCertManager()
		Expect(<-done).To(Succeed())
	})

	By("installing the previous release, " + previousRelease[:7] + ", with its own manager")
	previous := checkout(ctx, previousRelease)
	install(ctx, previous)
	before = holdSandboxes(ctx)

	By("upgrading to this checkout: its config/default and its manager")
	manager.stop()
	install(ctx, repoRoot)
	DeferCleanup(func() { manager.stop() })
})

// install applies config/default from the tree at root, waits until
// cert-manager has issued its certificates, and starts that tree's manager
// under its ServiceAccount, serving the issued certificate.
func install(ctx context.Context, root string) {
	GinkgoHelper()
	apply(ctx, installManifests(root))
	Eventually(func(g Gomega) {
		for _, name := range []string{caCert, servingCert} {
			crt := &cmapi.Certificate{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: name}, crt)).To(Succeed())
			g.Expect(certmanager.Issued(crt)).To(BeTrue(), "Certificate %s: %v", name, crt.Status.Conditions)
		}
	}, timeout, interval).Should(Succeed())
	manager = startManager(ctx, root)
}

// checkout writes the repository's tree at commit into a new directory.
func checkout(ctx context.Context, commit string) string {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	archive := exec.CommandContext(ctx, "git", "-C", repoRoot, "archive", commit)
	extract := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	extract.Stdin = pipe
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	Expect(extract.Start()).To(Succeed())
	Expect(archive.Run()).To(Succeed(), "git archive %s (the upgrade starts from it; a shallow clone lacks it): %s", commit, stderr.String())
	Expect(extract.Wait()).To(Succeed())
	return dir
}

// installManifests renders config/default from the tree at root and
// changes only what a cluster with no container runtime needs (see the
// package comment).
func installManifests(root string) []byte {
	GinkgoHelper()
	rendered, err := exec.Command("kubectl", "kustomize", filepath.Join(root, "config", "default")).Output()
	Expect(err).NotTo(HaveOccurred())
	var out bytes.Buffer
	for _, doc := range strings.Split(string(rendered), "\n---\n") {
		obj := &unstructured.Unstructured{}
		Expect(yaml.Unmarshal([]byte(doc), &obj.Object)).To(Succeed())
		switch obj.GetKind() {
		case "Service":
			if obj.GetName() == webhookService {
				Expect(unstructured.SetNestedField(obj.Object, "ExternalName", "spec", "type")).To(Succeed())
				Expect(unstructured.SetNestedField(obj.Object, "localhost", "spec", "externalName")).To(Succeed())
			}
		case "Deployment":
			Expect(unstructured.SetNestedField(obj.Object, int64(0), "spec", "replicas")).To(Succeed())
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			webhooks, _, err := unstructured.NestedSlice(obj.Object, "webhooks")
			Expect(err).NotTo(HaveOccurred())
			for _, w := range webhooks {
				service := w.(map[string]any)["clientConfig"].(map[string]any)["service"].(map[string]any)
				Expect(service["name"]).To(Equal(webhookService), "every webhook is reached through the Service")
				service["port"] = int64(webhookPort)
			}
			Expect(unstructured.SetNestedSlice(obj.Object, webhooks, "webhooks")).To(Succeed())
		}
		data, err := yaml.Marshal(obj.Object)
		Expect(err).NotTo(HaveOccurred())
		fmt.Fprintf(&out, "---\n%s", data)
	}
	return out.Bytes()
}

// apply applies manifests with the real kubectl, server-side.
func apply(ctx context.Context, manifests []byte) {
	GinkgoHelper()
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-")
	cmd.Stdin = bytes.NewReader(manifests)
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
}

// cluster runs test/local/cluster.sh with the suite's settings.
func cluster(args ...string) string {
	GinkgoHelper()
	cmd := exec.Command(filepath.Join(repoRoot, "test", "local", "cluster.sh"), args...)
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

// get reads a URL on the manager, with a bearer token if one is given.
func get(url, token string, transport http.RoundTripper) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return (&http.Client{Transport: transport, Timeout: 10 * time.Second}).Do(req)
}

// serviceAccount returns a token for a new ServiceAccount in ns.
func serviceAccount(ctx context.Context, ns, name string) string {
	GinkgoHelper()
	out, err := kubectl(ctx, "-n", ns, "create", "serviceaccount", name)
	Expect(err).NotTo(HaveOccurred(), out)
	return token(ctx, ns, name)
}

func token(ctx context.Context, ns, name string) string {
	GinkgoHelper()
	out, err := kubectl(ctx, "-n", ns, "create", "token", name, "--duration", "1h")
	Expect(err).NotTo(HaveOccurred(), out)
	return strings.TrimSpace(out)
}

// secretOf reads a Secret of the operator's namespace.
func secretOf(ctx context.Context, g Gomega, name string) *corev1.Secret {
	secret := &corev1.Secret{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: name}, secret)).To(Succeed())
	return secret
}
