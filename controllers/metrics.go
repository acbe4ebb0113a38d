package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// The stages of sandboxset_claim_replacement_stage_seconds.
const (
	stageSeen        = "seen"
	stageReconciling = "reconciling"
	stageCreated     = "created"
)

// Pool metrics, served next to controller-runtime's own on the manager's
// metrics endpoint.
var (
	poolSandboxes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sandboxset_sandboxes",
		Help: "Sandboxes in a SandboxSet's warm pool, by state (creating or available).",
	}, []string{"namespace", "sandboxset", "state"})

	poolDesired = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sandboxset_desired_sandboxes",
		Help: "The warm pool size a SandboxSet asks for (spec.replicas).",
	}, []string{"namespace", "sandboxset"})

	poolAutoscaling = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sandboxset_autoscaling",
		Help: "An autoscaled SandboxSet's sizing: quantity desired_replicas (its recommendation), arrival_rate (claims per second), refill_seconds, warm_hit_ratio (over the last 2 minutes; absent without claims) and target_warm_ratio.",
	}, []string{"namespace", "sandboxset", "quantity"})

	poolCondition = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sandboxset_status_condition",
		Help: "1 while a SandboxSet's status condition (Ready, ReplicaFailure, Reconciling, Stalled) is True, else 0 (Reconciling and Stalled are absent while False): what alerts key on.",
	}, []string{"namespace", "sandboxset", "condition"})

	claimsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sandboxset_claims_total",
		Help: "Sandboxes claimed out of a SandboxSet's pool, as seen by the controller.",
	}, []string{"namespace", "sandboxset"})

	claimToReplacement = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sandboxset_claim_to_replacement_seconds",
		Help:    "Time from a sandbox being claimed to the API server accepting its replacement Pod.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5 ms to 41 s
	}, []string{"namespace", "sandboxset"})

	// claimStages times a warm claim's way to its replacement, from the
	// claim time the webhook stamped: the manager's watch delivering the
	// claim (seen), the start of the pass that replaces it (reconciling),
	// and the API server accepting the replacement (created). Across
	// pools, so that it costs three series.
	claimStages = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sandboxset_claim_replacement_stage_seconds",
		Help:    "Time from a sandbox being claimed to each stage of its replacement: seen (the manager's watch delivered the claim), reconciling (the pass that replaces it started), created (the API server accepted the replacement).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5 ms to 41 s
	}, []string{"stage"})

	expirations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sandboxset_expirations_total",
		Help: "Claimed sandboxes deleted at their shutdown time, by the SandboxSet they came from.",
	}, []string{"namespace", "sandboxset"})

	expiryLateness = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sandboxset_expiry_lateness_seconds",
		Help:    "Time from a claimed sandbox's shutdown time to the API server accepting its deletion.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5 ms to 41 s
	})

	podOperations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sandboxset_pod_operations_total",
		Help: "Pod writes by the SandboxSet controller, by operation and result.",
	}, []string{"operation", "result"})
)

func init() {
	metrics.Registry.MustRegister(poolSandboxes, poolDesired, poolAutoscaling, poolCondition, claimsTotal, claimToReplacement, claimStages, expirations, expiryLateness, podOperations)
}

func forgetPoolMetrics(namespace, name string) {
	labels := map[string]string{"namespace": namespace, "sandboxset": name}
	poolSandboxes.DeletePartialMatch(labels)
	poolDesired.DeletePartialMatch(labels)
	poolCondition.DeletePartialMatch(labels)
	poolAutoscaling.DeletePartialMatch(labels)
	claimsTotal.DeletePartialMatch(labels)
	claimToReplacement.DeletePartialMatch(labels)
}

// recordAutoscalingMetrics publishes the numbers behind a pool's size, as
// measured, not as status rounds them.
func recordAutoscalingMetrics(sbs *agentsv1alpha1.SandboxSet, snap demandSnapshot) {
	set := func(quantity string, v float64) {
		poolAutoscaling.WithLabelValues(sbs.Namespace, sbs.Name, quantity).Set(v)
	}
	set("desired_replicas", float64(snap.recommendation.Replicas))
	set("arrival_rate", snap.rate)
	set("refill_seconds", snap.refill.Seconds())
	set("target_warm_ratio", snap.target)
	if ratio, ok := snap.warmHitRatio(); ok {
		set("warm_hit_ratio", ratio)
	} else {
		poolAutoscaling.DeleteLabelValues(sbs.Namespace, sbs.Name, "warm_hit_ratio")
	}
}

func forgetAutoscalingMetrics(namespace, name string) {
	poolAutoscaling.DeletePartialMatch(map[string]string{"namespace": namespace, "sandboxset": name})
}
