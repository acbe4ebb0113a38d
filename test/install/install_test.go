package install

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"github.com/sandboxset/warmpool/api/claim"
	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/certmanager"
)

var _ = Describe("The operator installed from config/default", Ordered, func() {
	It("was upgraded from the previous release without a write to any sandbox an agent held, and its pool keeps serving", func(ctx SpecContext) {
		Expect(before).To(HaveLen(2))
		for _, held := range before {
			pod := &corev1.Pod{}
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(&held), pod)).To(Succeed())
			Expect(pod.UID).To(Equal(held.UID))
			Expect(pod.ResourceVersion).To(Equal(held.ResourceVersion), "sandbox %s was written to", pod.Name)
		}
		sbs := &agentsv1alpha1.SandboxSet{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: before[0].Namespace, Name: "demo"}, sbs)).To(Succeed())
		expectAvailable(ctx, sbs, 3)
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
			g.Expect(sbs.Status.ObservedGeneration).To(Equal(sbs.Generation))
		}, timeout, interval).Should(Succeed(), "the new manager reconciles the pool the old one made")
		_, err := claim.New(k8sClient).Claim(ctx, sbs.Namespace, "demo", "agent-c", claim.ClaimOptions{})
		Expect(err).NotTo(HaveOccurred(), "a claim through the upgraded webhooks")
	})

	It("has cert-manager issue its serving certificate from the install's own CA, and inject that CA into both webhook configurations", func(ctx SpecContext) {
		serving := secretOf(ctx, Default, servingSecret)
		leaf, ca := parseCert(serving.Data[corev1.TLSCertKey]), parseCert(serving.Data["ca.crt"])
		Expect(ca.IsCA).To(BeTrue())
		Expect(ca.Subject.CommonName).To(Equal("sandboxset-webhook-ca"))
		Expect(verify(leaf, ca, webhookService+"."+operatorNamespace+".svc")).To(Succeed(), "the Service's DNS name, signed by the CA")
		Expect(verify(leaf, ca, webhookService+"."+operatorNamespace+".svc.cluster.local")).To(Succeed())
		Expect(serving.Data["ca.crt"]).To(Equal(secretOf(ctx, Default, "webhook-ca").Data[corev1.TLSCertKey]),
			"the trust anchor is the CA Certificate's, not the serving certificate's own")

		Eventually(func(g Gomega) { expectCABundle(ctx, g, serving.Data["ca.crt"]) }, timeout, interval).Should(Succeed())
		Eventually(func(g Gomega) []byte { return servedCertificate(g).Raw }, timeout, interval).Should(Equal(leaf.Raw),
			"the manager serves the issued certificate")
	})

	It("is reached by the API server through the webhook Service: it defaults and validates SandboxSets and judges claims", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		sbs := newSandboxSet(ns, "demo", 2)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		Expect(sbs.Spec.Template.Spec.AutomountServiceAccountToken).To(HaveValue(BeFalse()), "the mutating webhook defaulted the SandboxSet")
		Expect(sbs.Spec.Template.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelSandboxSet, "demo"))

		bad := newSandboxSet(ns, "bad", 1)
		bad.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
		err := k8sClient.Create(ctx, bad)
		Expect(err).To(MatchError(ContainSubstring(`admission webhook "vsandboxset.agents.kruise.io" denied the request`)))
		Expect(err).To(MatchError(ContainSubstring("spec.template.spec.restartPolicy")))

		expectAvailable(ctx, sbs, 2)
		sbx, err := claim.New(k8sClient).Claim(ctx, ns, "demo", "agent-1", claim.ClaimOptions{})
		Expect(err).NotTo(HaveOccurred())
		pod := &corev1.Pod{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: sbx.Name}, pod)).To(Succeed())
		Expect(pod.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelState, string(agentsv1alpha1.StateClaimed)))
		Expect(pod.Annotations).To(HaveKey(agentsv1alpha1.AnnotationClaimedByUser), "the claim webhook completed the claim")
		Expect(pod.OwnerReferences).To(BeEmpty(), "and released it from its pool")
	})

	It("serves metrics over HTTPS only to scrapers allowed to GET /metrics", func(ctx SpecContext) {
		url := fmt.Sprintf("https://127.0.0.1:%d/metrics", metricsPort)
		// The manager makes its own certificate for metrics; a scraper
		// proves who it is with its token, not the server.
		insecure := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // see above
		status := func(token string) func() (int, error) {
			return func() (int, error) {
				resp, err := get(url, token, insecure)
				if err != nil {
					return 0, err
				}
				defer resp.Body.Close()
				return resp.StatusCode, nil
			}
		}
		Eventually(status(""), timeout, interval).Should(Equal(http.StatusUnauthorized), "no token")
		ns := newNamespace(ctx)
		Eventually(status(serviceAccount(ctx, ns, "nosy")), timeout, interval).Should(Equal(http.StatusForbidden), "a token without the metrics-reader role")

		scraper := serviceAccount(ctx, ns, "prometheus")
		out, err := kubectl(ctx, "create", "clusterrolebinding", "prometheus-"+ns, "--clusterrole=sandboxset-metrics-reader", "--serviceaccount="+ns+":prometheus")
		Expect(err).NotTo(HaveOccurred(), out)
		DeferCleanup(kubectl, context.Background(), "delete", "clusterrolebinding", "prometheus-"+ns)
		Eventually(status(scraper), timeout, interval).Should(Equal(http.StatusOK), "a token bound to sandboxset-metrics-reader")
		resp, err := get(url, scraper, insecure)
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(body)).To(ContainSubstring("sandboxset_desired_sandboxes"))
	})

	It("renews the serving certificate under 20 claims/s with no failed admission, then the CA, and counts what that costs", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		sbs := newSandboxSet(ns, "demo", 30)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectAvailable(ctx, sbs, 30)
		load := startClaims(ns, "demo", 20)

		By("renewing the serving certificate")
		before := secretOf(ctx, Default, servingSecret)
		oldLeaf, oldCA := parseCert(before.Data[corev1.TLSCertKey]), before.Data["ca.crt"]
		Expect(certmanager.Renew(ctx, k8sClient, client.ObjectKey{Namespace: operatorNamespace, Name: servingCert})).To(Succeed())
		Eventually(func(g Gomega) {
			served := servedCertificate(g)
			g.Expect(served.SerialNumber).NotTo(Equal(oldLeaf.SerialNumber), "the manager serves the renewed certificate")
			g.Expect(verify(served, parseCert(oldCA), webhookService+"."+operatorNamespace+".svc")).To(Succeed(), "from the same CA")
		}, timeout, interval).Should(Succeed())
		waitIssued(ctx, servingCert)
		load.waitFor(40) // claims admitted with the new certificate
		servingRenewal := load.cut()
		AddReportEntry("serving certificate renewal under load", servingRenewal.String())
		Expect(servingRenewal.failed).To(BeEmpty(), "no admission fails across a serving certificate renewal")

		By("renewing the CA, then the serving certificate under it")
		oldCALeaf := parseCert(secretOf(ctx, Default, "webhook-ca").Data[corev1.TLSCertKey])
		Expect(certmanager.Renew(ctx, k8sClient, client.ObjectKey{Namespace: operatorNamespace, Name: caCert})).To(Succeed())
		Eventually(func(g Gomega) {
			newCA := secretOf(ctx, g, "webhook-ca").Data[corev1.TLSCertKey]
			g.Expect(parseCert(newCA).SerialNumber).NotTo(Equal(oldCALeaf.SerialNumber))
		}, timeout, interval).Should(Succeed())
		waitIssued(ctx, caCert)
		newCA := settledCert(ctx, "webhook-ca")
		Expect(certmanager.Renew(ctx, k8sClient, client.ObjectKey{Namespace: operatorNamespace, Name: servingCert})).To(Succeed())
		Eventually(func(g Gomega) {
			// The CA injector adds the new CA and keeps the old one until
			// it expires, so certificates from either are trusted.
			expectCABundle(ctx, g, oldCA, newCA)
			g.Expect(verify(servedCertificate(g), parseCert(newCA), webhookService+"."+operatorNamespace+".svc")).To(Succeed())
		}, timeout, interval).Should(Succeed(), "the API server trusts the new CA and the manager serves a certificate from it")
		load.waitFor(40)
		caRenewal := load.cut()
		AddReportEntry("CA renewal under load", caRenewal.String())
		total := load.stop()
		Expect(total.doubles).To(BeEmpty(), "no sandbox is claimed twice")
		Expect(total.admitted).To(BeNumerically(">=", 80))
		for _, err := range caRenewal.failed {
			Expect(err.Error()).To(ContainSubstring("failed calling webhook"), "a failure in the CA switch is the webhook's TLS, nothing else")
		}
	})
})

