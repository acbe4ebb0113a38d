package e2e

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sandboxset/warmpool/api/claim"
	"github.com/sandboxset/warmpool/test/prometheus"
)

// The alerts (config/prometheus) and the dashboard (config/grafana) are only
// as good as the metric names they read: a renamed metric leaves an alert
// that never fires. Each name must be one a live manager exports.
var _ = Describe("The alerts and the dashboard", func() {
	It("read only metrics the manager exports", func(ctx SpecContext) {
		By("making the manager export every family: a pool, a claim, its refill and its expiry")
		ns := newNamespace(ctx)
		sbs := newSandboxSet(ns, "demo", 1)
		Expect(k8sClient.Create(ctx, sbs)).To(Succeed())
		expectPool(ctx, sbs, 1, 1)
		c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		sbx, err := claim.New(c).Claim(ctx, ns, "demo", "agent-1", claim.ClaimOptions{TTL: time.Second})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool {
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: sbx.Name}, &corev1.Pod{})
			return apierrors.IsNotFound(err)
		}, timeout, interval).Should(BeTrue(), "the claimed sandbox expires")
		expectPool(ctx, sbs, 1, 1)

		exported := exportedSeries()
		exprs, err := prometheus.Expressions("../..")
		Expect(err).NotTo(HaveOccurred())
		Expect(exprs).NotTo(BeEmpty())
		for where, expr := range exprs {
			names, err := prometheus.MetricNames(expr)
			Expect(err).NotTo(HaveOccurred())
			for _, name := range names {
				if !prometheus.ScrapeMetrics[name] {
					Expect(exported).To(HaveKey(name), "%s reads %s, which the manager does not export", where, name)
				}
			}
		}
	})
})

// exportedSeries returns the names of the series on the manager's metrics
// endpoint, histograms' _bucket, _sum and _count included.
func exportedSeries() map[string]bool {
	GinkgoHelper()
	resp, err := http.Get("http://127.0.0.1:18080/metrics") //nolint:noctx // a loopback test endpoint
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	names := map[string]bool{}
	lines := bufio.NewScanner(bytes.NewReader(body))
	for lines.Scan() {
		line := lines.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}
	Expect(lines.Err()).NotTo(HaveOccurred())
	return names
}
