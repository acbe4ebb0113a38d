package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/sandboxset/warmpool/api/v1alpha1"
)

// quietFor is how long a pool's Pods must go unchanged before a run's
// creations are counted, so that a late extra creation is not missed.
const quietFor = time.Second

// bench is one benchmark run against one cluster.
type bench struct {
	*env
	cl      *cluster
	pids    map[string]int
	sbs     *sandboxSetSystem
	rs      *replicaSetSystem
	res     *results
	floorNS string
	floorT  *tracker
	rssNS   string
	// expiryNS is the expiry scenario's namespace.
	expiryNS string
}

// scenario is measured the same way for every system: prepare (not
// measured), then measure, with the control plane's cost taken over
// measure alone.
type scenario struct {
	key, title string
	// only names the one system the scenario applies to; the other gets
	// skipNote instead of figures.
	only, skipNote string
	// charted keeps each run's available count over time for the report.
	charted bool
	// quiet starts each run on a quiet machine, not beside the tail of the
	// fill before it, and reports how busy the machine was during it.
	quiet   bool
	prepare func(ctx context.Context, sys system) error
	// measure may fill tr with what the report charts besides availability.
	measure func(ctx context.Context, sys system, rep int, note func(string, ...any), tr *trace) (metrics, error)
}

// order alternates which system goes first, so that neither always runs on
// a cluster warmed (or tired) by the other.
func (b *bench) order(rep int) []system {
	all := []system{b.sbs, b.rs}
	if rep%2 == 1 {
		all = []system{b.rs, b.sbs}
	}
	var out []system
	for _, sys := range all {
		if slices.Contains(strings.Split(b.p.Systems, ","), sys.name()) {
			out = append(out, sys)
		}
	}
	return out
}

// runScenario repeats sc for every system. A failed run is recorded and the
// benchmark goes on; only a cancelled context stops it.
func (b *bench) runScenario(ctx context.Context, sc scenario) error {
	out := b.res.scenario(sc.key, sc.title)
	for rep := range b.p.Repeat {
		for _, sys := range b.order(rep) {
			runs := out.system(sys.name())
			if sc.only != "" && sys.name() != sc.only {
				runs.addNote(sc.skipNote)
				continue
			}
			logf("%s: %s, run %d of %d", sc.key, sys.name(), rep+1, b.p.Repeat)
			note := func(format string, args ...any) {
				msg := fmt.Sprintf("run %d: ", rep+1) + fmt.Sprintf(format, args...)
				logf("%s: %s: %s", sc.key, sys.name(), msg)
				runs.addNote(msg)
			}
			if err := sc.prepare(ctx, sys); err != nil {
				if ctx.Err() != nil {
					return err
				}
				runs.addError(fmt.Errorf("run %d: preparing: %w", rep+1, err))
				continue
			}
			busy := metrics{}
			if sc.quiet {
				if err := b.startQuiet(ctx, busy); err != nil {
					return err
				}
			}
			machine, machineErr := readMachineCPU()
			cost, self := startCost(b.pids), startSelfMeter(ctx, b.cs, b.cl.managerMetrics, sys.namespace())
			tr := &trace{Run: rep + 1}
			start := time.Now()
			m, err := sc.measure(ctx, sys, rep, note, tr)
			if after, afterErr := readMachineCPU(); sc.quiet && machineErr == nil && afterErr == nil {
				busy["busy_cores"], busy["steal_cores"] = after.cores(machine)
			}
			if sc.charted {
				tr.Available = newAvailableSeries(sys.tracker().availableBetween(start, time.Now()), start)
			}
			if tr.Available != nil || tr.ClaimLatencyMs != nil {
				runs.Traces = append(runs.Traces, tr)
			}
			if m == nil {
				m = metrics{}
			}
			maps.Copy(m, busy)
			cost.stop(m)
			self.stop(ctx, m)
			controllerCost(m, sys.controller())
			runs.Runs = append(runs.Runs, m)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				runs.addError(fmt.Errorf("run %d: %w", rep+1, err))
			}
		}
	}
	return nil
}

