package main

// The trace-replay benchmark of pool autoscaling (-trace-replay, issue 21):
// every trace is replayed at once against three pools in one namespace,
// a fixed pool sized for the trace's mean, one sized for its peak, and one
// the operator autoscales, so that all three share the cluster's
// conditions. Each arrival is one claim on each pool by an agent holding
// config/rbac/agent_role.yaml.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sandboxset/warmpool/api/claim"
	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// targetWarmRatio is the autoscaled pool's spec.autoscaling.targetWarmRatio,
// and the warm-hit target every variant is held to.
const (
	targetWarmRatio     = "0.99"
	targetWarmRatioF    = 0.99
	calibrationPoolSize = 5
)

// What an agent does when its pool has no available sandbox (-trace-miss).
const (
	// traceMissCold creates a sandbox from the pool's template, already
	// claimed (claim.ClaimOptions.ColdIfEmpty), and waits for it to be Ready.
	traceMissCold = "cold"
	// traceMissWait waits for the pool to have one available.
	traceMissWait = "wait"
)

// The trace replay's own cluster.
const (
	traceClusterName = "sandboxset-trace"
	// The manager's ports on the trace cluster: apart from `make up`
	// (9443/9080/9081), the e2e suite (19443/18080/18081) and `make bench`
	// and the dev cluster (29443/28080/28081), so it runs beside all three.
	traceWebhookPort = "39443"
	traceMetricsPort = "38080"
	traceProbePort   = "38081"
)

// useTraceCluster moves the cluster to the trace replay's ports, and makes
// Pods turn Ready uniformly between -ready-delay and -trace-ready-max after
// binding, like test/local/cluster.sh's default 1–3 s: the spread is what
// a pool's size has to absorb. os/exec keeps the last of duplicate
// environment variables, so these win over newCluster's.
func useTraceCluster(cl *cluster, p params) {
	cl.env = append(cl.env,
		fmt.Sprintf("READY_JITTER_MS=%d", max(p.TraceReadyMax, p.ReadyDelay).Milliseconds()),
		"WEBHOOK_PORT="+traceWebhookPort, "METRICS_PORT="+traceMetricsPort, "PROBE_PORT="+traceProbePort)
	cl.managerMetrics = "127.0.0.1:" + traceMetricsPort
}

// traceReplay calibrates the refill time, then replays every selected trace.
// A trace that cannot be measured is recorded and the others still run;
// the error says which could not.
func (b *bench) traceReplay(ctx context.Context) error {
	traces := selectTraces(traceCatalog(b.p.TraceQuick), b.p.Traces)
	day := dayLength(traces)
	res := &traceReplayResult{
		Quick: b.p.TraceQuick, Seed: b.p.TraceSeed, Target: targetWarmRatio,
		Day: day, Compression: (24 * time.Hour).Seconds() / day.Seconds(),
		Hold: b.p.TraceHold, Miss: b.p.TraceMiss, ScaleDownDelay: b.p.TraceScaleDownDelay, WarmUp: b.p.TraceWarmUp,
		ReadyMin: b.p.ReadyDelay, ReadyMax: max(b.p.TraceReadyMax, b.p.ReadyDelay),
	}
	b.res.TraceReplay = res
	dyn, err := dynamic.NewForConfig(b.cfg)
	if err != nil {
		return fmt.Errorf("trace replay: creating a dynamic client: %w", err)
	}
	if b.p.TraceRefill > 0 {
		res.Refill = refillEstimate{Mean: b.p.TraceRefill, P90: b.p.TraceRefill, Max: b.p.TraceRefill}
		logf("trace replay: sizing for a refill time of %s (-trace-refill)", b.p.TraceRefill)
	} else {
		logf("trace replay: measuring the refill time on a pool of %d", calibrationPoolSize)
		if res.Refill, err = b.calibrateRefill(ctx, dyn); err != nil {
			res.Errors = append(res.Errors, err.Error())
			return fmt.Errorf("trace replay: calibrating the refill time: %w", err)
		}
		logf("trace replay: refill time mean %s, p90 %s, max %s over %d claims",
			res.Refill.Mean.Round(time.Millisecond), res.Refill.P90.Round(time.Millisecond), res.Refill.Max.Round(time.Millisecond), res.Refill.Samples)
	}
	var errs []error
	for _, tr := range traces {
		run, err := b.replayTrace(ctx, dyn, tr, res.Refill)
		res.Traces = append(res.Traces, run)
		if err != nil {
			run.Errors = append(run.Errors, err.Error())
			logf("error: trace %s: %v", tr.Name, err)
			if ctx.Err() != nil {
				return err
			}
			errs = append(errs, fmt.Errorf("trace %s: %w", tr.Name, err))
		}
	}
	return errors.Join(errs...)
}

