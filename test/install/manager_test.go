package install

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// localManager is the operator's manager as a local process, as the
// Deployment in config/default would run it: its ServiceAccount's
// identity and RBAC, and the certificate cert-manager issued, kept in step
// with the Secret as the kubelet keeps a mounted Secret volume.
type localManager struct {
	cmd      *exec.Cmd
	log      string
	certDir  string
	stopSync context.CancelFunc
}

// startManager builds the manager from the tree at root and starts it.
func startManager(ctx context.Context, root string) *localManager {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	m := &localManager{log: filepath.Join(dir, "manager.log"), certDir: filepath.Join(dir, "certs")}
	Expect(os.Mkdir(m.certDir, 0o700)).To(Succeed())
	binary := filepath.Join(dir, "manager")
	build := exec.CommandContext(ctx, "go", "build", "-o", binary, "./cmd/manager")
	build.Dir = root
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))

	syncCtx, stop := context.WithCancel(context.Background())
	m.stopSync = stop
	synced := make(chan struct{})
	go m.syncCerts(syncCtx, synced)
	Eventually(synced, timeout).Should(BeClosed(), "the serving certificate is written from its Secret")

	logFile, err := os.Create(m.log)
	Expect(err).NotTo(HaveOccurred())
	m.cmd = exec.Command(binary, "--kubeconfig", managerKubeconfig(ctx, dir),
		"--leader-elect=false",
		"--webhook-host=127.0.0.1", "--webhook-port="+strconv.Itoa(webhookPort), "--webhook-cert-dir="+m.certDir,
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(metricsPort), "--metrics-secure",
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(probePort))
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	Expect(m.cmd.Start()).To(Succeed())
	Eventually(func() (int, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort)) //nolint:noctx // a loopback probe
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}, timeout, interval).Should(Equal(http.StatusOK), "the manager becomes ready; its log is %s", m.log)
	return m
}

func (m *localManager) stop() {
	m.stopSync()
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	_ = m.cmd.Wait()
	if CurrentSpecReport().Failed() {
		out, _ := exec.Command("tail", "-n", "80", m.log).Output()
		GinkgoWriter.Printf("\n$ tail -n 80 %s\n%s", m.log, out)
	}
}

// syncCerts writes the serving Secret's key pair into certDir whenever it
// changes, each file replaced whole, and closes synced after the first write.
func (m *localManager) syncCerts(ctx context.Context, synced chan struct{}) {
	defer GinkgoRecover()
	first := true
	for ctx.Err() == nil {
		w, err := k8sClient.Watch(ctx, &corev1.SecretList{}, client.InNamespace(operatorNamespace),
			client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", servingSecret)})
		if err != nil {
			time.Sleep(interval) // the API server is not answering; retry
			continue
		}
		for event := range w.ResultChan() {
			secret, ok := event.Object.(*corev1.Secret)
			if !ok || len(secret.Data[corev1.TLSCertKey]) == 0 {
				continue
			}
			for _, name := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
				tmp := filepath.Join(m.certDir, "."+name)
				Expect(os.WriteFile(tmp, secret.Data[name], 0o600)).To(Succeed())
				Expect(os.Rename(tmp, filepath.Join(m.certDir, name))).To(Succeed())
			}
			if first {
				close(synced)
				first = false
			}
		}
		w.Stop()
	}
}

// managerKubeconfig is a kubeconfig with the manager's ServiceAccount token.
func managerKubeconfig(ctx context.Context, dir string) string {
	GinkgoHelper()
	admin, err := clientcmd.LoadFromFile(kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	cluster := admin.Clusters[admin.Contexts[admin.CurrentContext].Cluster]
	config := clientcmdapi.NewConfig()
	config.Clusters["local"] = cluster
	config.AuthInfos["manager"] = &clientcmdapi.AuthInfo{Token: token(ctx, operatorNamespace, managerAccount)}
	config.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "manager"}
	config.CurrentContext = "local"
	path := filepath.Join(dir, "manager.kubeconfig")
	Expect(clientcmd.WriteToFile(*config, path)).To(Succeed())
	return path
}

// servedCertificate is the leaf the manager's webhook server presents now.
func servedCertificate(g Gomega) *x509.Certificate {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort)),
		&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads what is served; verification is the API server's job here
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}
