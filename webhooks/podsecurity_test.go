package webhooks

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/pod-security-admission/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
	"github.com/sandboxset/warmpool/test/envtestenv"
)

func TestPodSecurityViolations(t *testing.T) {
	p, err := newPodSecurity("", nil)
	if err != nil {
		t.Fatal(err)
	}
	baseline, restricted := p.floor(), podSecurityLevel{api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}, "namespace x's enforce level"}
	plain := func() corev1.PodSpec {
		return corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}
	}
	hardened := func() corev1.PodSpec {
		spec := plain()
		spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
		spec.Containers[0].SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
		return spec
	}
	base := field.NewPath("spec", "template", "spec")
	tests := []struct {
		name  string
		level podSecurityLevel
		spec  func() corev1.PodSpec
		want  []string // "path: detail"
	}{{
		name: "a plain image meets baseline", level: baseline, spec: plain,
	}, {
		name: "a privileged second container, at its own field", level: baseline,
		spec: func() corev1.PodSpec {
			spec := plain()
			spec.Containers = append(spec.Containers, corev1.Container{Name: "root", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}})
			return spec
		},
		want: []string{`spec.template.spec.containers[1].securityContext.privileged: rule pod-security: violates PodSecurity "baseline:latest", the operator's minimum, manager flag --pod-security-level: privileged (container "root" must not set securityContext.privileged=true)`},
	}, {
		name: "host namespaces, a hostPath volume and an added capability in an init container", level: baseline,
		spec: func() corev1.PodSpec {
			spec := plain()
			spec.HostPID = true
			spec.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
			spec.InitContainers = []corev1.Container{{Name: "setup", Image: "busybox", SecurityContext: &corev1.SecurityContext{
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}},
			}}}
			return spec
		},
		want: []string{
			`spec.template.spec.hostPID: rule pod-security: violates PodSecurity "baseline:latest", the operator's minimum, manager flag --pod-security-level: host namespaces (hostPID=true)`,
			`spec.template.spec.volumes: rule pod-security: violates PodSecurity "baseline:latest", the operator's minimum, manager flag --pod-security-level: hostPath volumes (volume "root")`,
			`spec.template.spec.initContainers[0].securityContext.capabilities.add: rule pod-security: violates PodSecurity "baseline:latest", the operator's minimum, manager flag --pod-security-level: non-default capabilities (container "setup" must not include "SYS_ADMIN" in securityContext.capabilities.add)`,
		},
	}, {
		name: "a plain image breaks restricted, field by field", level: restricted, spec: plain,
		want: []string{
			`spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation: rule pod-security: violates PodSecurity "restricted:latest", namespace x's enforce level: allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false)`,
			`spec.template.spec.containers[0].securityContext.capabilities.drop: rule pod-security: violates PodSecurity "restricted:latest", namespace x's enforce level: unrestricted capabilities (container "app" must set securityContext.capabilities.drop=["ALL"])`,
			`spec.template.spec.containers[0].securityContext.runAsNonRoot: rule pod-security: violates PodSecurity "restricted:latest", namespace x's enforce level: runAsNonRoot != true (pod or container "app" must set securityContext.runAsNonRoot=true)`,
			`spec.template.spec.containers[0].securityContext.seccompProfile: rule pod-security: violates PodSecurity "restricted:latest", namespace x's enforce level: seccompProfile (pod or container "app" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")`,
		},
	}, {
		name: "a hardened template meets restricted", level: restricted, spec: hardened,
	}, {
		name: "privileged judges nothing", level: podSecurityLevel{api.LevelVersion{Level: api.LevelPrivileged, Version: api.LatestVersion()}, "x"},
		spec: func() corev1.PodSpec { spec := plain(); spec.HostNetwork = true; return spec },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec()
			var got []string
			for _, e := range p.violations(tt.level, &metav1.ObjectMeta{}, &spec, base) {
				got = append(got, e.Field+": "+e.Detail)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("violations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStricterPodSecurityLevel(t *testing.T) {
	lv := func(level api.Level, version string) api.LevelVersion {
		v, err := api.ParseVersion(version)
		if err != nil {
			t.Fatal(err)
		}
		return api.LevelVersion{Level: level, Version: v}
	}
	for _, tt := range []struct {
		a, b api.LevelVersion
		want bool
	}{
		{lv(api.LevelRestricted, "v1.25"), lv(api.LevelBaseline, "latest"), true},
		{lv(api.LevelBaseline, "latest"), lv(api.LevelRestricted, "v1.25"), false},
		{lv(api.LevelBaseline, "latest"), lv(api.LevelBaseline, "v1.25"), true},
		{lv(api.LevelBaseline, "v1.25"), lv(api.LevelBaseline, "latest"), false},
		{lv(api.LevelBaseline, "latest"), lv(api.LevelBaseline, "latest"), false},
		{lv(api.LevelPrivileged, "latest"), lv(api.LevelPrivileged, "v1.25"), false},
		{lv(api.LevelPrivileged, "latest"), lv(api.LevelBaseline, "v1.0"), false},
	} {
		if got := stricter(tt.a, tt.b); got != tt.want {
			t.Errorf("stricter(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// Pod Security at kubectl apply, through the real API server: the
// namespace's levels and the operator's minimum (baseline in this suite).
var _ = Describe("Pod Security at apply time", func() {
	apply := func(ctx context.Context, ns, doc string) (string, error) {
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", adminKubeconfig(), "-n", ns, "apply", "-f", "-")
		cmd.Stdin = strings.NewReader(doc)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	labelled := func(ctx context.Context, labels map[string]string) string {
		GinkgoHelper()
		ns := newNamespace(ctx)
		obj := &corev1.Namespace{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Name: ns}, obj)).To(Succeed())
		for k, v := range labels {
			obj.Labels[k] = v
		}
		Expect(adminClient.Update(ctx, obj)).To(Succeed())
		return ns
	}
	const plain = "apiVersion: agents.kruise.io/v1alpha1\nkind: SandboxSet\nmetadata:\n  name: demo\nspec:\n  replicas: 1\n" +
		"  template:\n    spec:\n      containers:\n      - name: app\n        image: nginx\n"

	It("refuses, where the namespace enforces restricted, a template that breaks it, naming every field", func(ctx SpecContext) {
		ns := labelled(ctx, map[string]string{api.EnforceLevelLabel: "restricted"})
		out, err := apply(ctx, ns, plain)
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(HavePrefix(`The SandboxSet "demo" is invalid: `))
		for _, want := range []string{
			`spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation: Forbidden: rule pod-security: violates PodSecurity "restricted:latest", namespace ` + ns + `'s enforce level: allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false)`,
			`spec.template.spec.containers[0].securityContext.capabilities.drop: Forbidden: rule pod-security`,
			`spec.template.spec.containers[0].securityContext.runAsNonRoot: Forbidden: rule pod-security`,
			`spec.template.spec.containers[0].securityContext.seccompProfile: Forbidden: rule pod-security`,
		} {
			Expect(out).To(ContainSubstring(want))
		}
	})

	It("refuses a privileged template where the namespace enforces nothing: the operator's minimum", func(ctx SpecContext) {
		ns := labelled(ctx, map[string]string{api.EnforceLevelLabel: "privileged"})
		out, err := apply(ctx, ns, plain+"        securityContext:\n          privileged: true\n")
		Expect(err).To(HaveOccurred(), out)
		Expect(out).To(Equal(`The SandboxSet "demo" is invalid: spec.template.spec.containers[0].securityContext.privileged: Forbidden: ` +
			`rule pod-security: violates PodSecurity "baseline:latest", the operator's minimum, manager flag --pod-security-level: privileged (container "app" must not set securityContext.privileged=true)`))
	})

	It("turns the namespace's warn and audit levels into warnings, and admits", func(ctx SpecContext) {
		ns := labelled(ctx, map[string]string{api.WarnLevelLabel: "restricted", api.AuditLevelLabel: "restricted"})
		out, err := apply(ctx, ns, plain)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring(`Warning: would violate PodSecurity "restricted:latest", namespace ` + ns + `'s warn level: ` +
			`spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation: allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false); `))
		Expect(strings.Count(out, "would violate")).To(Equal(1), "audit at the same level says it once: %s", out)
		Expect(out).To(HaveSuffix("sandboxset.agents.kruise.io/demo created"))
	})

	It("holds a cold claim to the namespace's level as it is now, and lets a pool whose template is unchanged be scaled", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		out, err := apply(ctx, ns, plain)
		Expect(err).NotTo(HaveOccurred(), out)
		sbs := &agentsv1alpha1.SandboxSet{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "demo"}, sbs)).To(Succeed())

		By("raising the namespace to restricted")
		obj := &corev1.Namespace{}
		Expect(adminClient.Get(ctx, client.ObjectKey{Name: ns}, obj)).To(Succeed())
		obj.Labels[api.EnforceLevelLabel] = "restricted"
		Expect(adminClient.Update(ctx, obj)).To(Succeed())

		By("scaling the pool, whose template did not change")
		out, err = apply(ctx, ns, strings.Replace(plain, "replicas: 1", "replicas: 0", 1))
		Expect(err).NotTo(HaveOccurred(), out)

		By("claiming cold from the template")
		cold := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo-cold1", Labels: map[string]string{
			agentsv1alpha1.LabelSandboxSet: "demo", agentsv1alpha1.LabelRevision: sbs.Spec.Revision(), agentsv1alpha1.LabelClaimedBy: "agent-1",
		}}, Spec: *sbs.Spec.Template.Spec.DeepCopy()}
		err = wideAgentClient(ctx, ns, "cold-claimer").Create(ctx, cold)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(`spec.containers[0].securityContext.allowPrivilegeEscalation: Forbidden: rule pod-security: violates PodSecurity "restricted:latest", namespace ` + ns + `'s enforce level`))
	})

	It("holds the manager's warm Pods to the operator's minimum, for templates admitted before it was raised", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		out, err := apply(ctx, ns, plain)
		Expect(err).NotTo(HaveOccurred(), out)
		manager, err := env.UserClient(envtestenv.ManagerUser)
		Expect(err).NotTo(HaveOccurred())
		warm := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo-root1", Labels: map[string]string{agentsv1alpha1.LabelSandboxSet: "demo"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}}}
		err = manager.Create(ctx, warm)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(`spec.containers[0].securityContext.privileged: Forbidden: rule pod-security: violates PodSecurity "baseline:latest", the operator's minimum`))
	})
})