// selectTraces keeps the catalog's traces named in list (comma-separated),
// in the catalog's order. parseFlags has checked the names.
func selectTraces(catalog []arrivalTrace, list string) []arrivalTrace {
	var out []arrivalTrace
	for _, t := range catalog {
		if slices.Contains(strings.Split(list, ","), t.Name) {
			out = append(out, t)
		}
	}
	return out
}

// calibrateRefill claims from a full pool one sandbox at a time, each once
// the pool is full again, and times each claim until the pool is full:
// the controller's reaction, the creation, scheduling, the Ready delay and
// the relabel to available, as a claim under light load sees them.
func (b *bench) calibrateRefill(ctx context.Context, dyn dynamic.Interface) (refillEstimate, error) {
	ns, err := createNamespace(ctx, b.cs, "trace-calibrate-")
	if err != nil {
		return refillEstimate{}, err
	}
	meter, err := startPoolMeter(ctx, b.cs, dyn, ns)
	if err != nil {
		b.dropNamespace(ns, nil)
		return refillEstimate{}, err
	}
	defer b.dropNamespace(ns, meter)
	agent, _, err := agentClients(ctx, b.env, ns)
	if err != nil {
		return refillEstimate{}, err
	}
	const pool = "calibrate"
	if err := b.createTracePool(ctx, ns, pool, calibrationPoolSize); err != nil {
		return refillEstimate{}, err
	}
	full := func(claimed int) func(map[string]poolView) bool {
		return func(v map[string]poolView) bool {
			return v[pool].claimedEver >= claimed && v[pool].available == calibrationPoolSize && v[pool].creating == 0
		}
	}
	if err := meter.waitFor(ctx, b.p.WaitTimeout, "a full pool", []string{pool}, full(0)); err != nil {
		return refillEstimate{}, err
	}
	claims := claim.New(agent)
	picker, err := claims.NewPicker(ctx, ns, pool)
	if err != nil {
		return refillEstimate{}, fmt.Errorf("starting a claim picker on %s/%s: %w", ns, pool, err)
	}
	defer picker.Stop()
	samples := 12
	if b.p.TraceQuick {
		samples = 6
	}
	var refills []time.Duration
	for i := range samples {
		start := time.Now()
		sbx, err := picker.Claim(ctx, fmt.Sprintf("calibrate-%d", i), claim.ClaimOptions{})
		if err != nil {
			return refillEstimate{}, fmt.Errorf("claim %d of %d from %s/%s: %w", i+1, samples, ns, pool, err)
		}
		if err := meter.waitFor(ctx, b.p.WaitTimeout, "the pool full again", []string{pool}, full(i+1)); err != nil {
			return refillEstimate{}, err
		}
		refills = append(refills, time.Since(start))
		if err := claims.Release(ctx, ns, sbx.Name); err != nil {
			return refillEstimate{}, fmt.Errorf("releasing %s/%s: %w", ns, sbx.Name, err)
		}
	}
	return newRefillEstimate(refills)
}

