package certmanager_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"

	"github.com/sandboxset/warmpool/test/certmanager"
)

const (
	namespace = "ns"
	// serving is the webhook serving Certificate, named like the Service
	// whose DNS names it covers.
	serving = "svc"
	ca      = "ca"
)

var dnsNames = []string{"svc.ns.svc", "svc.ns.svc.cluster.local"}

// TestIssueInjectRenew runs cert-manager against a real API server and walks
// what an install of our webhooks relies on: a CA chain, a serving
// certificate, CA injection into webhook configurations, and renewals.
func TestIssueInjectRenew(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is unset: point it at $(test/tools/build.sh --dir) after 'test/tools/build.sh envtest'")
	}
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	g.SetDefaultConsistentlyDuration(2 * time.Second)
	g.SetDefaultConsistentlyPollingInterval(100 * time.Millisecond)
	log := testLogger()
	ctrl.SetLogger(log)
	lap := stopwatch(t)

	env := &envtest.Environment{}
	cfg, err := env.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { g.Expect(env.Stop()).To(Succeed()) })
	cfg.QPS, cfg.Burst = 1000, 2000
	lap("start the API server")

	ctx := t.Context()
	g.Expect(certmanager.InstallCRDs(ctx, cfg)).To(Succeed())
	lap("install cert-manager's CRDs")

	runCtx, stop := context.WithCancel(logr.NewContext(context.Background(), log))
	done := make(chan error, 1)
	go func() { done <- certmanager.Run(runCtx, cfg) }()
	t.Cleanup(func() {
		stop()
		g.Expect(<-done).To(Succeed(), "cert-manager stopped on an error")
	})

	scheme := runtime.NewScheme()
	g.Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	g.Expect(cmapi.AddToScheme(scheme)).To(Succeed())
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())

	// The whole chain at once, as an install applies it; the controllers
	// order the work themselves.
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())
	for _, obj := range []client.Object{
		issuer("selfsigned", cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}),
		certificate(ca, "selfsigned", func(spec *cmapi.CertificateSpec) {
			spec.IsCA = true
			spec.CommonName = "warmpool test CA"
		}),
		issuer(ca, cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: ca}}),
		certificate(serving, ca, func(spec *cmapi.CertificateSpec) {
			spec.DNSNames = dnsNames
			spec.Usages = []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageServerAuth}
		}),
	} {
		g.Expect(c.Create(ctx, obj)).To(Succeed())
	}

	caV1 := waitIssued(g, c, ca, nil)
	g.Expect(caV1.leaf.IsCA).To(BeTrue())
	g.Expect(caV1.ca.Equal(caV1.leaf)).To(BeTrue(), "a self-signed CA's ca.crt is itself")
	lap("issue the CA certificate (SelfSigned)")

	leafV1 := waitIssued(g, c, serving, nil)
	expectServing(g, leafV1, caV1.leaf)
	lap("issue the serving certificate (CA)")

	validating, mutating := createWebhookConfigurations(g, c)
	expectInjected(g, c, validating, mutating, caV1.leaf)
	lap("inject ca.crt into both webhook configurations")

	g.Expect(certmanager.Renew(context.Background(), c, key(serving))).To(Succeed())
	leafV2 := waitIssued(g, c, serving, leafV1.leaf)
	expectServing(g, leafV2, caV1.leaf)
	expectInjected(g, c, validating, mutating, caV1.leaf)
	lap("renew the serving certificate; caBundle unchanged")

	g.Expect(certmanager.Renew(context.Background(), c, key(ca))).To(Succeed())
	caV2 := waitIssued(g, c, ca, caV1.leaf)
	g.Expect(caV2.leaf.RawSubjectPublicKeyInfo).NotTo(Equal(caV1.leaf.RawSubjectPublicKeyInfo), "the CA rotates its key on renewal")
	lap("renew the CA certificate")

	// cert-manager has no trigger for "the issuer's CA changed": the serving
	// certificate, its ca.crt and so the injected caBundle stay on the old
	// CA, which is still valid; only renewing the serving certificate moves
	// them.
	g.Consistently(func(g Gomega) {
		got := read(g, c, serving)
		g.Expect(got.leaf.Equal(leafV2.leaf)).To(BeTrue(), "cert-manager re-issued the serving certificate on CA renewal by itself")
		g.Expect(got.ca.Equal(caV1.leaf)).To(BeTrue(), "ca.crt moved to the new CA without a new leaf")
		expectInjectedNow(g, c, validating, mutating, caV1.leaf)
	}).Should(Succeed())
	g.Expect(verify(leafV2.leaf, caV2.leaf, dnsNames[0])).NotTo(Succeed(), "the old leaf must not chain to the new CA")
	lap("observe: no automatic re-issue on CA renewal")

	g.Expect(certmanager.Renew(context.Background(), c, key(serving))).To(Succeed())
	leafV3 := waitIssued(g, c, serving, leafV2.leaf)
	expectServing(g, leafV3, caV2.leaf)
	// The injector merges (feature CAInjectorMerging, on by default): the
	// new CA is appended and the old one stays until it expires, so clients
	// trust the old leaf and the new one alike during the switch.
	expectInjected(g, c, validating, mutating, caV1.leaf, caV2.leaf)
	lap("renew the serving certificate; caBundle gains the new CA")
}

