package webhooks

import (
	"context"
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/sandboxset/warmpool/test/envtestenv"
)

// exec, attach, port-forward and proxy through the real API server, as
// agents holding the built-in edit ClusterRole and explicit grants on every
// Pod subresource, so that RBAC is never what refuses them. Agent a holds a
// sandbox; agent b holds none. envtest has no kubelet, so a connection the
// webhook admits fails after admission, for want of a node: that error,
// and not the rule's, is what an admitted request looks like here.
var _ = Describe("Exec, attach, port-forward and proxy", func() {
	const userA, userB, userAdmin = "connect-agent-a", "connect-agent-b", "connect-on-call"
	var (
		ns             string
		a, b, onCall   *kubernetes.Clientset
		warm, held     corev1.Pod
		agentRoleOnly  *kubernetes.Clientset
		agentRoleUser  = "connect-agent-role-only"
		connectActions = []struct{ subresource, verb string }{
			{"exec", "exec into"}, {"attach", "attach to"}, {"portforward", "port-forward to"}, {"proxy", "proxy to"},
		}
	)
	clientset := func(ctx context.Context, user string, groups ...string) *kubernetes.Clientset {
		GinkgoHelper()
		cfg, err := env.UserConfig(user, groups...) // asserts the identity with a SelfSubjectReview
		Expect(err).NotTo(HaveOccurred())
		c, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		return c
	}
	// connect sends the request as kubectl does before it upgrades the
	// connection; admission runs before the API server dials the kubelet.
	connect := func(ctx context.Context, c *kubernetes.Clientset, pod, subresource string) error {
		req := c.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name(pod).SubResource(subresource)
		switch subresource {
		case "exec":
			req = req.Param("command", "sh").Param("stdout", "true")
		case "attach":
			req = req.Param("stdout", "true")
		case "portforward":
			req = req.Param("ports", "8080")
		case "proxy":
			req = c.CoreV1().RESTClient().Get().Namespace(ns).Resource("pods").Name(pod).SubResource("proxy")
		}
		return req.Do(ctx).Error()
	}
	expectAdmitted := func(err error) {
		GinkgoHelper()
		Expect(err).To(HaveOccurred(), "envtest has no kubelet to connect to")
		// After admission the API server finds no node to dial (exec,
		// attach, port-forward) or refuses the Pod's address (proxy).
		Expect(err.Error()).To(Or(ContainSubstring("does not have a host assigned"), ContainSubstring("denied destination"), Equal("address not allowed")))
		Expect(err.Error()).NotTo(ContainSubstring("admission webhook"))
	}

	BeforeEach(func(ctx SpecContext) {
		ns = newNamespace(ctx)
		Expect(env.BindWideAgentRoles(ctx, ns, userA)).To(Succeed())
		Expect(env.BindWideAgentRoles(ctx, ns, userB)).To(Succeed())
		Expect(env.BindAgentRole(ctx, ns, agentRoleUser)).To(Succeed())
		a, b, agentRoleOnly = clientset(ctx, userA), clientset(ctx, userB), clientset(ctx, agentRoleUser)
		onCall = clientset(ctx, userAdmin, "sandboxset:admins") // adminGroups in config/policies/params.yaml
		Expect(env.BindWideAgentRoles(ctx, ns, userAdmin)).To(Succeed())
		pool := warmPool(ctx, ns, 2)
		warm = pool[0]
		agentA, err := env.UserClient(userA)
		Expect(err).NotTo(HaveOccurred())
		claimed, err := claimAs(ctx, agentA, &pool[1], "agent-1")
		Expect(err).NotTo(HaveOccurred())
		held = *claimed
	})

	It("refuses them on a warm sandbox, naming the rule", func(ctx SpecContext) {
		for _, act := range connectActions {
			err := connect(ctx, b, warm.Name, act.subresource)
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s: %v", act.subresource, err)
			Expect(err.Error()).To(ContainSubstring(fmt.Sprintf(
				"rule warm-connect: %s is a warm sandbox of SandboxSet demo, and what runs in it is what the next agent gets; nobody but the cluster's admins may %s it: claim it first",
				warm.Name, act.verb)), act.subresource)
		}
	})

	It("refuses them on another agent's sandbox, naming the holder", func(ctx SpecContext) {
		for _, act := range connectActions {
			err := connect(ctx, b, held.Name, act.subresource)
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s: %v", act.subresource, err)
			Expect(err.Error()).To(ContainSubstring(fmt.Sprintf(
				"rule holder-only: sandbox %s is claimed by agent-1 (%s); only that identity may %s it, not %s",
				held.Name, userA, act.verb, userB)), act.subresource)
		}
	})

	It("admits them from the holder and from the admin groups, and leaves other Pods alone", func(ctx SpecContext) {
		plain := &corev1.Pod{}
		plain.Namespace, plain.Name = ns, "plain"
		plain.Spec.Containers = []corev1.Container{{Name: "app", Image: "app"}}
		Expect(adminClient.Create(ctx, plain)).To(Succeed())
		for _, act := range connectActions {
			By(act.subresource)
			expectAdmitted(connect(ctx, a, held.Name, act.subresource))
			expectAdmitted(connect(ctx, onCall, warm.Name, act.subresource))
			expectAdmitted(connect(ctx, onCall, held.Name, act.subresource))
			expectAdmitted(connect(ctx, b, plain.Name, act.subresource))
		}
	})

	It("does not trust the manager's identity, which never needs a shell in a sandbox", func(ctx SpecContext) {
		Expect(env.BindWideAgentRoles(ctx, ns, envtestenv.ManagerUser)).To(Succeed())
		manager := clientset(ctx, envtestenv.ManagerUser)
		err := connect(ctx, manager, warm.Name, "exec")
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("rule warm-connect: " + warm.Name))
	})

	It("needs no help from the webhook against the example agent Role, which grants none of them", func(ctx SpecContext) {
		err := connect(ctx, agentRoleOnly, warm.Name, "exec")
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring(`cannot create resource "pods/exec"`), "RBAC's refusal")
	})
})