// createTracePool creates a SandboxSet of the benchmark's template.
func (b *bench) createTracePool(ctx context.Context, ns, name string, replicas int) error {
	sbs := &agentsv1alpha1.SandboxSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: agentsv1alpha1.SandboxSetSpec{
			Replicas:           ptr.To(int32(replicas)),
			PersistentContents: []agentsv1alpha1.PersistentContent{agentsv1alpha1.PersistentContentIP},
			Template:           corev1.PodTemplateSpec{Spec: sandboxTemplate()},
		},
	}
	if err := b.c.Create(ctx, sbs); err != nil {
		return fmt.Errorf("creating SandboxSet %s/%s with %d replicas: %w", ns, name, replicas, err)
	}
	return nil
}

// enableAutoscaling sets spec.autoscaling with a JSON merge patch, which
// works whether or not this build's types have the field, and reads back
// what the API server stored: an API server whose CRD lacks the field
// prunes it, and the pool stays at its replicas. It returns the stored
// spec.autoscaling, nil when there is none.
func (b *bench) enableAutoscaling(ctx context.Context, ns, name string, s poolSizes) (map[string]any, error) {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"autoscaling": map[string]any{
		"targetWarmRatio": targetWarmRatio,
		"minReplicas":     s.AutoMin,
		"maxReplicas":     s.AutoMax,
		"scaleDownDelay":  b.p.TraceScaleDownDelay.String(),
	}}})
	if err != nil {
		return nil, fmt.Errorf("encoding spec.autoscaling: %w", err)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(agentsv1alpha1.GroupVersion.WithKind("SandboxSet"))
	u.SetNamespace(ns)
	u.SetName(name)
	if err := b.c.Patch(ctx, u, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return nil, fmt.Errorf("setting spec.autoscaling of SandboxSet %s/%s: %w", ns, name, err)
	}
	stored, found, err := unstructured.NestedMap(u.Object, "spec", "autoscaling")
	if err != nil || !found {
		return nil, err
	}
	return stored, nil
}

// autoscalingStatus reads status.autoscaling as stored, nil when absent.
func (b *bench) autoscalingStatus(ctx context.Context, ns, name string) (map[string]any, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(agentsv1alpha1.GroupVersion.WithKind("SandboxSet"))
	if err := b.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		return nil, fmt.Errorf("reading SandboxSet %s/%s: %w", ns, name, err)
	}
	st, found, err := unstructured.NestedMap(u.Object, "status", "autoscaling")
	if err != nil || !found {
		return nil, err
	}
	return st, nil
}

// dropNamespace deletes a trace's namespace and waits until the meter has
// seen its last Pod go, so the next trace starts on a quiet cluster. It
// runs on its own context: it must clean up after a cancelled run too.
func (b *bench) dropNamespace(ns string, meter *poolMeter) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := b.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		logf("warning: deleting namespace %s: %v", ns, err)
	}
	if meter == nil {
		return
	}
	defer meter.close()
	if err := meter.waitGone(ctx, 2*time.Minute); err != nil {
		logf("warning: %v; the next trace starts beside them", err)
	}
}

// replayVariant is one of a trace's three pools, and its claims.
type replayVariant struct {
	name, pool string
	replicas   int // at creation
	picker     *claim.Picker

	mu     sync.Mutex
	claims []traceClaim
}

// traceClaim is one claim as its agent saw it.
type traceClaim struct {
	id      string
	pod     string // the sandbox won; empty when none was
	holder  string // the holder the claim's response showed
	warm    bool   // served from an available sandbox at once
	latency time.Duration
	err     error // never served
	release error
}