// holdSandboxes makes a pool of 3 and has two agents claim from it, and
// returns their sandboxes as stored.
func holdSandboxes(ctx context.Context) []corev1.Pod {
	GinkgoHelper()
	ns := newNamespace(ctx)
	sbs := newSandboxSet(ns, "demo", 3)
	Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
	expectAvailable(ctx, sbs, 3)
	var names []string
	for _, agent := range []string{"agent-a", "agent-b"} {
		sbx, err := claim.New(k8sClient).Claim(ctx, ns, "demo", agent, claim.ClaimOptions{})
		Expect(err).NotTo(HaveOccurred())
		names = append(names, sbx.Name)
	}
	expectAvailable(ctx, sbs, 3) // refilled: the controller is done with them
	held := make([]corev1.Pod, len(names))
	for i, name := range names {
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &held[i])).To(Succeed())
	}
	return held
}

// waitIssued waits until cert-manager has finished issuing a Certificate: a
// renewal asked for before then would be absorbed by that issuance.
func waitIssued(ctx context.Context, name string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		crt := &cmapi.Certificate{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: operatorNamespace, Name: name}, crt)).To(Succeed())
		g.Expect(certmanager.Issued(crt)).To(BeTrue(), "Certificate %s: %v", name, crt.Status.Conditions)
	}, timeout, interval).Should(Succeed())
}