// bundle is a Certificate's Secret, parsed.
type bundle struct {
	leaf *x509.Certificate
	ca   *x509.Certificate
}

func issuer(name string, config cmapi.IssuerConfig) *cmapi.Issuer {
	return &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       cmapi.IssuerSpec{IssuerConfig: config},
	}
}

// certificate is an ECDSA P-256 Certificate from the named Issuer, stored
// in a Secret of its own name.
func certificate(name, issuer string, customize func(*cmapi.CertificateSpec)) *cmapi.Certificate {
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: cmapi.CertificateSpec{
			SecretName: name,
			IssuerRef:  cmmeta.IssuerReference{Kind: cmapi.IssuerKind, Name: issuer},
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
		},
	}
	customize(&crt.Spec)
	return crt
}

// waitIssued waits until the Certificate is issued with a Secret that holds
// a certificate other than previous and has held it for settleTime, and
// returns that Secret parsed. cert-manager's controllers act on informer
// caches that lag one another, and CI once saw a serving certificate issued
// again within 0.3 s of a renewal, with nothing asking for it; settling lets
// such an extra leaf land before the next step, which would misread it.
func waitIssued(g *WithT, c client.Client, name string, previous *x509.Certificate) bundle {
	var got bundle
	var since time.Time
	g.Eventually(func(g Gomega) {
		crt := &cmapi.Certificate{}
		g.Expect(c.Get(context.Background(), key(name), crt)).To(Succeed())
		// The Secret is written before Issuing is cleared; a renewal
		// requested in between would be swallowed by this issuance.
		g.Expect(certmanager.Issued(crt)).To(BeTrue(), "Ready and no longer issuing: %v", crt.Status.Conditions)
		now := read(g, c, name)
		if previous != nil {
			g.Expect(now.leaf.SerialNumber).NotTo(Equal(previous.SerialNumber), "not re-issued yet")
		}
		if got.leaf == nil || !now.leaf.Equal(got.leaf) {
			got, since = now, time.Now()
		}
		g.Expect(time.Since(since)).To(BeNumerically(">=", settleTime), "issued %v ago, not settled yet", time.Since(since))
	}).Should(Succeed(), "Certificate %s", name)
	return got
}

// settleTime is how long a Secret must keep its leaf for waitIssued.
const settleTime = time.Second

// read parses the Certificate's Secret: tls.crt, tls.key and ca.crt.
func read(g Gomega, c client.Client, name string) bundle {
	secret := &corev1.Secret{}
	g.Expect(c.Get(context.Background(), key(name), secret)).To(Succeed())
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, cmmeta.TLSCAKey} {
		g.Expect(secret.Data).To(HaveKeyWithValue(k, Not(BeEmpty())), "Secret %s", name)
	}
	pair, err := tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	g.Expect(err).NotTo(HaveOccurred(), "tls.crt and tls.key of Secret %s", name)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	g.Expect(err).NotTo(HaveOccurred())
	cas := parsePEM(g, secret.Data[cmmeta.TLSCAKey])
	g.Expect(cas).To(HaveLen(1), "ca.crt of Secret %s", name)
	return bundle{leaf: leaf, ca: cas[0]}
}

// expectServing checks a serving certificate: ECDSA P-256 for our DNS names,
// chaining to its ca.crt, which is the CA Certificate's own certificate.
func expectServing(g *WithT, b bundle, caCert *x509.Certificate) {
	pub, ok := b.leaf.PublicKey.(*ecdsa.PublicKey)
	g.Expect(ok).To(BeTrue(), "public key is %T", b.leaf.PublicKey)
	g.Expect(pub.Curve).To(Equal(elliptic.P256()))
	g.Expect(b.leaf.DNSNames).To(ConsistOf(dnsNames))
	g.Expect(b.ca.Equal(caCert)).To(BeTrue(), "ca.crt is not the CA Certificate's certificate")
	for _, name := range dnsNames {
		g.Expect(verify(b.leaf, b.ca, name)).To(Succeed())
	}
}

func verify(leaf, root *x509.Certificate, dnsName string) error {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	_, err := leaf.Verify(x509.VerifyOptions{DNSName: dnsName, Roots: roots})
	return err
}