// replayTrace replays one trace against its three pools. It returns the
// trace's results, partial if it failed.
func (b *bench) replayTrace(ctx context.Context, dyn dynamic.Interface, tr arrivalTrace, refill refillEstimate) (*traceRunResult, error) {
	arrivals := tr.arrivals(b.p.TraceSeed)
	sizes := sizePools(arrivals, tr.Length, refill)
	run := &traceRunResult{Trace: tr, Claims: len(arrivals), MeanRate: float64(len(arrivals)) / tr.Length.Seconds(),
		Sizes: sizes, Demand: demandSeries(arrivals, refill.Mean, demandStep(tr.Length), tr.Length)}
	logf("trace %s: %s; %d claims", tr.Name, tr.Title, len(arrivals))
	logf("trace %s: %s %d = %s", tr.Name, variantMean, sizes.Mean, sizes.MeanWhy)
	logf("trace %s: %s %d = %s", tr.Name, variantPeak, sizes.Peak, sizes.PeakWhy)
	logf("trace %s: %s: target %s, min %d, max %d, scaleDownDelay %s; %s", tr.Name, variantAuto,
		targetWarmRatio, sizes.AutoMin, sizes.AutoMax, b.p.TraceScaleDownDelay, sizes.AutoWhy)
	ns, err := createNamespace(ctx, b.cs, "trace-"+tr.Name+"-")
	if err != nil {
		return run, err
	}
	meter, err := startPoolMeter(ctx, b.cs, dyn, ns)
	if err != nil {
		b.dropNamespace(ns, nil)
		return run, err
	}
	defer b.dropNamespace(ns, meter)
	agent, _, err := agentClients(ctx, b.env, ns)
	if err != nil {
		return run, err
	}
	if err := b.grantColdClaims(ctx, ns); err != nil {
		return run, err
	}
	variants := []*replayVariant{
		{name: variantMean, pool: "mean", replicas: sizes.Mean},
		{name: variantPeak, pool: "peak", replicas: sizes.Peak},
		{name: variantAuto, pool: "autoscaled", replicas: sizes.AutoInitial},
	}
	if err := b.preparePools(ctx, ns, meter, variants, run); err != nil {
		return run, err
	}
	claims := claim.New(agent)
	for _, v := range variants {
		if v.picker, err = claims.NewPicker(ctx, ns, v.pool); err != nil {
			return run, fmt.Errorf("starting a claim picker on %s/%s: %w", ns, v.pool, err)
		}
		defer v.picker.Stop()
	}
	sent, measureFrom := arrivals, time.Duration(0)
	if b.p.TraceWarmUp {
		sent, measureFrom = withWarmUp(tr, b.p.TraceSeed, arrivals), tr.Length
		logf("trace %s: replaying a warm-up day of %d claims, unmeasured, then %d claims over %s against all three pools",
			tr.Name, len(sent)-len(arrivals), len(arrivals), tr.Length)
	} else {
		logf("trace %s: replaying %d claims over %s against all three pools", tr.Name, len(arrivals), tr.Length)
	}
	start := b.sendTrace(ctx, claims, meter, tr.Name, sent, measureFrom, variants)
	if err := ctx.Err(); err != nil {
		return run, fmt.Errorf("replaying: %w", err)
	}
	b.collect(ctx, run, meter, ns, variants, start)
	return run, nil
}

// demandStep is the demand line's resolution: about 300 points a trace.
func demandStep(length time.Duration) time.Duration {
	return max(100*time.Millisecond, (length / 300).Round(100*time.Millisecond))
}