// settledCert waits until a Secret's tls.crt has stayed the same for a
// second and returns it. cert-manager can issue once more right after an
// issuance (see test/certmanager's waitIssued); a step that took the
// certificate before that would wait for the wrong one.
func settledCert(ctx context.Context, secret string) []byte {
	GinkgoHelper()
	var last []byte
	var since time.Time
	Eventually(func(g Gomega) {
		now := secretOf(ctx, g, secret).Data[corev1.TLSCertKey]
		if !bytes.Equal(now, last) {
			last, since = now, time.Now()
		}
		g.Expect(time.Since(since)).To(BeNumerically(">=", time.Second), "Secret %s changed %v ago", secret, time.Since(since))
	}, timeout, interval).Should(Succeed())
	return last
}

// claimLoad claims from a pool at a steady rate and deletes each claimed
// sandbox again, counting admitted and failed claims per phase.
type claimLoad struct {
	stopLoad func()
	done     chan struct{}

	mu      sync.Mutex
	phase   loadPhase
	total   loadPhase
	claimed map[string]bool
}

type loadPhase struct {
	// Empty pools and lost races are contention among the agents, not
	// failures of the install.
	admitted, empty, lost int
	failed                []error
	doubles               []string
}

func (p loadPhase) String() string {
	first := ""
	if len(p.failed) > 0 {
		first = "; first: " + p.failed[0].Error()
	}
	return fmt.Sprintf("%d claims admitted, %d failed, %d found the pool empty, %d lost every race%s", p.admitted, len(p.failed), p.empty, p.lost, first)
}

func startClaims(ns, pool string, perSecond int) *claimLoad {
	ctx, stop := context.WithCancel(context.Background())
	l := &claimLoad{stopLoad: stop, done: make(chan struct{}), claimed: map[string]bool{}}
	agents := claim.New(k8sClient)
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				wg.Wait()
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				sbx, err := agents.Claim(ctx, ns, pool, fmt.Sprintf("agent-%d", i), claim.ClaimOptions{Wait: 2 * time.Second})
				l.record(sbx, err)
				if err == nil {
					_ = k8sClient.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sbx.Name}})
				}
			}()
		}
	}()
	return l
}