// createWebhookConfigurations creates a validating and a mutating webhook
// configuration, two webhooks each, asking for the serving certificate's CA.
// Their rules match nothing, so the missing Service never matters.
func createWebhookConfigurations(g *WithT, c client.Client) (validating, mutating string) {
	meta := metav1.ObjectMeta{
		Name:        "warmpool-test",
		Annotations: map[string]string{cmapi.WantInjectAnnotation: namespace + "/" + serving},
	}
	clientConfig := admissionv1.WebhookClientConfig{
		Service: &admissionv1.ServiceReference{Namespace: namespace, Name: serving, Path: ptr.To("/hook")},
	}
	rules := []admissionv1.RuleWithOperations{{
		Operations: []admissionv1.OperationType{admissionv1.Create},
		Rule:       admissionv1.Rule{APIGroups: []string{"example.test"}, APIVersions: []string{"v1"}, Resources: []string{"widgets"}},
	}}
	none := ptr.To(admissionv1.SideEffectClassNone)
	v := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: meta}
	m := &admissionv1.MutatingWebhookConfiguration{ObjectMeta: meta}
	for _, name := range []string{"a.warmpool.test", "b.warmpool.test"} {
		v.Webhooks = append(v.Webhooks, admissionv1.ValidatingWebhook{
			Name: name, ClientConfig: clientConfig, Rules: rules, SideEffects: none, AdmissionReviewVersions: []string{"v1"},
		})
		m.Webhooks = append(m.Webhooks, admissionv1.MutatingWebhook{
			Name: name, ClientConfig: clientConfig, Rules: rules, SideEffects: none, AdmissionReviewVersions: []string{"v1"},
		})
	}
	g.Expect(c.Create(context.Background(), v)).To(Succeed())
	g.Expect(c.Create(context.Background(), m)).To(Succeed())
	return v.Name, m.Name
}

// expectInjected waits until every webhook in both configurations has
// exactly the CA certificates cas, in order, as its caBundle.
func expectInjected(g *WithT, c client.Client, validating, mutating string, cas ...*x509.Certificate) {
	g.Eventually(func(g Gomega) {
		expectInjectedNow(g, c, validating, mutating, cas...)
	}).Should(Succeed())
}

func expectInjectedNow(g Gomega, c client.Client, validating, mutating string, cas ...*x509.Certificate) {
	var want []string
	for _, ca := range cas {
		want = append(want, ca.SerialNumber.String())
	}
	serials := func(caBundle []byte) []string {
		var got []string
		for _, cert := range parsePEM(g, caBundle) {
			got = append(got, cert.SerialNumber.String())
		}
		return got
	}
	v := &admissionv1.ValidatingWebhookConfiguration{}
	g.Expect(c.Get(context.Background(), types.NamespacedName{Name: validating}, v)).To(Succeed())
	for _, hook := range v.Webhooks {
		g.Expect(serials(hook.ClientConfig.CABundle)).To(Equal(want), "serials in validating webhook %s's caBundle", hook.Name)
	}
	m := &admissionv1.MutatingWebhookConfiguration{}
	g.Expect(c.Get(context.Background(), types.NamespacedName{Name: mutating}, m)).To(Succeed())
	for _, hook := range m.Webhooks {
		g.Expect(serials(hook.ClientConfig.CABundle)).To(Equal(want), "serials in mutating webhook %s's caBundle", hook.Name)
	}
}

// parsePEM parses every certificate in a PEM bundle, which must hold
// nothing else.
func parsePEM(g Gomega, data []byte) []*x509.Certificate {
	var certs []*x509.Certificate
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			g.Expect(bytes.TrimSpace(rest)).To(BeEmpty(), "trailing data after the PEM certificates")
			return certs
		}
		g.Expect(block.Type).To(Equal("CERTIFICATE"))
		cert, err := x509.ParseCertificate(block.Bytes)
		g.Expect(err).NotTo(HaveOccurred())
		certs = append(certs, cert)
		data = rest
	}
}

func key(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: namespace, Name: name}
}

// stopwatch logs each step's duration, to keep an eye on the suite's budget.
func stopwatch(t *testing.T) func(step string) {
	start := time.Now()
	last := start
	return func(step string) {
		now := time.Now()
		t.Logf("%-55s %5.2fs (total %5.2fs)", step, now.Sub(last).Seconds(), now.Sub(start).Seconds())
		last = now
	}
}

// testLogger is silent unless CERTMANAGER_LOG=N asks for logs up to
// verbosity N (cert-manager: 2 info, 4 debug, 5 trace): cert-manager logs
// routine conflicts and waits as errors, with stack traces.
func testLogger() logr.Logger {
	v, err := strconv.Atoi(os.Getenv("CERTMANAGER_LOG"))
	if err != nil {
		return logr.Discard()
	}
	return zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr), zap.Level(zapcore.Level(-v)))
}