// startQuiet waits for a quiet machine before a run, and adds how long it
// waited and how busy the machine was then to m.
func (b *bench) startQuiet(ctx context.Context, m metrics) error {
	waited, busy, err := waitQuiet(ctx)
	if err != nil {
		return fmt.Errorf("waiting for a quiet machine: %w", err)
	}
	logf("the machine was quiet (%.2f cores busy) after %s", busy, waited.Round(time.Second))
	m["quiet_wait_s"], m["busy_cores_before"] = waited.Seconds(), busy
	return nil
}

// controllerCost names the cost of the process that keeps this system's
// pool full alike for both systems, so they share table rows.
func controllerCost(m metrics, ctrl string) {
	for _, k := range []string{"cpu_s", "peak_rss_mib", "rss_mib"} {
		if v, ok := m[k+"."+ctrl]; ok {
			m["ctrl_"+k] = v
		}
	}
	if v, ok := m["cpu_s."+procAPIServer]; ok {
		m["apiserver_cpu_s"] = v
	}
	if won := m.get("claims_ok"); won > 0 {
		for _, k := range []string{"ctrl_cpu", "apiserver_cpu"} {
			if v, ok := m[k+"_s"]; ok {
				m[k+"_ms_per_claim"] = 1000 * v / won
			}
		}
	}
}

// ensureFull releases every held Pod and waits for a full, settled pool.
func (b *bench) ensureFull(ctx context.Context, sys system) error {
	if err := sys.deleteClaimed(ctx); err != nil {
		return err
	}
	if err := sys.scale(ctx, b.p.N); err != nil {
		return err
	}
	n := b.p.N
	return sys.tracker().waitFor(ctx, b.p.WaitTimeout, fmt.Sprintf("a full pool of %d and no held Pods", n), func(c counts) bool {
		return c.available == n && c.pool() == n && c.claimed == 0 && c.terminating == 0
	})
}

// ensureEmpty scales the pool to zero and waits until its last Pod is gone.
func (b *bench) ensureEmpty(ctx context.Context, sys system) error {
	if err := sys.deleteClaimed(ctx); err != nil {
		return err
	}
	if err := sys.scale(ctx, 0); err != nil {
		return err
	}
	return sys.tracker().waitFor(ctx, b.p.WaitTimeout, "no Pods", func(c counts) bool { return c.total() == 0 })
}

// settle waits until the pool has not changed for quietFor and returns how
// many Pods were created since created0.
func settle(ctx context.Context, sys system, created0 int, timeout time.Duration) (int, error) {
	err := sys.tracker().waitQuiet(ctx, quietFor, timeout)
	if err == nil {
		err = sys.creations().Err() // a count that stopped early would hide over-creation
	}
	return sys.creations().Count() - created0, err
}

// --- scenarios -------------------------------------------------------------

func (b *bench) scenarios() []scenario {
	return []scenario{
		{key: "scaleup", title: "Scale-up 0 → N", charted: true,
			prepare: b.ensureEmpty, measure: b.scaleUp},
		{key: "patch", title: "A claim's parts, serial: the list, a write, the claim's write (what the webhook adds)",
			prepare: b.ensureFull, measure: b.patchSerial},
		{key: "burst", title: "Burst: N claims at once by A agents on a full pool", charted: true, quiet: true,
			prepare: b.ensureFull, measure: b.burst},
		{key: "sustained", title: "Sustained: open-loop claims at R/s for T", charted: true, quiet: true,
			prepare: b.ensureFull, measure: b.sustained},
		{key: "template", title: "Template change under a steady claim load",
			only: sysSandboxSet, prepare: b.ensureFull, measure: b.templateChange,
			skipNote: "does not roll: a ReplicaSet never replaces its Pods when its template changes (a Deployment does, through a second ReplicaSet); nothing to measure"},
	}
}

func (b *bench) scaleUp(ctx context.Context, sys system, _ int, _ func(string, ...any), _ *trace) (metrics, error) {
	t, n := sys.tracker(), b.p.N
	created0 := sys.creations().Count()
	t.setTarget(n)
	start := time.Now()
	if err := sys.scale(ctx, n); err != nil {
		return nil, err
	}
	m := metrics{}
	if err := t.waitFor(ctx, b.p.WaitTimeout, fmt.Sprintf("%d available", n), func(c counts) bool { return c.available >= n }); err != nil {
		return m, err
	}
	m["time_to_n_s"] = t.fullSince().Sub(start).Seconds()
	created, err := settle(ctx, sys, created0, b.p.WaitTimeout)
	m["created"], m["over_created"] = float64(created), float64(created-n)
	return m, err
}

