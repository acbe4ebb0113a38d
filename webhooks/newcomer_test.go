package webhooks

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// A newcomer's mistakes, applied with kubectl as a newcomer applies them:
// every refusal names the field, says what it wants, and says it once.
var _ = Describe("kubectl apply of a mistaken SandboxSet", func() {
	apply := func(ctx context.Context, name, spec string) string {
		GinkgoHelper()
		doc := "apiVersion: agents.kruise.io/v1alpha1\nkind: SandboxSet\nmetadata:\n  name: " + name +
			"\n  namespace: " + newNamespace(ctx) + "\n" + spec
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", adminKubeconfig(), "apply", "-f", "-")
		cmd.Stdin = strings.NewReader(doc)
		out, err := cmd.CombinedOutput()
		Expect(err).To(HaveOccurred(), "kubectl apply admitted it: %s", out)
		return strings.TrimSpace(string(out))
	}
	const template = "  template:\n    spec:\n      containers:\n      - name: c\n        image: nginx\n"

	DescribeTable("refuses it with the field and what to do",
		func(ctx SpecContext, name, spec, want string) {
			out := apply(ctx, name, spec)
			GinkgoWriter.Println(out)
			Expect(out).To(Equal(want))
		},
		// The second line is the API server's own scale subresource check;
		// only dropping `kubectl scale` would silence it.
		Entry("replicas as a word", "demo", "spec:\n  replicas: three\n"+template,
			"The SandboxSet \"demo\" is invalid: \n"+
				`* spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`+"\n"+
				`* .spec.replicas: Invalid value: 0: .spec.replicas accessor error: three is of the type string, expected int64`),
		Entry("an image YAML reads as a boolean", "demo", "spec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: y\n",
			`The SandboxSet "demo" is invalid: spec.template.spec.containers[0].image: Invalid value: "boolean": spec.template.spec.containers[0].image in body must be of type string: "boolean"`),
		Entry("negative replicas, said once", "demo", "spec:\n  replicas: -1\n"+template,
			`The SandboxSet "demo" is invalid: .spec.replicas: Invalid value: -1: should be a non-negative integer`),
		Entry("an unknown persistent content, with nothing about unchecked rules", "demo", "spec:\n  persistentContents: [disk]\n"+template,
			`The SandboxSet "demo" is invalid: spec.persistentContents[0]: Unsupported value: "disk": supported values: "ip", "memory", "filesystem"`),
		Entry("a name too long for its Pods, at metadata.name", strings.Repeat("a", 58), "spec:\n"+template,
			`The SandboxSet "`+strings.Repeat("a", 58)+`" is invalid: metadata.name: Invalid value: "`+strings.Repeat("a", 58)+`": must be at most 57 characters: it is a label value on every Pod and, with a 6-character suffix, each Pod's name`),
	)
})

var _ = Describe("The SandboxSet CRD as a newcomer reads it", func() {
	kubectl := func(ctx context.Context, args ...string) string {
		GinkgoHelper()
		out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", adminKubeconfig()}, args...)...).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		return string(out)
	}

	It("documents its fields in kubectl explain, with the allowed values", func(ctx SpecContext) {
		out := kubectl(ctx, "explain", "sandboxset.spec.persistentContents")
		Expect(out).To(ContainSubstring("FIELD: persistentContents <[]string>"))
		Expect(out).To(ContainSubstring("PersistentContents lists what the sandbox runtime keeps"))
		Expect(out).To(ContainSubstring("agents.kruise.io/persistent-contents"))
		// kubectl explain shows no ENUM for a list's items: their description
		// names the allowed values.
		Expect(out).To(MatchRegexp(`ip \(the Pod's IP address\),\s+memory \(the\s+processes' memory\) or filesystem \(the container's writable layer\)`))

		out = kubectl(ctx, "explain", "sandboxset.spec")
		Expect(out).NotTo(ContainSubstring("<no description>"))
		for _, f := range []string{"replicas", "persistentContents", "template", "claimLifetime", "updateStrategy"} {
			Expect(out).To(MatchRegexp(`\n  %s\s+<`, f), f)
		}
	})

	It("is small enough for a client-side kubectl apply", func(ctx SpecContext) {
		// Client-side apply keeps the whole object in an annotation, which
		// the API server caps at 256 KiB.
		out := kubectl(ctx, "apply", "--dry-run=server", "-f", filepath.Join("..", "config", "crd", "bases", "agents.kruise.io_sandboxsets.yaml"))
		Expect(out).To(HaveSuffix("customresourcedefinition.apiextensions.k8s.io/sandboxsets.agents.kruise.io configured (server dry run)\n"))
	})
})