// preparePools creates the three pools, asks for autoscaling on the last,
// and waits until every pool is full and nothing is being created.
func (b *bench) preparePools(ctx context.Context, ns string, meter *poolMeter, variants []*replayVariant, run *traceRunResult) error {
	pools := make([]string, len(variants))
	for i, v := range variants {
		pools[i] = v.pool
		if err := b.createTracePool(ctx, ns, v.pool, v.replicas); err != nil {
			return err
		}
	}
	auto := variants[len(variants)-1]
	stored, err := b.enableAutoscaling(ctx, ns, auto.pool, run.Sizes)
	switch {
	case err != nil:
		run.note("autoscaling could not be set, so the autoscaled pool stays at %d: %v", auto.replicas, err)
	case stored == nil:
		run.note("autoscaling is not supported by this build: the API server did not keep spec.autoscaling (its CRD has no such field), so the autoscaled pool stays at its initial %d replicas", auto.replicas)
	default:
		run.AutoscalingSupported, run.AutoscalingSpec = true, stored
	}
	return meter.waitFor(ctx, b.p.WaitTimeout, "every pool full and settled", pools, func(views map[string]poolView) bool {
		for _, v := range variants {
			view, want := views[v.pool], v.replicas
			if v == auto && run.AutoscalingSupported {
				want = view.replicas // whatever the autoscaler chose
			}
			if want < 0 || view.available != want || view.creating != 0 {
				return false
			}
		}
		return true
	})
}

// withWarmUp is another draw of the trace (the seed's successor), a
// "yesterday", followed by arrivals shifted one trace length later.
func withWarmUp(tr arrivalTrace, seed uint64, arrivals []time.Duration) []time.Duration {
	out := tr.arrivals(seed + 1)
	for _, at := range arrivals {
		out = append(out, tr.Length+at)
	}
	return out
}

// sendTrace fires the arrivals on schedule, open loop: each arrival is one
// claim on every pool, each in its own goroutine whatever the earlier ones
// are doing, so a slow claim cannot slow the arrivals and hide itself. Only
// the claims that arrive at measureFrom or later are recorded. It returns
// when every claim has been served and released, or has failed, with the
// instant measuring started.
func (b *bench) sendTrace(ctx context.Context, claims *claim.Client, meter *poolMeter, name string, arrivals []time.Duration, measureFrom time.Duration, variants []*replayVariant) time.Time {
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	start := time.Now()
	measured := start.Add(measureFrom)
	for i, at := range arrivals {
		due := start.Add(at)
		timer.Reset(time.Until(due))
		select {
		case <-timer.C:
		case <-ctx.Done():
			return measured
		}
		for _, v := range variants {
			id := fmt.Sprintf("%s-%s-%d", name, v.pool, i)
			if at < measureFrom {
				wg.Go(func() { b.traceClaimOne(ctx, claims, meter, v.picker, id, due) })
				continue
			}
			wg.Go(func() { v.record(b.traceClaimOne(ctx, claims, meter, v.picker, id, due)) })
		}
	}
	return measured
}

func (v *replayVariant) record(c traceClaim) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.claims = append(v.claims, c)
}

// traceClaimOne is one agent's claim that arrived at arrived: a warm hit
// if the pool had an available sandbox at once. Otherwise, with -trace-miss
// cold, the agent creates a sandbox from the pool's template and waits for
// it to be Ready; with -trace-miss wait, it waits for the pool to have one.
// Its claim-to-ready latency runs from its arrival until it holds a Ready
// sandbox. It holds the sandbox for -trace-hold, then releases it.
func (b *bench) traceClaimOne(ctx context.Context, claims *claim.Client, meter *poolMeter, picker *claim.Picker, id string, arrived time.Time) traceClaim {
	c := traceClaim{id: id}
	opts := claim.ClaimOptions{ColdIfEmpty: b.p.TraceMiss == traceMissCold}
	sbx, err := picker.Claim(ctx, id, opts)
	missed := errors.Is(err, claim.ErrPoolEmpty) || errors.Is(err, claim.ErrLostRaces)
	switch {
	case missed && b.p.TraceMiss == traceMissWait:
		sbx, err = picker.Claim(ctx, id, claim.ClaimOptions{Wait: b.p.WaitTimeout})
	case missed: // lost every race for the sandboxes there were: go again, cold if none is left
		sbx, err = picker.Claim(ctx, id, opts)
	}
	readyAt := time.Now()
	if err == nil && sbx.Cold {
		readyAt, err = meter.waitReady(ctx, sbx.Name, b.p.WaitTimeout)
	}
	c.latency = readyAt.Sub(arrived)
	if sbx != nil {
		c.pod, c.holder = sbx.Name, sbx.Agent
		c.warm = !missed && !sbx.Cold
	}
	if err != nil {
		c.err = err
		c.warm = false
		return c
	}
	hold := time.NewTimer(b.p.TraceHold)
	defer hold.Stop()
	select {
	case <-hold.C:
	case <-ctx.Done():
		return c // the namespace's deletion releases it
	}
	c.release = claims.Release(ctx, meter.ns, sbx.Name)
	return c
}

