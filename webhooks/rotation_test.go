package webhooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sandboxset/warmpool/certs"
)

// A rotation of the webhook serving certificate, as cert-manager does it:
// the API server keeps calling the webhooks, which serve the new certificate
// without a restart (controller-runtime's certwatcher).
var _ = Describe("The webhook serving certificate", Serial, func() {
	It("rotates under admission traffic with no failed request", func(ctx SpecContext) {
		install := testEnv.WebhookInstallOptions
		address := net.JoinHostPort(install.LocalServingHost, strconv.Itoa(install.LocalServingPort))
		before := servedCertificate(address)

		By("trusting a new CA beside the old one, as cert-manager's CA injector would")
		fresh := GinkgoT().TempDir()
		Expect(certs.SelfSigned(fresh, []string{"localhost"}, []net.IP{net.ParseIP(install.LocalServingHost)}, time.Hour)).To(Succeed())
		newCA, err := os.ReadFile(filepath.Join(fresh, certs.CAName))
		Expect(err).NotTo(HaveOccurred())
		bundle := append(append([]byte{}, install.LocalServingCAData...), newCA...)
		setCABundles(ctx, bundle)

		By("admitting SandboxSets all the while")
		ns := newNamespace(ctx)
		stop, failures := make(chan struct{}), make(chan error, 1000)
		admitted := make(chan int, 1)
		go func() {
			defer GinkgoRecover()
			n := 0
			for i := 0; ; i++ {
				select {
				case <-stop:
					admitted <- n
					return
				default:
				}
				if err := adminClient.Create(ctx, newSandboxSet(ns, fmt.Sprintf("rotation-%d", i), 0)); err != nil {
					failures <- err
				} else {
					n++
				}
			}
		}()

		By("replacing the serving pair on disk")
		for _, name := range []string{certs.CertName, certs.KeyName} {
			data, err := os.ReadFile(filepath.Join(fresh, name))
			Expect(err).NotTo(HaveOccurred())
			// Written beside and renamed, as a kubelet updates a mounted Secret.
			tmp := filepath.Join(install.LocalServingCertDir, "."+name+".tmp")
			Expect(os.WriteFile(tmp, data, 0o600)).To(Succeed())
			Expect(os.Rename(tmp, filepath.Join(install.LocalServingCertDir, name))).To(Succeed())
		}
		Eventually(func() []byte { return servedCertificate(address) }, timeout, interval).ShouldNot(Equal(before), "the webhook serves the new certificate")
		Consistently(func() []byte { return servedCertificate(address) }, time.Second, interval).ShouldNot(Equal(before))
		close(stop)
		n := <-admitted
		close(failures)
		for err := range failures {
			Fail(fmt.Sprintf("an admission failed during the rotation: %v", err))
		}
		AddReportEntry("SandboxSets admitted across the rotation", n)
		Expect(n).To(BeNumerically(">", 0))
	})
})

// servedCertificate is the leaf certificate the webhook server presents.
func servedCertificate(address string) []byte {
	GinkgoHelper()
	conn, err := tls.Dial("tcp", address, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the served certificate
	Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	return bytes.Clone(conn.ConnectionState().PeerCertificates[0].Raw)
}

// setCABundles sets the caBundle of every webhook the suite installed.
func setCABundles(ctx context.Context, bundle []byte) {
	GinkgoHelper()
	for _, name := range []string{"mutating-webhook-configuration", "validating-webhook-configuration"} {
		Eventually(func(g Gomega) {
			var obj client.Object
			if name == "mutating-webhook-configuration" {
				m := &admissionregistrationv1.MutatingWebhookConfiguration{}
				g.Expect(adminClient.Get(ctx, client.ObjectKey{Name: name}, m)).To(Succeed())
				for i := range m.Webhooks {
					m.Webhooks[i].ClientConfig.CABundle = bundle
				}
				obj = m
			} else {
				v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
				g.Expect(adminClient.Get(ctx, client.ObjectKey{Name: name}, v)).To(Succeed())
				for i := range v.Webhooks {
					v.Webhooks[i].ClientConfig.CABundle = bundle
				}
				obj = v
			}
			g.Expect(adminClient.Update(ctx, obj)).To(Succeed())
		}, timeout, interval).Should(Succeed())
	}
}
