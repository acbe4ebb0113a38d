package webhooks

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/envtestenv"
)

var _ = Describe("SandboxSet admission", func() {
	DescribeTable("refuses a bad SandboxSet at create, naming the field",
		func(ctx SpecContext, mutate func(*agentsv1alpha1.SandboxSet), wantField, wantMessage string) {
			sbs := newSandboxSet(newNamespace(ctx), "demo", 1)
			mutate(sbs)
			err := adminClient.Create(ctx, sbs)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want an Invalid error, got %v", err)
			Expect(err.Error()).To(ContainSubstring(wantField))
			Expect(err.Error()).To(ContainSubstring(wantMessage))
		},
		Entry("no containers", func(s *agentsv1alpha1.SandboxSet) { s.Spec.Template.Spec.Containers = []corev1.Container{} },
			"spec.template.spec.containers", "a sandbox needs at least one container"),
		Entry("duplicate container names", func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.Template.Spec.Containers = append(s.Spec.Template.Spec.Containers, s.Spec.Template.Spec.Containers[0])
		}, "spec.template.spec.containers[1]", "Duplicate value"),
		Entry("an init container named like a container", func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "sandbox", Image: "busybox"}}
		}, "spec.template.spec.containers[0].name", "Duplicate value"),
		Entry("an invalid container name", func(s *agentsv1alpha1.SandboxSet) { s.Spec.Template.Spec.Containers[0].Name = "Web_1" },
			"spec.template.spec.containers[0].name", "RFC 1123"),
		Entry("an empty image", func(s *agentsv1alpha1.SandboxSet) { s.Spec.Template.Spec.Containers[0].Image = " " },
			"spec.template.spec.containers[0].image", "every container needs an image"),
		Entry("a restart policy other than Always", func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
		}, "spec.template.spec.restartPolicy", `supported values: "Always"`),
		Entry("a template label in the operator's namespace", func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.Template.Labels = map[string]string{agentsv1alpha1.LabelState: "available"}
		}, "spec.template.metadata.labels[agents.kruise.io/state]", "set by the operator"),
		Entry("a template annotation in the operator's namespace", func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.Template.Annotations = map[string]string{agentsv1alpha1.AnnotationClaimedAt: "now"}
		}, "spec.template.metadata.annotations[agents.kruise.io/claimed-at]", "set by the operator"),
		Entry("more replicas than the ceiling", func(s *agentsv1alpha1.SandboxSet) { s.Spec.Replicas = ptr.To[int32](testMaxReplicas + 1) },
			"spec.replicas", "must be at most 100"),
		Entry("negative replicas", func(s *agentsv1alpha1.SandboxSet) { s.Spec.Replicas = ptr.To[int32](-1) },
			".spec.replicas", "should be a non-negative integer"),
		Entry("an unknown persistent content", func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.PersistentContents = []agentsv1alpha1.PersistentContent{"gpu"}
		}, "spec.persistentContents[0]", `supported values: "ip", "memory", "filesystem"`),
		Entry("a name too long for its Pods", func(s *agentsv1alpha1.SandboxSet) { s.Name = strings.Repeat("a", 58) },
			"metadata.name", "must be at most 57 characters"),
		Entry("an invalid maxUnavailable", func(s *agentsv1alpha1.SandboxSet) {
			s.Spec.UpdateStrategy.MaxUnavailable = ptr.To(intstr.FromString("half"))
		}, "spec.updateStrategy.maxUnavailable", "percentage"),
	)

	It("fills in defaults, so that equivalent specs share a revision", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		sbs := newSandboxSet(ns, "demo", 0)
		sbs.Spec.PersistentContents = []agentsv1alpha1.PersistentContent{"memory", "ip", "ip"}
		Expect(adminClient.Create(ctx, sbs)).To(Succeed())
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
		Expect(sbs.Spec.Template.Labels).To(HaveKeyWithValue(agentsv1alpha1.LabelSandboxSet, "demo"))
		Expect(sbs.Spec.UpdateStrategy.MaxUnavailable).To(HaveValue(Equal(intstr.FromString("25%"))))
		Expect(sbs.Spec.Template.Spec.AutomountServiceAccountToken).To(HaveValue(BeFalse()))
		Expect(sbs.Spec.PersistentContents).To(Equal([]agentsv1alpha1.PersistentContent{"ip", "memory"}))

		same := newSandboxSet(ns, "same", 0)
		same.Spec.PersistentContents = []agentsv1alpha1.PersistentContent{"ip", "memory"}
		Expect(adminClient.Create(ctx, same)).To(Succeed())
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(same), same)).To(Succeed())
		delete(same.Spec.Template.Labels, agentsv1alpha1.LabelSandboxSet)
		delete(sbs.Spec.Template.Labels, agentsv1alpha1.LabelSandboxSet)
		Expect(same.Spec.Revision()).To(Equal(sbs.Spec.Revision()))

		explicit := newSandboxSet(ns, "explicit", 0)
		explicit.Spec.Template.Spec.AutomountServiceAccountToken = ptr.To(true)
		Expect(adminClient.Create(ctx, explicit)).To(Succeed())
		Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(explicit), explicit)).To(Succeed())
		Expect(explicit.Spec.Template.Spec.AutomountServiceAccountToken).To(HaveValue(BeTrue()), "an explicit choice is kept")
	})

	It("validates updates, including kubectl scale, against the same rules", func(ctx SpecContext) {
		sbs := newSandboxSet(newNamespace(ctx), "demo", 0)
		Expect(adminClient.Create(ctx, sbs)).To(Succeed())

		// The controller writes status meanwhile: retry stale reads until
		// the answer is about the request itself.
		var err error
		Eventually(func(g Gomega) {
			scale := &autoscalingv1.Scale{}
			g.Expect(adminClient.SubResource("scale").Get(ctx, sbs, scale)).To(Succeed())
			scale.Spec.Replicas = testMaxReplicas + 1
			err = adminClient.SubResource("scale").Update(ctx, sbs, client.WithSubResourceBody(scale))
			g.Expect(apierrors.IsConflict(err)).To(BeFalse(), "retry a stale read")
		}, timeout, interval).Should(Succeed())
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.replicas"))

		Eventually(func(g Gomega) {
			g.Expect(adminClient.Get(ctx, client.ObjectKeyFromObject(sbs), sbs)).To(Succeed())
			sbs.Spec.Template.Spec.Containers[0].Image = ""
			sbs.Spec.Replicas = ptr.To[int32](testMaxReplicas + 1)
			err = adminClient.Update(ctx, sbs)
			g.Expect(apierrors.IsConflict(err)).To(BeFalse(), "retry a stale read")
		}, timeout, interval).Should(Succeed())
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.replicas"))
		Expect(err.Error()).To(ContainSubstring("spec.template.spec.containers[0].image"), "every field at once")
	})
})