// grantColdClaims lets the namespace's agents create Pods, which a cold
// claim needs and config/rbac/agent_role.yaml leaves out on purpose: the
// claim webhook still holds each cold sandbox to its pool's template
// (rule cold-claim-template). Only with -trace-miss cold.
func (b *bench) grantColdClaims(ctx context.Context, ns string) error {
	if b.p.TraceMiss != traceMissCold || b.p.AgentsAs == agentsAsAdmin {
		return nil
	}
	const name = "sandbox-agent-cold-claims"
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "agent"}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := b.c.Create(ctx, obj); err != nil {
			return fmt.Errorf("granting the agents of %s cold claims, %T: %w", ns, obj, err)
		}
	}
	return nil
}

// collect turns the claims and the meter's record into the trace's figures
// and goal checks.
func (b *bench) collect(ctx context.Context, run *traceRunResult, meter *poolMeter, ns string, variants []*replayVariant, start time.Time) {
	end := start.Add(run.Trace.Length)
	day := b.res.TraceReplay.Day
	compression := (24 * time.Hour).Seconds() / day.Seconds()
	doubles := meter.doubleClaims()
	figures := map[string]variantFigures{}
	for _, v := range variants {
		vr := &traceVariantResult{Name: v.name, Pool: v.pool, Replicas: v.replicas}
		m, notes := claimFigures(v.claims)
		for _, n := range notes {
			run.note("%s: %s", v.name, n)
		}
		w := meter.window(v.pool, start, end)
		poolFigures(m, w, run.Trace.Length, compression)
		if d := doubles[v.pool]; len(d) > 0 {
			m["double_claims"] += float64(len(d))
			for _, msg := range d {
				run.note("%s: double claim: %s", v.name, msg)
			}
		}
		vr.Metrics = m
		vr.PoolSize = newAvailableSeries(w.size, start)
		if w.replicas != nil {
			vr.SpecReplicas = newAvailableSeries(w.replicas, start)
		}
		if w.desired != nil {
			vr.DesiredReplicas = newAvailableSeries(w.desired, start)
		}
		run.Variants = append(run.Variants, vr)
		figures[v.name] = variantFigures{WarmFraction: m.get("warm_fraction"), PodSeconds: m.get("pod_seconds")}
	}
	if run.AutoscalingSupported {
		st, err := b.autoscalingStatus(ctx, ns, "autoscaled")
		switch {
		case err != nil:
			run.note("%s: reading status.autoscaling: %v", variantAuto, err)
		case st == nil:
			run.note("%s: spec.autoscaling was kept, but the operator wrote no status.autoscaling", variantAuto)
		default:
			run.AutoscalingStatus = st
		}
		if lo, hi := stepRange(meter.window("autoscaled", start, end).replicas); lo == hi {
			run.note("%s: spec.replicas stayed at %d throughout the trace", variantAuto, lo)
		}
	}
	run.Goals = checkGoals(targetWarmRatioF, figures[variantMean], figures[variantPeak], figures[variantAuto], run.AutoscalingSupported)
	b.noteSlowStarts(run)
}

// slowStart is how much slower than the sizing's refill time new Pods may
// start under a trace's load before the table says the fixed pools were
// sized for a faster cluster than the one they ran on.
const slowStart = 1.5