// patchSerial times a claim's parts one at a time, once per warm Pod: the
// list it picks from, a write of a label that claims nothing (the admission
// path alone, no refill), then the claim's write itself (which the
// controller answers with a replacement).
func (b *bench) patchSerial(ctx context.Context, sys system, rep int, note func(string, ...any), _ *trace) (metrics, error) {
	names := sys.tracker().availableNames()
	m := metrics{}
	timed := func(prefix string, write func(pod string, i int) error) {
		var lat []time.Duration
		failed := 0
		for i, pod := range names {
			start := time.Now()
			if err := write(pod, i); err != nil {
				if failed == 0 {
					note("first failed %s: %v", prefix, err)
				}
				failed++
				continue
			}
			lat = append(lat, time.Since(start))
		}
		m[prefix+"_failed"] = float64(failed)
		latencyMetrics(m, prefix, lat)
	}
	timed("pick", func(string, int) error { return sys.pick(ctx) })
	timed("touch", func(pod string, i int) error { return sys.touch(ctx, pod, fmt.Sprintf("t%d-%d", rep, i)) })
	timed("patch", func(pod string, i int) error { return sys.patchOnly(ctx, pod, fmt.Sprintf("p%d-%d", rep, i)) })
	return m, nil
}

// burst sends N claims at once from A agents, each claiming until the
// claims run out, then waits for the pool to be full again.
func (b *bench) burst(ctx context.Context, sys system, rep int, note func(string, ...any), tr *trace) (metrics, error) {
	t, n := sys.tracker(), b.p.N
	created0 := sys.creations().Count()
	t.setTarget(n)
	t.resetLow()
	claimCtx, cancel := context.WithTimeout(ctx, b.p.WaitTimeout)
	defer cancel()
	jobs := make(chan int, n)
	for i := range n {
		jobs <- i
	}
	close(jobs)
	results := make([]claimResult, n)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for a := range b.p.Agents {
		wg.Go(func() {
			<-gate
			for i := range jobs {
				results[i] = sys.claim(claimCtx, fmt.Sprintf("b%d-a%d-c%d", rep, a, i))
			}
		})
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	elapsed := time.Since(start)

	m, won := claimMetrics(results, note)
	tr.setClaimLatencies(won)
	ok := len(won)
	m["claims_per_s"] = float64(ok) / elapsed.Seconds()
	if err := b.waitRefilled(ctx, sys, ok); err != nil {
		return m, err
	}
	m["refill_s"] = t.fullSince().Sub(start).Seconds()
	m["lowest_available"] = float64(t.lowest())
	created, err := settle(ctx, sys, created0, b.p.WaitTimeout)
	m["created"], m["over_created"] = float64(created), float64(created-ok)
	if err != nil {
		return m, err
	}
	return m, b.checkHolders(ctx, sys, results, m)
}

// sustained fires claims on a fixed schedule, each in its own goroutine
// whatever the earlier ones are doing (open loop), so a slow claim does not
// slow the arrivals down and hide itself.
func (b *bench) sustained(ctx context.Context, sys system, rep int, note func(string, ...any), tr *trace) (metrics, error) {
	t, n := sys.tracker(), b.p.N
	created0 := sys.creations().Count()
	t.setTarget(n)
	t.resetLow()
	results, last, err := b.openLoop(ctx, sys.claim, b.p.Rate, int(b.p.Rate*b.p.Duration.Seconds()), nil, fmt.Sprintf("s%d", rep))
	m, won := claimMetrics(results, note)
	tr.setClaimLatencies(won)
	ok := len(won)
	if err != nil {
		return m, err
	}
	m["lowest_available"] = float64(t.lowest())
	if err := b.waitRefilled(ctx, sys, ok); err != nil {
		return m, err
	}
	m["recovery_s"] = max(0, t.fullSince().Sub(last).Seconds())
	created, err := settle(ctx, sys, created0, b.p.WaitTimeout)
	m["created"], m["over_created"] = float64(created), float64(created-ok)
	if err != nil {
		return m, err
	}
	return m, b.checkHolders(ctx, sys, results, m)
}

// openLoop fires up to total claims at rate per second until stop closes,
// and returns them with the time of the last arrival.
func (b *bench) openLoop(ctx context.Context, claim func(context.Context, string) claimResult, rate float64, total int, stop <-chan struct{}, prefix string) ([]claimResult, time.Time, error) {
	claimCtx, cancel := context.WithTimeout(ctx, b.p.WaitTimeout)
	defer cancel()
	results := make([]claimResult, 0, total)
	var mu sync.Mutex
	last := paced(ctx, rate, total, stop, func(i int) {
		r := claim(claimCtx, fmt.Sprintf("%s-c%d", prefix, i))
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	})
	if ctx.Err() != nil {
		return results, last, fmt.Errorf("sending claims: %w", ctx.Err())
	}
	return results, last, nil
}

// templateChange rolls the pool to a new template while claims arrive at
// a steady rate. Under that load some Pods are always starting (rate ×
// ready delay of them), so "all available" cannot hold while it lasts: the
// rollout is timed until every pool Pod is at the new revision, then the
// load stops and the time until all are also available is taken too.
func (b *bench) templateChange(ctx context.Context, sys system, rep int, note func(string, ...any), _ *trace) (metrics, error) {
	s, ok := sys.(*sandboxSetSystem)
	if !ok {
		return nil, fmt.Errorf("%s has no rolling template change", sys.name())
	}
	t, n := sys.tracker(), b.p.N
	created0 := sys.creations().Count()
	t.resetLow()
	t.markNew()
	stop := make(chan struct{})
	type loadResult struct {
		results []claimResult
		err     error
	}
	load := make(chan loadResult, 1)
	// Bounded, like every load here: at most as many claims as the rate
	// allows within the wait timeout.
	total := int(b.p.TemplateRate * b.p.WaitTimeout.Seconds())
	go func() {
		r, _, err := b.openLoop(ctx, sys.claim, b.p.TemplateRate, total, stop, fmt.Sprintf("t%d", rep))
		load <- loadResult{r, err}
	}()
	start := time.Now()
	generation, oldRevision, err := s.changeTemplate(ctx, fmt.Sprintf("run-%d-%d", rep, start.UnixNano()))
	var rolled time.Duration
	if err == nil {
		err = b.waitStatus(ctx, s, generation, oldRevision, false)
		rolled = time.Since(start)
	}
	close(stop)
	lr := <-load
	m, won := claimMetrics(lr.results, note)
	okClaims := len(won)
	m["lowest_available"] = float64(t.lowest())
	if err == nil {
		m["rolled_s"] = rolled.Seconds()
		err = b.waitStatus(ctx, s, generation, oldRevision, true)
		m["converge_s"] = time.Since(start).Seconds()
	}
	if err != nil {
		return m, err
	}
	if lr.err != nil {
		return m, lr.err
	}
	if err := b.waitRefilled(ctx, sys, okClaims); err != nil {
		return m, err
	}
	created, err := settle(ctx, sys, created0, b.p.WaitTimeout)
	if err != nil {
		return m, err
	}
	if err := b.checkHolders(ctx, sys, lr.results, m); err != nil {
		return m, err
	}
	// Every claim is replaced once. Every old-revision Pod, the N there
	// were plus those created before the controller saw the change, is
	// either claimed or replaced once. Anything beyond is over-creation.
	held, err := sys.claimed(ctx)
	if err != nil {
		return m, err
	}
	claimedOld := 0
	for _, p := range held {
		if p.revision == oldRevision {
			claimedOld++
		}
	}
	createdOld := t.newAt(oldRevision)
	needed := okClaims + (n + createdOld - claimedOld)
	m["created"], m["created_old_revision"], m["over_created"] = float64(created), float64(createdOld), float64(created-needed)
	if created != needed {
		note("%d created, %d needed: %d claims replaced, %d old-revision Pods (%d created after the change) of which %d claimed",
			created, needed, okClaims, n+createdOld, createdOld, claimedOld)
	}
	return m, nil
}

// waitStatus watches the SandboxSet until its status reports the new
// generation with every pool Pod at the new revision, and, if available,
// every one available too.
func (b *bench) waitStatus(ctx context.Context, s *sandboxSetSystem, generation int64, oldRevision string, available bool) error {
	n := int32(b.p.N)
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			list := &agentsv1alpha1.SandboxSetList{}
			err := s.c.List(ctx, list, client.InNamespace(s.ns), &client.ListOptions{Raw: &opts})
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return s.c.Watch(ctx, &agentsv1alpha1.SandboxSetList{}, client.InNamespace(s.ns), &client.ListOptions{Raw: &opts})
		},
	}
	waitCtx, cancel := context.WithTimeout(ctx, b.p.WaitTimeout)
	defer cancel()
	var last agentsv1alpha1.SandboxSetStatus
	_, err := watchtools.UntilWithSync(waitCtx, lw, &agentsv1alpha1.SandboxSet{}, nil, func(ev watch.Event) (bool, error) {
		sbs, ok := ev.Object.(*agentsv1alpha1.SandboxSet)
		if !ok || sbs.Name != s.pool {
			return false, nil
		}
		st := sbs.Status
		last = st
		return st.ObservedGeneration >= generation && st.UpdateRevision != oldRevision &&
			st.UpdatedReplicas == n && st.Replicas == n && (!available || st.AvailableReplicas == n), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for SandboxSet %s/%s to roll out generation %d, available %t (last status: observed generation %d, %d updated, %d available, %d replicas): %w",
			s.ns, s.pool, generation, available, last.ObservedGeneration, last.UpdatedReplicas, last.AvailableReplicas, last.Replicas, err)
	}
	return nil
}

