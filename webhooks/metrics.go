package webhooks

import (
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// claimAdmissions counts the claims the Pod webhook judged. Two kinds of
// failed claim never reach it: one that finds its pool empty sends nothing
// (sandboxset_sandboxes{state="available"} at 0 shows it), and one through
// the claim package that loses a race is stopped by its patch's test of the
// state, at the API server. And one claim can be judged twice: when the API
// server's write started from a stale cached Pod, it fails and admits the
// claim again against the stored Pod.
var claimAdmissions = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "sandboxset_claim_admissions_total",
	Help: "Claims the Pod webhook judged, by kind (warm: of a pool Pod; cold: a Pod created claimed) and result (admitted; lost: another agent had claimed it; refused: anything else, e.g. not Ready, a bad agent id). An API server retry after a stale read is judged again.",
}, []string{"namespace", "sandboxset", "kind", "result"})

func init() {
	metrics.Registry.MustRegister(claimAdmissions)
}

// countClaim records the webhook's verdict on a claim.
func countClaim(pod *corev1.Pod, kind string, err error) {
	result := "admitted"
	switch {
	case apierrors.IsConflict(err):
		result = "lost"
	case err != nil:
		result = "refused"
	}
	claimAdmissions.WithLabelValues(pod.Namespace, pod.Labels[agentsv1alpha1.LabelSandboxSet], kind, result).Inc()
}