// noteSlowStarts says so when the trace's new Pods took much longer to
// become available than the refill time the pools were sized for: the
// cluster was slower under the trace's load (its own, and the machine's)
// than when measured, and every pool then misses more.
func (b *bench) noteSlowStarts(run *traceRunResult) {
	refill := b.res.TraceReplay.Refill.Mean
	slowest := 0.0
	for _, v := range run.Variants {
		if p50 := v.Metrics.get("pod_start_p50_ms"); p50 > slowest {
			slowest = p50
		}
	}
	if sizedFor := float64(refill.Milliseconds()); sizedFor > 0 && slowest > slowStart*sizedFor {
		run.note("new Pods took %.1f s (p50) from first seen to available under this trace's load, against the %.1f s refill time the fixed pools were sized for: "+
			"the cluster was slower than when measured, so every pool missed more (see the bound and Ready rows for where the time went)",
			slowest/1000, refill.Seconds())
	}
}

// claimFigures summarizes one pool's claims: how many were served warm,
// served after a wait, or never, their claim-to-ready latencies, and
// double claims (a sandbox won twice, or held by another than its winner).
func claimFigures(claims []traceClaim) (metrics, []string) {
	var all, warmLat, coldLat []time.Duration
	var warm, cold, failed, releaseFailed, doubles int
	var notes []string
	wins := map[string]int{}
	for _, c := range claims {
		switch {
		case c.err != nil:
			if failed == 0 {
				notes = append(notes, fmt.Sprintf("first claim never served: %v", c.err))
			}
			failed++
			continue
		case c.warm:
			warm++
			warmLat = append(warmLat, c.latency)
		default:
			cold++
			coldLat = append(coldLat, c.latency)
		}
		all = append(all, c.latency)
		wins[c.pod]++
		if wins[c.pod] > 1 || c.holder != c.id {
			doubles++
		}
		if c.release != nil {
			if releaseFailed == 0 {
				notes = append(notes, fmt.Sprintf("first failed release: %v", c.release))
			}
			releaseFailed++
		}
	}
	m := metrics{
		"claims": float64(len(claims)), "claims_warm": float64(warm), "claims_cold": float64(cold),
		"claims_failed": float64(failed), "releases_failed": float64(releaseFailed), "double_claims": float64(doubles),
	}
	if len(claims) > 0 {
		m["warm_fraction"] = float64(warm) / float64(len(claims))
	}
	latencyMetrics(m, "ready", all)
	latencyMetrics(m, "ready_warm", warmLat)
	latencyMetrics(m, "ready_cold", coldLat)
	return m, notes
}

// poolFigures adds what the meter saw of a pool over the trace: the
// Pod-seconds of its unclaimed Pods, the same in Pod-hours at the traces'
// real scale, its size, spec.replicas, and how long its new Pods took to
// become available.
func poolFigures(m metrics, w poolWindow, length time.Duration, compression float64) {
	podSeconds := integrate(w.size)
	m["pod_seconds"] = podSeconds
	m["pod_hours_real"] = podSeconds * compression / 3600
	m["mean_pool"] = podSeconds / length.Seconds()
	lo, hi := stepRange(w.size)
	m["pool_min"], m["pool_max"] = float64(lo), float64(hi)
	if w.replicas != nil {
		lo, hi := stepRange(w.replicas)
		m["replicas_min"], m["replicas_max"] = float64(lo), float64(hi)
	}
	m["new_pods"] = float64(len(w.starts))
	var bound, ready, available []time.Duration
	for _, s := range w.starts {
		bound, ready, available = append(bound, s.bound), append(ready, s.ready), append(available, s.available)
	}
	for prefix, ds := range map[string][]time.Duration{"pod_bound": bound, "pod_ready": ready, "pod_start": available} {
		ms := millis(ds)
		m[prefix+"_p50_ms"] = percentile(ms, 50)
		m[prefix+"_p90_ms"] = percentile(ms, 90)
	}
}