// waitRefilled waits until the tracker has seen the ok claims and the pool
// is back to N available; fullSince is then when it got there.
func (b *bench) waitRefilled(ctx context.Context, sys system, ok int) error {
	n := b.p.N
	return sys.tracker().waitFor(ctx, b.p.WaitTimeout, fmt.Sprintf("%d held and %d available", ok, n), func(c counts) bool {
		return c.claimed >= ok && c.available >= n
	})
}

// claimMetrics summarizes claims: latencies of the successful ones, how
// many were served warm, and why the others were not. It also returns the
// latencies of the claims won, one per claim won.
func claimMetrics(results []claimResult, note func(string, ...any)) (metrics, []time.Duration) {
	var lat []time.Duration
	var ok, empty, lost, failed, attempts int
	for _, r := range results {
		switch {
		case r.err != nil:
			if failed == 0 {
				note("first failed claim: %v", r.err)
			}
			failed++
		case r.empty:
			empty++
		case r.lost:
			lost++
		default:
			ok++
			attempts += r.attempts
			lat = append(lat, r.latency)
		}
	}
	m := metrics{
		"claims":        float64(len(results)),
		"claims_ok":     float64(ok),
		"claims_empty":  float64(empty),
		"claims_lost":   float64(lost),
		"claims_failed": float64(failed),
	}
	if len(results) > 0 {
		m["warm_fraction"] = float64(ok) / float64(len(results))
	}
	if ok > 0 {
		m["writes_per_claim"] = float64(attempts) / float64(ok)
	}
	latencyMetrics(m, "claim", lat)
	return m, lat
}

// checkHolders compares what the agents were told with what is stored:
// every won claim's Pod must carry that claim's holder, and no Pod may have
// been won twice. Holders are unique per claim, so a Pod held by anyone
// else than the claim that won it is a double claim too.
func (b *bench) checkHolders(ctx context.Context, sys system, results []claimResult, m metrics) error {
	held, err := sys.claimed(ctx)
	if err != nil {
		return err
	}
	wins := map[string]int{}
	won := map[string]bool{}
	doubles := 0
	for _, r := range results {
		if r.pod == "" {
			continue
		}
		wins[r.pod]++
		won[r.id] = true
		if wins[r.pod] > 1 || held[r.pod].holder != r.id {
			doubles++
		}
	}
	// A claim written but not reported (a timeout after the write) holds a
	// Pod nobody knows about: not a double claim, but a leak worth seeing.
	orphans := 0
	for _, p := range held {
		if !won[p.holder] {
			orphans++
		}
	}
	m["double_claims"], m["orphan_claims"] = float64(doubles), float64(orphans)
	if doubles > 0 {
		return fmt.Errorf("%d double claims: a Pod was won twice, or is held by another than the claim that won it", doubles)
	}
	return nil
}