var _ = Describe("The install manifests", func() {
	It("render with kustomize and are accepted by a real API server with cert-manager's CRDs", func(ctx SpecContext) {
		rendered, err := exec.CommandContext(ctx, "kubectl", "kustomize", filepath.Join("..", "config", "default")).Output()
		Expect(err).NotTo(HaveOccurred())
		for _, kind := range []string{"CustomResourceDefinition", "ClusterRole", "Deployment", "Service",
			"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Issuer", "Certificate",
			"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ConfigMap"} {
			Expect(string(rendered)).To(ContainSubstring("kind: "+kind), kind)
		}
		Expect(string(rendered)).To(ContainSubstring("cert-manager.io/inject-ca-from: sandboxset-system/sandboxset-serving-cert"))
		// The Pod webhook's not-the-manager condition names the manager's
		// ServiceAccount as kustomize names it, which is the identity these
		// suites run the manager under.
		sa := regexp.MustCompile(`(?m)^kind: ServiceAccount\nmetadata:\n  name: (\S+)\n  namespace: (\S+)$`).FindStringSubmatch(string(rendered))
		Expect(sa).To(HaveLen(3), "the rendered manager ServiceAccount")
		Expect(envtestenv.ManagerUser).To(Equal("system:serviceaccount:" + sa[2] + ":" + sa[1]))
		Expect(string(rendered)).To(MatchRegexp(`request\.userInfo\.username != 'system:serviceaccount:'\s+\+ 'sandboxset-system' \+ ':' \+ 'sandboxset-controller-manager'`))
		Expect(regexp.MustCompile(`'sandboxset-system'\s+\+\s+':'\s+\+\s+'sandboxset-controller-manager'`).FindAllString(string(rendered), -1)).
			To(HaveLen(2), "the Pod and eviction webhooks' conditions")
		// The admission policies trust the same identity, and their binding
		// finds its parameters under the names kustomize gives them.
		Expect(string(rendered)).To(ContainSubstring("managerUsername: " + envtestenv.ManagerUser))
		Expect(string(rendered)).To(MatchRegexp(`paramRef:\s+name: sandboxset-admission-params\s+namespace: sandboxset-system`))
		Expect(string(rendered)).To(MatchRegexp(`policyName: sandboxset-pool-pods`))

		By("the certificate chain: each Certificate names an Issuer the install makes, and a CA signs the serving certificate")
		issuers, certificates := map[string]*unstructured.Unstructured{}, map[string]*unstructured.Unstructured{}
		for _, doc := range strings.Split(string(rendered), "\n---\n") {
			obj := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal([]byte(doc), &obj.Object)).To(Succeed())
			switch obj.GetKind() {
			case "Issuer":
				issuers[obj.GetName()] = obj
			case "Certificate":
				certificates[obj.GetName()] = obj
			}
		}
		for name, cert := range certificates {
			issuer, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
			Expect(issuers).To(HaveKey(issuer), "the issuer of Certificate %s", name)
		}
		serving := certificates["sandboxset-serving-cert"]
		Expect(serving).NotTo(BeNil())
		issuerName, _, _ := unstructured.NestedString(serving.Object, "spec", "issuerRef", "name")
		caSecret, _, _ := unstructured.NestedString(issuers[issuerName].Object, "spec", "ca", "secretName")
		Expect(caSecret).NotTo(BeEmpty(), "the serving certificate's issuer is a CA issuer")
		var ca *unstructured.Unstructured
		for _, cert := range certificates {
			if secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName"); secret == caSecret {
				ca = cert
			}
		}
		Expect(ca).NotTo(BeNil(), "a Certificate makes the CA issuer's Secret")
		isCA, _, _ := unstructured.NestedBool(ca.Object, "spec", "isCA")
		Expect(isCA).To(BeTrue())
		caIssuer, _, _ := unstructured.NestedString(ca.Object, "spec", "issuerRef", "name")
		_, selfSigned, _ := unstructured.NestedMap(issuers[caIssuer].Object, "spec", "selfSigned")
		Expect(selfSigned).To(BeTrue(), "the CA is self-signed")

		// The webhook configurations would point the API server at a
		// Service that does not run here, so the apply is a server-side dry
		// run: every object is admitted and validated, none is stored.
		kubeconfig := adminKubeconfig()
		// Other specs (the manager's own leader election) may have made it.
		Expect(client.IgnoreAlreadyExists(adminClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sandboxset-system"}}))).To(Succeed())
		apply := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-")
		apply.Stdin = strings.NewReader(string(rendered))
		out, err := apply.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(string(out)).To(ContainSubstring("certificate.cert-manager.io/sandboxset-serving-cert serverside-applied (server dry run)"))
		Expect(string(out)).To(ContainSubstring("mutatingwebhookconfiguration.admissionregistration.k8s.io/sandboxset-mutating-webhook-configuration serverside-applied (server dry run)"))
		Expect(string(out)).To(ContainSubstring("validatingadmissionpolicy.admissionregistration.k8s.io/sandboxset-pool-pods serverside-applied (server dry run)"))
		Expect(string(out)).To(ContainSubstring("validatingadmissionpolicybinding.admissionregistration.k8s.io/sandboxset-pool-pods serverside-applied (server dry run)"))
	})
})

func adminKubeconfig() string {
	GinkgoHelper()
	user, err := testEnv.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	data, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
	return path
}