func (l *claimLoad) record(sbx *claim.Sandbox, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil && l.claimed[sbx.Name]:
		l.phase.doubles = append(l.phase.doubles, sbx.Name)
	case err == nil:
		l.claimed[sbx.Name] = true
		l.phase.admitted++
	case errors.Is(err, context.Canceled):
	case errors.Is(err, claim.ErrPoolEmpty):
		l.phase.empty++
	case errors.Is(err, claim.ErrLostRaces):
		l.phase.lost++
	default:
		l.phase.failed = append(l.phase.failed, err)
	}
}

// waitFor waits until n more claims are admitted in this phase.
func (l *claimLoad) waitFor(n int) {
	GinkgoHelper()
	l.mu.Lock()
	target := l.phase.admitted + n
	l.mu.Unlock()
	Eventually(func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.phase.admitted
	}, timeout, interval).Should(BeNumerically(">=", target))
}

// cut ends a phase and returns it.
func (l *claimLoad) cut() loadPhase {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.phase
	l.total.admitted += p.admitted
	l.total.empty += p.empty
	l.total.lost += p.lost
	l.total.failed = append(l.total.failed, p.failed...)
	l.total.doubles = append(l.total.doubles, p.doubles...)
	l.phase = loadPhase{}
	return p
}

func (l *claimLoad) stop() loadPhase {
	l.stopLoad()
	<-l.done
	l.cut()
	return l.total
}

func parseCert(data []byte) *x509.Certificate {
	GinkgoHelper()
	block, _ := pem.Decode(data)
	Expect(block).NotTo(BeNil(), "a PEM certificate")
	cert, err := x509.ParseCertificate(block.Bytes)
	Expect(err).NotTo(HaveOccurred())
	return cert
}

func verify(leaf, ca *x509.Certificate, dnsName string) error {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: dnsName, Roots: roots})
	return err
}

// expectCABundle checks that every webhook of both configurations trusts
// exactly these CAs, in this order.
func expectCABundle(ctx context.Context, g Gomega, cas ...[]byte) {
	var want [][]byte
	for _, ca := range cas {
		want = append(want, parseCert(ca).Raw)
	}
	mutating := &admissionv1.MutatingWebhookConfiguration{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "sandboxset-mutating-webhook-configuration"}, mutating)).To(Succeed())
	validating := &admissionv1.ValidatingWebhookConfiguration{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "sandboxset-validating-webhook-configuration"}, validating)).To(Succeed())
	bundles := map[string][]byte{}
	for _, w := range mutating.Webhooks {
		bundles[w.Name] = w.ClientConfig.CABundle
	}
	for _, w := range validating.Webhooks {
		bundles[w.Name] = w.ClientConfig.CABundle
	}
	g.Expect(bundles).To(HaveLen(6), "the operator's six webhooks")
	for name, bundle := range bundles {
		var got [][]byte
		for block, rest := pem.Decode(bundle); block != nil; block, rest = pem.Decode(rest) {
			got = append(got, block.Bytes)
		}
		g.Expect(got).To(Equal(want), "the CAs webhook %s trusts", name)
	}
}

func newNamespace(ctx context.Context) string {
	GinkgoHelper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "install-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	DeferCleanup(func(ctx context.Context) {
		Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, ns))).To(Succeed())
	})
	return ns.Name
}

func newSandboxSet(ns, name string, replicas int32) *agentsv1alpha1.SandboxSet {
	return &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: agentsv1alpha1.SandboxSetSpec{
			Replicas: ptr.To(replicas),
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sandbox", Image: "nginx:alpine"}}},
			},
		},
	}
}

// expectAvailable waits until the pool's status counts n available sandboxes.
func expectAvailable(ctx context.Context, sbs *agentsv1alpha1.SandboxSet, n int32) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		got := &agentsv1alpha1.SandboxSet{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(sbs), got)).To(Succeed())
		g.Expect(got.Status.AvailableReplicas).To(Equal(n))
	}, timeout, interval).Should(Succeed())
}
