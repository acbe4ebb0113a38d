package e2e

import (
	"bytes"
	"context"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// config/flowcontrol gives the manager's Pod writes API server seats of their
// own, so that a refill never queues the agents' claims. The API server names
// the priority level it chose in every response (API Priority and Fairness'
// X-Kubernetes-PF-* headers), so the suite asks it directly.
var _ = Describe("Flow control", func() {
	It("puts the manager's Pod writes on the refill level and an agent's elsewhere", func(ctx SpecContext) {
		refill := &flowcontrolv1.PriorityLevelConfiguration{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: "sandboxset-refill"}, refill)).To(Succeed())
		ns := newNamespace(ctx)

		manager := priorityLevelOfPodCreate(ctx, "system:serviceaccount:sandboxset-system:sandboxset-controller-manager", ns)
		Expect(manager).To(Equal(string(refill.UID)), "the manager's Pod creation was classified elsewhere")

		agent := priorityLevelOfPodCreate(ctx, "system:serviceaccount:"+ns+":agent", ns)
		Expect(agent).NotTo(BeEmpty())
		Expect(agent).NotTo(Equal(string(refill.UID)), "an agent's Pod write took the refill level's seats")
	})
})

// priorityLevelOfPodCreate sends a dry-run Pod creation as user and returns
// the UID of the priority level the API server put it on. Whether the
// creation itself is allowed does not matter: it is classified first.
func priorityLevelOfPodCreate(ctx context.Context, user, ns string) string {
	GinkgoHelper()
	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}}
	httpClient, err := rest.HTTPClientFor(as)
	Expect(err).NotTo(HaveOccurred())
	body := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"flowcontrol-"},"spec":{"containers":[{"name":"c","image":"x"}]}}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, as.Host+"/api/v1/namespaces/"+ns+"/pods?dryRun=All", bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	Expect(resp.Body.Close()).To(Succeed())
	level := resp.Header.Get("X-Kubernetes-PF-PriorityLevel-UID")
	Expect(level).NotTo(BeEmpty(), "no priority level named in the response (status %s)", resp.Status)
	return level
}
